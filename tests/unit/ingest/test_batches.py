"""How a job's files are grouped into batches (ingest/pipeline.py): every file once, in order,
within the batch limits; a larger job starts with a short batch and ends with shorter ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from hartonomous.ingest import pipeline
from hartonomous.ingest.paths import Candidate
from hartonomous.ingest.pipeline import BATCH_FILES, EDGE_FILES


def candidates(folder: Path, sizes: list[int]) -> list[Candidate]:
    made = []
    for index, size in enumerate(sizes):
        path = folder / f"f{index:04}"
        path.write_bytes(b"x" * size)
        made.append(Candidate(path))
    return made


def sizes_of(batches: list[list[tuple[int, Candidate]]]) -> list[int]:
    return [len(batch) for batch in batches]


@pytest.mark.parametrize("count", [1, EDGE_FILES, BATCH_FILES + 1, 2 * BATCH_FILES + 1, 500])
def test_every_file_once_in_order(tmp_path: Path, count: int) -> None:
    given = candidates(tmp_path, [10] * count)
    batches = list(pipeline._batches(given))
    assert [ordinal for batch in batches for ordinal, _ in batch] == list(range(count))
    assert [c for batch in batches for _, c in batch] == given
    assert max(sizes_of(batches)) <= BATCH_FILES


def test_larger_job_starts_short_and_ends_shorter_and_shorter(tmp_path: Path) -> None:
    batches = list(pipeline._batches(candidates(tmp_path, [10] * 500)))
    assert BATCH_FILES == 64
    assert EDGE_FILES == 8
    assert sizes_of(batches) == [8, 64, 64, 64, 64, 64, 64, 52, 32, 16, 8]


@pytest.mark.parametrize("count", [BATCH_FILES, BATCH_FILES + 1, 2 * BATCH_FILES])
def test_smaller_job_is_cut_only_at_full_batches(tmp_path: Path, count: int) -> None:
    # Short edge batches would only add transactions to a job of one or two batches.
    batches = list(pipeline._batches(candidates(tmp_path, [10] * count)))
    assert sizes_of(batches) == [BATCH_FILES] + (
        [count - BATCH_FILES] if count > BATCH_FILES else []
    )


def test_batch_bytes_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "BATCH_BYTES", 1000)
    batches = list(pipeline._batches(candidates(tmp_path, [400, 400, 400, 1500, 10, 10])))
    assert sizes_of(batches) == [2, 1, 1, 2]  # a file over the bound is a batch of its own
