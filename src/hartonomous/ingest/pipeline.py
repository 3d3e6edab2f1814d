"""Ingestion jobs: every file is its own unit of work, and no file can stop the job.

Any exception while a file is read, analysed or stored becomes that file's failed outcome,
`"<path>: <reason>"`, and the other files go on; the job always ends terminal (jobs.py).

Files are taken in batches (up to `BATCH_FILES` files, `BATCH_BYTES` bytes). The small ones
(up to `SMALL_BYTES`, not models) are stored together in one transaction: each file is read and
planned in memory first (a file that fails there is left out, nothing of it written), then the
atoms of all of them are written at once (`AtomBatch`), their holdings, one embedding pass and
the job rows. When that transaction cannot commit (a concurrent ingestion of the same new
bytes, a deadlock, an atom collected by `atoms gc` at the wrong moment, a failure while
indexing), it is rolled back and each of its files is stored alone. Larger files and models are
always stored alone: one transaction per file, up to three attempts. Either way a file is
stored whole or not at all. Each batch is planned, and its text handed to the embedder in a
background thread (prefetch.py), before the batch before it is stored.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import psycopg.errors
import structlog
from opentelemetry.trace import StatusCode
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from hartonomous.atoms.store import AtomVanishedError
from hartonomous.db.array_param import BinaryArray
from hartonomous.errors import UsageError
from hartonomous.ingest.extractors import ExtractionError, extract
from hartonomous.ingest.file_state import FileChangedError, file_state
from hartonomous.ingest.file_store import (
    Analysis,
    Holder,
    PlannedFiles,
    StoredFile,
    plan_files,
    store_file,
    write_planned,
)
from hartonomous.ingest.indexing import HoldingIndexer, IndexReport
from hartonomous.ingest.jobs import (
    NOT_DONE_REASON,
    finish_job,
    interrupt_job,
    job_lease,
)
from hartonomous.ingest.models import ModelFormatError, read_model, sniff_model_format
from hartonomous.ingest.paths import Candidate, expand_paths, named_as
from hartonomous.ingest.prefetch import PrefetchingEmbedders
from hartonomous.observability.tracing import tracer
from hartonomous.security.principals import PrincipalDisabledError, validate_principal_id
from hartonomous.security.tenants import (
    TenantDisabledError,
    UnknownTenantError,
    require_active_party,
)
from hartonomous.storable import storable_text

__all__ = ["FileOutcome", "IngestRequest", "JobOutcome", "UnknownTenantError", "ingest_paths"]

log = structlog.get_logger(__name__)

BATCH_FILES = 64
EDGE_FILES = 8  # the first and last batch of a larger job (see _batches)
_TAIL = (4 * EDGE_FILES, 2 * EDGE_FILES, EDGE_FILES)
BATCH_BYTES = 8 * 1024 * 1024
SMALL_BYTES = 1024 * 1024  # larger files, and models, are stored alone
_ATTEMPTS = 3
_RETRYABLE = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)


@dataclass(frozen=True)
class FileOutcome:
    path: str  # as stored: see hartonomous.storable
    atom_id: str | None
    status: str  # ingested | unchanged | failed
    error: str | None
    new_bytes: int
    reused_bytes: int
    embedded: int = 0
    # Near-duplicates (policy with a threshold): {atom_id, similar_to, similarity}.
    similar: list[dict[str, object]] = field(default_factory=list)
    # Texts made only of characters the text model does not know (emoji…): not embedded.
    unknown_only: int = 0


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    status: str
    new_bytes: int
    reused_bytes: int
    files: list[FileOutcome]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class InvalidLabelError(UsageError, ValueError):
    """A label that cannot be stored as one (empty, too long, control characters)."""


MAX_LABEL_CHARACTERS = 128
_LABEL_REFUSED = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def validate_label(label: str | None) -> None:
    """A holding label: 1-128 characters, not only spaces, no control characters.

    Raises ``InvalidLabelError`` naming the problem.
    """
    if label is None:
        return
    if not label.strip() or len(label) > MAX_LABEL_CHARACTERS:
        raise InvalidLabelError(
            f"a label must be 1-{MAX_LABEL_CHARACTERS} characters, not only spaces "
            f"(got {len(label)})"
        )
    if _LABEL_REFUSED.search(label):
        raise InvalidLabelError(f"label {label!r} holds a control character")


@dataclass(frozen=True)
class IngestRequest:
    tenant_id: str
    principal_id: str | None = None
    visibility: str = "private"
    source_type: str = "file"
    dedup_policy: str = "default"
    # The name recorded for a path (its holding's source_uri and the job's file path) when it
    # is not the path itself: an uploaded file's name as its sender gave it, not its spool path.
    source_names: Mapping[Path, str] = field(default_factory=dict)
    # Stored in each new holding's metadata as "label" (classification, docs/inference.md).
    label: str | None = None

    def name_of(self, path: Path) -> str:
        return storable_text(self.source_names.get(path) or str(path))


@dataclass(frozen=True)
class _Job:
    engine: Engine
    holder: Holder
    indexer: HoldingIndexer
    request: IngestRequest


@dataclass(frozen=True)
class _Prepared:
    """One planned file after analysis: an analysis to store, or the reason it failed."""

    ordinal: int
    path: Path
    analysis: Analysis | None
    reason: str | None = None


def ingest_paths(
    engine: Engine,
    request: IngestRequest,
    paths: Sequence[Path],
    on_file: Callable[[FileOutcome], None] | None = None,
    *,
    indexer: HoldingIndexer | None = None,
    on_start: Callable[[int], None] | None = None,
    on_job: Callable[[uuid.UUID], None] | None = None,
) -> JobOutcome:
    """Ingest files and folders as one job; `on_start` hears how many files were found.

    `on_job` hears the job's id as soon as its `running` row is committed (readable by others).

    Raises ``InvalidPrincipalError`` (security/principals.py), ``InvalidTenantError`` or
    ``UnknownTenantError`` before anything is written. An exception that escapes (the
    database went away, KeyboardInterrupt) marks the job `interrupted` on its way out when the
    database still answers; otherwise the next `up` or `ingest` does.

    The tenant and principal are checked again in each batch's storing transaction, under the
    tenant's state lock (security/state_lock.py): once either is disabled the job stops there
    and nothing is stored after the disable committed (``TenantDisabledError`` or
    ``PrincipalDisabledError`` is raised), `interrupted`, its stored files kept and the rest
    `not_done` with the reason
    ``not done: the job was stopped: tenant 't' is disabled`` (docs/security.md).
    """
    if request.principal_id is not None:
        validate_principal_id(request.principal_id)
    validate_label(request.label)
    candidates = expand_paths(paths)
    if on_start is not None:
        on_start(len(candidates))
    given = indexer or HoldingIndexer.for_job(engine, request.tenant_id, request.dedup_policy)
    embedders = PrefetchingEmbedders(given.embedders)
    indexer = HoldingIndexer(embedders, given.policy, given.include_public)
    planned = [request.name_of(candidate.path) for candidate in candidates]
    with job_lease(engine, request.tenant_id, request.principal_id, planned) as job_id:
        if on_job is not None:
            on_job(job_id)
        holder = Holder(
            request.tenant_id,
            job_id,
            request.source_type,
            request.visibility,
            request.source_names,
            request.label,
        )
        job = _Job(engine, holder, indexer, request)
        outcomes: list[FileOutcome] = []
        try:
            # Each batch is planned, and its text sent to be embedded, before the one before
            # it is stored: the model and the database work at the same time.
            previous: _Batch | None = None
            for batch in [*_batches(candidates), None]:
                current = _plan(batch, request.source_names) if batch is not None else None
                if current is not None:
                    skip = set(previous.plan.atoms.texts()) if previous is not None else set()
                    embedders.prefetch(engine, current.texts(), skip)
                if previous is not None:
                    for outcome in _store_batch(job, previous):
                        outcomes.append(outcome)
                        if on_file is not None:
                            on_file(outcome)
                previous = current
        except (TenantDisabledError, PrincipalDisabledError) as stopped:
            reason = f"not done: the job was stopped: {stopped}"
            _interrupt(engine, holder, reason)
            log.info("ingestion job stopped", job_id=str(job_id), reason=str(stopped))
            raise
        except BaseException:
            _interrupt(engine, holder)
            raise
        finally:
            embedders.close()
        with engine.begin() as connection:
            status = finish_job(connection, request.tenant_id, job_id)
    return JobOutcome(
        str(job_id),
        status,
        sum(outcome.new_bytes for outcome in outcomes),
        sum(outcome.reused_bytes for outcome in outcomes),
        outcomes,
    )


def _interrupt(engine: Engine, holder: Holder, reason: str = NOT_DONE_REASON) -> None:
    try:
        with engine.begin() as connection:
            interrupt_job(connection, holder.tenant_id, holder.job_id, reason)
    except Exception as exc:  # noqa: BLE001 - the original error matters; next start marks it
        log.warning("job not marked interrupted", job_id=str(holder.job_id), reason=str(exc))


def _batches(candidates: Sequence[Candidate]) -> Iterator[list[tuple[int, Candidate]]]:
    """Consecutive candidates grouped up to BATCH_FILES files and BATCH_BYTES bytes.

    A job of more than two full batches starts with a batch of EDGE_FILES, so that the model
    starts on its text once a few files are read, not a whole batch; it ends with batches of
    `_TAIL` sizes, each half the one before, so that what is stored after the model has
    embedded the last text (that batch's vectors and search entries) is short, and each batch
    is stored while the model embeds the next.
    """
    edges: set[int] = set()
    if len(candidates) > 2 * BATCH_FILES:
        edges = {EDGE_FILES} | {len(candidates) - sum(_TAIL[i:]) for i in range(len(_TAIL))}
    batch: list[tuple[int, Candidate]] = []
    size = 0
    for ordinal, candidate in enumerate(candidates):
        try:
            length = candidate.path.stat().st_size if candidate.error is None else 0
        except OSError:
            length = 0
        if batch and (len(batch) >= BATCH_FILES or size + length > BATCH_BYTES or ordinal in edges):
            yield batch
            batch, size = [], 0
        batch.append((ordinal, candidate))
        size += length
    if batch:
        yield batch


def _prepare(ordinal: int, candidate: Candidate, sent_name: str | None = None) -> _Prepared:
    """One file read and analysed, in its own ``ingest file`` span (docs/operations.md):
    ``file.name`` the file's name (an upload's as its sender gave it, ``sent_name``), and
    ``file.path`` only for a file read where it is (an upload's spool path is no file's)."""
    attributes: dict[str, str | int] = {"hartonomous.ingest.ordinal": ordinal}
    if sent_name is None:
        attributes["file.path"] = str(candidate.path)
    attributes["file.name"] = PurePosixPath(sent_name).name if sent_name else candidate.path.name
    with tracer().start_as_current_span("ingest file", attributes=attributes) as span:
        prepared = _analyse(ordinal, candidate)
        if prepared.analysis is not None:
            span.set_attribute("file.size", prepared.analysis.state.size)
        if prepared.reason is not None:
            span.set_status(StatusCode.ERROR, prepared.reason)
        return prepared


def _analyse(ordinal: int, candidate: Candidate) -> _Prepared:
    path = candidate.path
    if candidate.error is not None:
        return _Prepared(ordinal, path, None, candidate.error)
    try:
        state = file_state(path)
        if path.is_file() and sniff_model_format(path) is not None:
            return _Prepared(ordinal, path, Analysis(state, None, read_model(path)))
        return _Prepared(ordinal, path, Analysis(state, extract(path), None))
    except Exception as exc:  # noqa: BLE001 - one file can never stop a job
        return _Prepared(ordinal, path, None, failure_reason(exc))


def failure_reason(exc: BaseException) -> str:
    """What went wrong, in words: the message of an error we raise, else its type and text."""
    if isinstance(exc, ExtractionError | ModelFormatError | FileChangedError):
        return str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, DBAPIError | psycopg.Error):
        # The atom writer talks to psycopg directly, so its errors arrive unwrapped.
        error = exc.orig if isinstance(exc, DBAPIError) else exc
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _Batch:
    """A batch read and planned, not yet stored: `together` (the small files and those that
    already failed) go in one transaction, `analysed` of them in the order of `plan.files`."""

    prepared: list[_Prepared]
    together: list[_Prepared]
    analysed: list[_Prepared]
    plan: PlannedFiles

    def texts(self) -> dict[bytes, str]:
        # As stored (and so as read back for embedding): see hartonomous.storable.
        return {atom_id: storable_text(text) for atom_id, text in self.plan.atoms.texts().items()}


def _plan(batch: list[tuple[int, Candidate]], sent_names: Mapping[Path, str]) -> _Batch:
    prepared = [
        _prepare(ordinal, candidate, sent_names.get(candidate.path)) for ordinal, candidate in batch
    ]
    together = [item for item in prepared if item.analysis is None or _is_small(item.analysis)]
    analysed = [item for item in together if item.analysis is not None]
    plan = plan_files([(item.path, item.analysis) for item in analysed if item.analysis])
    return _Batch(prepared, together, analysed, plan)


def _store_batch(job: _Job, batch: _Batch) -> list[FileOutcome]:
    outcomes: dict[int, FileOutcome] = {}
    try:
        with job.engine.begin() as connection:
            outcomes.update(_store_together(connection, job, batch))
    except (TenantDisabledError, PrincipalDisabledError):
        raise  # the job stops: no file of the batch is stored
    except Exception as exc:  # noqa: BLE001 - each file alone says which one fails and why
        log.info("batch rolled back, its files ingested one by one", reason=failure_reason(exc))
        outcomes.clear()
    for item in batch.prepared:
        if item.ordinal not in outcomes:
            outcomes[item.ordinal] = _ingest_alone(job, item)
    return [outcomes[item.ordinal] for item in batch.prepared]


def _is_small(analysis: Analysis | None) -> bool:
    return analysis is not None and analysis.model is None and analysis.state.size <= SMALL_BYTES


def _store_together(connection: Connection, job: _Job, batch: _Batch) -> dict[int, FileOutcome]:
    items = batch.together
    if not items:
        return {}
    stored_at = write_planned(connection, job.holder, batch.plan)
    stored = {batch.analysed[index].ordinal: file for index, file in stored_at.items()}
    reasons = {item.ordinal: item.reason or "not analysed" for item in items if not item.analysis}
    reasons.update(
        {batch.analysed[i].ordinal: failure_reason(exc) for i, exc in batch.plan.failed.items()}
    )
    analyses = {item.ordinal: item.analysis for item in batch.analysed}
    holding_ids = list(
        dict.fromkeys(
            file.holding_id
            for ordinal, file in stored.items()
            if not _finds_nothing(analyses[ordinal], file)
        )
    )
    reports = job.indexer.index_holdings(
        connection, job.holder.tenant_id, holding_ids, job.holder.job_id
    )
    outcomes = [
        _outcome(job, item, stored.get(item.ordinal), reasons.get(item.ordinal), reports)
        for item in items
    ]
    _record(connection, job.holder, items, outcomes, stored)
    _hold_active(connection, job)
    return {item.ordinal: outcome for item, outcome in zip(items, outcomes, strict=True)}


def _hold_active(connection: Connection, job: _Job) -> None:
    """Disabling the tenant or principal stops the job at once: checked last in each storing
    transaction, under the tenant's state lock, so no batch commits after a disable has."""
    request = job.request
    require_active_party(connection, request.tenant_id, request.principal_id, holding=True)


