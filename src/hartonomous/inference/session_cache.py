"""A small thread-safe least-recently-used cache: the process's loaded ONNX runtime sessions
(docs/inference.md, "onnx_run").

The capacity is given on every call (``[inference] session_cache_size`` may differ between
the settings a process is handed); 0 turns the cache off and empties it. A value is created
outside the lock, so a slow creation (a large model's session) never blocks readers of other
entries; two threads missing the same key at once may both create it, and the first stored
stays.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LruCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """Values by key, the least recently used evicted beyond the capacity."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, capacity: int) -> V | None:
        """The cached value (now the most recently used), or None."""
        with self._lock:
            self._shrink(capacity)
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V, capacity: int) -> V:
        """Store ``value`` unless another thread stored one first; returns the stored one."""
        with self._lock:
            stored = self._entries.setdefault(key, value) if capacity > 0 else value
            if capacity > 0:
                self._entries.move_to_end(key)
            self._shrink(capacity)
            return stored

    def get_or_create(self, key: K, capacity: int, create: Callable[[], V]) -> tuple[V, bool]:
        """(value, whether it came from the cache)."""
        cached = self.get(key, capacity)
        if cached is not None:
            return cached, True
        return self.put(key, create(), capacity), False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _shrink(self, capacity: int) -> None:
        while len(self._entries) > max(capacity, 0):
            self._entries.popitem(last=False)
