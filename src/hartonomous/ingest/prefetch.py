"""Embedding the next batch's text while the database stores the current one.

`PrefetchingEmbedders` is an `Embedders` whose `embed_texts` first uses vectors computed ahead
of time, in one background thread, for texts a batch is about to store. The pipeline asks for
them (`prefetch`) right after it has planned a batch, before it stores the batch before it;
ONNX Runtime and the database then work at the same time. Texts whose atoms already have a
vector are not prefetched (dedup still saves model time), nor texts the previous batch brings.
A prefetch that fails is ignored: `embed_texts` embeds what it lacks itself, and reports the
failure as `Embedders` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from threading import Lock

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine
from sqlalchemy import text as sql_text

from hartonomous.db.array_param import BinaryArray
from hartonomous.embed.indexing import Embedders, Unembeddable

Vector = npt.NDArray[np.float32]
Embedded = Vector | Unembeddable
# The ids travel as one array: the statement's text, and so its server-side plan, is the same
# whatever their number (an IN list of one parameter per id is compiled anew for each count).
_KNOWN = sql_text(
    "SELECT atom_id FROM atom_embeddings WHERE atom_id = ANY(CAST(:atom_ids AS bytea[]))"
)


class PrefetchingEmbedders(Embedders):
    """`Embedders` that serves texts embedded ahead of time; one per ingestion job."""

    def __init__(self, inner: Embedders) -> None:
        super().__init__()
        self._inner = inner
        self._model_lock = Lock()  # one model call at a time: prefetch and fallback alike
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="prefetch-embeddings")
        self._pending: list[tuple[set[str], Future[dict[str, Embedded]]]] = []
        self._ready: dict[str, Embedded] = {}

    def prefetch(self, engine: Engine, texts: Mapping[bytes, str], skip: set[bytes]) -> None:
        """Start embedding `texts` (atom id -> canonical text) that have no vector yet."""
        wanted = {atom_id: text for atom_id, text in texts.items() if atom_id not in skip}
        if not wanted:
            return
        with engine.connect() as connection:
            known = {
                bytes(atom_id)
                for atom_id in connection.execute(
                    _KNOWN, {"atom_ids": BinaryArray(wanted)}
                ).scalars()
            }
        values = sorted({text for atom_id, text in wanted.items() if atom_id not in known})
        if values:
            self._pending.append((set(values), self._thread.submit(self._embed, values)))

    def _embed(self, values: list[str]) -> dict[str, Embedded]:
        with self._model_lock:
            return dict(zip(values, self._inner.embed_texts(values), strict=True))

    def embed_texts(self, texts: Sequence[str]) -> list[Embedded]:
        # Wait only for prefetches of these texts (the next batch's may still be running).
        wanted = set(texts)
        waiting = []
        for values, future in self._pending:
            if values & wanted or future.done():
                if future.exception() is None:
                    self._ready.update(future.result())
            else:
                waiting.append((values, future))
        self._pending = waiting
        missing = sorted({text for text in texts if text not in self._ready})
        if missing:
            with self._model_lock:
                self._ready.update(zip(missing, self._inner.embed_texts(missing), strict=True))
        vectors = [self._ready[text] for text in texts]
        for text in texts:
            self._ready.pop(text, None)
        return vectors

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)