def _finds_nothing(analysis: Analysis | None, file: StoredFile) -> bool:
    """Whether indexing the file's holding would find nothing to embed or make searchable.

    True for opaque bytes (nothing extracted or derived) whose every byte is new: such a file
    reaches only its own new chunks, which are bytes, never embedded nor searchable
    (search/entries.py). A file that reuses stored bytes is indexed whatever it is: an atom it
    shares may be reached by text or media another file brought.
    """
    extraction = analysis.extraction if analysis is not None else None
    return (
        extraction is not None
        and extraction.modality == "binary"
        and not extraction.segments
        and not extraction.derived
        and file.reused_bytes == 0
    )


def _ingest_alone(job: _Job, item: _Prepared) -> FileOutcome:
    reason = item.reason
    if item.analysis is not None:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with job.engine.begin() as connection:
                    file = store_file(connection, job.holder, item.path, item.analysis)
                    reports = job.indexer.index_holdings(
                        connection, job.holder.tenant_id, [file.holding_id], job.holder.job_id
                    )
                    outcome = _outcome(job, item, file, None, reports)
                    _record(connection, job.holder, [item], [outcome], {item.ordinal: file})
                    _hold_active(connection, job)
                    return outcome
            except (TenantDisabledError, PrincipalDisabledError):
                raise  # the job stops: the file is not stored
            except AtomVanishedError:
                reason = "atoms kept changing under us; try again"
            except (DBAPIError, psycopg.Error) as exc:
                error = exc.orig if isinstance(exc, DBAPIError) else exc
                reason = failure_reason(exc)
                if isinstance(error, _RETRYABLE) and attempt < _ATTEMPTS:
                    continue
                break
            except Exception as exc:  # noqa: BLE001 - one file can never stop a job
                reason = failure_reason(exc)
                break
    outcome = _outcome(job, item, None, reason or "not stored", {})
    with job.engine.begin() as connection:
        _record(connection, job.holder, [item], [outcome], {})
    return outcome


