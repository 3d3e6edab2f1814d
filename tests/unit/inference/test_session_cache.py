"""The per-process session cache: least recently used out, capacity 0 off, safe across threads;
and which external data locations a model may name."""

from __future__ import annotations

import threading

import pytest

from hartonomous.inference.onnx_model import _external_range
from hartonomous.inference.session_cache import LruCache
from hartonomous.inference.tasks import InferenceInputError


def test_least_recently_used_goes_first() -> None:
    cache: LruCache[str, int] = LruCache()
    cache.put("a", 1, 2)
    cache.put("b", 2, 2)
    assert cache.get("a", 2) == 1  # a is now the most recently used
    cache.put("c", 3, 2)

    assert (cache.get("a", 2), cache.get("b", 2), cache.get("c", 2)) == (1, None, 3)


def test_capacity_zero_keeps_nothing_and_a_smaller_capacity_evicts() -> None:
    cache: LruCache[str, int] = LruCache()
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        cache.put(key, value, 3)
    assert cache.get("a", 1) is None  # shrunk to the most recent one
    assert len(cache) == 1
    assert cache.get_or_create("d", 0, lambda: 4) == (4, False)
    assert len(cache) == 0


def test_first_stored_value_wins_and_threads_agree() -> None:
    cache: LruCache[int, object] = LruCache()
    assert cache.put(1, "first", 4) == "first"
    assert cache.put(1, "second", 4) == "first"

    cache = LruCache()
    seen: list[tuple[int, object]] = []
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        barrier.wait()
        for key in range(50):
            value, _ = cache.get_or_create(key % 6, 4, lambda k=key % 6: (k, object()))
            seen.append((key % 6, value))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 400
    assert len(cache) == 4
    # Every answer belongs to the key that was asked for.
    assert all(isinstance(value, tuple) and value[0] == key for key, value in seen)


def test_external_locations_outside_the_model_s_folder_are_refused() -> None:
    assert _external_range("m", "w", {"location": "a/w.bin", "offset": "8", "length": "4"}) == (
        "a/w.bin",
        12,
    )
    for location in ("../w.bin", "/etc/passwd", "a/../../w.bin", "a\\w.bin"):
        with pytest.raises(InferenceInputError, match="is outside the model's folder"):
            _external_range("m", "w", {"location": location})
    with pytest.raises(InferenceInputError, match="names no external data location"):
        _external_range("m", "w", {})
    with pytest.raises(InferenceInputError, match="offset or length is not a number"):
        _external_range("m", "w", {"location": "w.bin", "offset": "x"})