def _outcome(
    job: _Job,
    item: _Prepared,
    file: StoredFile | None,
    reason: str | None,
    reports: dict[uuid.UUID, IndexReport],
) -> FileOutcome:
    shown = job.request.name_of(item.path)
    if file is None:
        error = storable_text(f"{shown}: {named_as(str(reason), item.path, shown)}")
        return FileOutcome(shown, None, "failed", error, 0, 0)
    report = reports.get(file.holding_id, IndexReport())
    return FileOutcome(
        shown,
        file.atom_id.hex(),
        "ingested" if file.created else "unchanged",
        None,
        file.new_bytes,
        file.reused_bytes,
        report.embedded,
        [asdict(link) for link in report.similar],
        report.unknown_only,
    )


def _record(
    connection: Connection,
    holder: Holder,
    prepared: Sequence[_Prepared],
    outcomes: Sequence[FileOutcome],
    stored: dict[int, StoredFile],
) -> None:
    rows = [
        (item, outcome, stored.get(item.ordinal))
        for item, outcome in zip(prepared, outcomes, strict=True)
    ]
    connection.execute(
        _RECORD,
        {
            "tenant_id": holder.tenant_id,
            "job_id": holder.job_id,
            "ordinals": BinaryArray([item.ordinal for item, _, _ in rows]),
            "paths": BinaryArray([outcome.path for _, outcome, _ in rows]),
            "statuses": BinaryArray([outcome.status for _, outcome, _ in rows]),
            "atom_ids": BinaryArray(
                [
                    bytes.fromhex(outcome.atom_id) if outcome.atom_id else None
                    for _, outcome, _ in rows
                ]
            ),
            "holding_ids": BinaryArray([file.holding_id if file else None for _, _, file in rows]),
            "errors": BinaryArray([outcome.error for _, outcome, _ in rows]),
            "new_bytes": BinaryArray([outcome.new_bytes for _, outcome, _ in rows]),
            "reused_bytes": BinaryArray([outcome.reused_bytes for _, outcome, _ in rows]),
        },
    )


# One statement whatever the number of files (rows as arrays): compiled once, planned once.
_RECORD = text(
    "INSERT INTO ingestion_job_atoms (tenant_id, job_id, ordinal, path, status, atom_id, "
    "holding_id, error, new_bytes, reused_bytes) SELECT :tenant_id, :job_id, r.* FROM unnest("
    "CAST(:ordinals AS int[]), CAST(:paths AS text[]), CAST(:statuses AS text[]), "
    "CAST(:atom_ids AS bytea[]), CAST(:holding_ids AS uuid[]), CAST(:errors AS text[]), "
    "CAST(:new_bytes AS bigint[]), CAST(:reused_bytes AS bigint[])) AS r"
)
