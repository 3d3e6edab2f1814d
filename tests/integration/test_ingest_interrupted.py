"""A job whose process is killed mid-folder is marked `interrupted` by the next `ingest`: the
files it finished are kept, the rest are listed as not done.

The kill is made deterministic without timing: the test holds an uncommitted row for the first
chunk of the second file, so the ingestion blocks on it (a real lock wait in PostgreSQL) after
the first file is committed; the process is killed with SIGKILL while it waits."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, func, select, text
from tests.conftest import Cli
from tests.integration.data_plane.data_plane_support import add_tenant, random_bytes

from hartonomous.atoms.chunking import chunk_bytes
from hartonomous.db.tables import holdings, ingestion_job_atoms, ingestion_job_plans, ingestion_jobs
from hartonomous.ingest.pipeline import (
    BATCH_BYTES,
    FileOutcome,
    IngestRequest,
    ingest_paths,
)
from hartonomous.security.principals import (
    PrincipalDisabledError,
    ensure_principal,
    update_principal,
)
from hartonomous.security.tenants import (
    TenantDisabledError,
    require_active_party,
    set_tenant_state,
)

# Larger than half a batch: every file is a batch (a transaction) of its own.
_FILE_SIZE = BATCH_BYTES // 2 + 1
_WAIT_SECONDS = 180
# libpq names the killed process's sessions with this, so the test can tell them from its own.
_APPLICATION = "ingest-to-kill"


# The files' outcomes of a job killed while it waited on the second of f1..f4.
FIRST_FILE_ONLY = [
    ("f1.bin", "ingested"),
    ("f2.bin", "not_done"),
    ("f3.bin", "not_done"),
    ("f4.bin", "not_done"),
]


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def _scalar(engine: Engine, sql: str, **params: object) -> object:
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar_one()


def wait_for_first_file_then_lock(engine: Engine) -> None:
    """Wait until the first file is committed and the second waits on the blocking row."""
    _wait_until(
        lambda: (
            _scalar(engine, "SELECT count(*) FROM ingestion_job_atoms") == 1
            and _scalar(
                engine,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'",
            )
            == 1
        ),
        "the first file committed and the second waiting",
    )


def block_on_first_chunk(connection: Connection, data: bytes) -> None:
    """Hold (uncommitted) the atom of `data`'s first chunk: its ingestion waits on the lock."""
    first = next(iter(chunk_bytes(data)))
    connection.execute(
        text(
            "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes) "
            "VALUES (:id, 'leaf', 'binary', 'chunk', :size)"
        ),
        {"id": first.digest, "size": first.length},
    )


def test_job_killed_mid_folder_is_marked_interrupted_on_next_start(
    engine: Engine, cli: Cli, tmp_path: Path
) -> None:
    add_tenant(engine, "acme")
    folder = tmp_path / "folder"
    folder.mkdir()
    contents = {f"f{i}.bin": random_bytes(_FILE_SIZE, seed=100 + i) for i in range(1, 5)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)

    with engine.connect() as blocker:
        block_on_first_chunk(blocker, contents["f2.bin"])
        named = Cli({**cli.env, "PGAPPNAME": _APPLICATION}, cli.cwd)
        process = named.spawn("ingest", str(folder), "--tenant", "acme")
        try:
            wait_for_first_file_then_lock(engine)
            with engine.connect() as connection:
                job_status = connection.execute(select(ingestion_jobs.c.status)).scalar_one()
            assert job_status == "running"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        blocker.rollback()

    # PostgreSQL ends the killed process's sessions (and the job's lease) once it notices.
    _wait_until(
        lambda: (
            _scalar(
                engine,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name",
                name=_APPLICATION,
            )
            == 0
        ),
        "the killed process's sessions to end",
    )
    other = tmp_path / "other.txt"
    other.write_text("Another job.\n", encoding="utf-8")
    result = cli("ingest", str(other), "--tenant", "acme")
    assert result.exit_code == 0, result.stderr

    with engine.connect() as connection:
        jobs = dict(
            connection.execute(select(ingestion_jobs.c.job_id, ingestion_jobs.c.status)).all()
        )
        killed = next(job for job, status in jobs.items() if status != "completed")
        rows = connection.execute(
            select(ingestion_job_atoms.c.path, ingestion_job_atoms.c.status)
            .where(ingestion_job_atoms.c.job_id == killed)
            .order_by(ingestion_job_atoms.c.ordinal)
        ).all()
        held = (
            connection.execute(select(holdings.c.source_uri).where(holdings.c.job_id == killed))
            .scalars()
            .all()
        )
        plans = connection.execute(select(ingestion_job_plans)).all()
        counts = connection.execute(
            select(ingestion_jobs.c.file_count, ingestion_jobs.c.finished_at).where(
                ingestion_jobs.c.job_id == killed
            )
        ).one()
    assert sorted(jobs.values()) == ["completed", "interrupted"]
    assert [(Path(path).name, status) for path, status in rows] == FIRST_FILE_ONLY
    assert [Path(uri).name for uri in held] == ["f1.bin"]
    assert plans == []
    assert counts.file_count == 4
    assert counts.finished_at is not None


def test_job_stopped_by_ctrl_c_marks_itself_interrupted(engine: Engine, tmp_path: Path) -> None:
    add_tenant(engine, "acme")
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text(f"File {name}.\n", encoding="utf-8")
    big = tmp_path / "d.bin"
    big.write_bytes(random_bytes(BATCH_BYTES, seed=5))  # a batch of its own, after the first

    def stop(outcome: FileOutcome) -> None:
        if Path(outcome.path).name == "c.txt":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_paths(engine, IngestRequest("acme"), [tmp_path], on_file=stop)
    with engine.connect() as connection:
        status = connection.execute(select(ingestion_jobs.c.status)).scalar_one()
        rows = connection.execute(
            select(ingestion_job_atoms.c.path, ingestion_job_atoms.c.status).order_by(
                ingestion_job_atoms.c.ordinal
            )
        ).all()
    assert status == "interrupted"
    assert [(Path(path).name, state) for path, state in rows] == [
        ("a.txt", "ingested"),
        ("b.txt", "ingested"),
        ("c.txt", "ingested"),
        ("d.bin", "not_done"),
    ]


@pytest.mark.parametrize("disabled", ["tenant", "principal"])
def test_disabling_the_tenant_or_principal_stops_a_running_job_before_its_next_batch(
    engine: Engine, tmp_path: Path, disabled: str
) -> None:
    """A job already running when its tenant or principal is disabled stops before the next
    batch: files stored are kept, the rest `not_done` naming the disable, job `interrupted`."""
    add_tenant(engine, "acme")
    with engine.begin() as connection:
        ensure_principal(connection, "acme", "alice", "Alice", "user")
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"File {name}.\n", encoding="utf-8")
    # Batches: a.txt, b.txt and c.bin; then d.bin; then e.bin.
    for seed, name in enumerate(("c.bin", "d.bin", "e.bin"), start=6):
        (tmp_path / name).write_bytes(random_bytes(_FILE_SIZE, seed=seed))

    def disable(outcome: FileOutcome) -> None:
        if Path(outcome.path).name == "a.txt":  # the first batch is stored
            with engine.begin() as connection:
                if disabled == "tenant":
                    set_tenant_state(connection, "acme", "disabled")
                else:
                    update_principal(connection, "acme", "alice", state="disabled")

    stopped = TenantDisabledError if disabled == "tenant" else PrincipalDisabledError
    with pytest.raises(stopped):
        ingest_paths(engine, IngestRequest("acme", principal_id="alice"), [tmp_path], disable)
    with engine.connect() as connection:
        status = connection.execute(select(ingestion_jobs.c.status)).scalar_one()
        rows = connection.execute(
            select(
                ingestion_job_atoms.c.path,
                ingestion_job_atoms.c.status,
                ingestion_job_atoms.c.error,
            ).order_by(ingestion_job_atoms.c.ordinal)
        ).all()
        held = connection.execute(select(holdings.c.source_uri)).scalars().all()
    assert status == "interrupted"
    assert [(Path(path).name, state) for path, state, _ in rows] == [
        ("a.txt", "ingested"),
        ("b.txt", "ingested"),
        ("c.bin", "ingested"),
        ("d.bin", "not_done"),
        ("e.bin", "not_done"),
    ]
    said = "tenant 'acme' is disabled" if disabled == "tenant" else "principal 'alice'"
    for path, _, error in rows[3:]:
        assert error.startswith(f"{path}: not done: the job was stopped: "), error
        assert said in error, error
    assert sorted(Path(uri).name for uri in held) == ["a.txt", "b.txt", "c.bin"]


def _wait_for_one_lock_wait(engine: Engine, what: str) -> None:
    """Until one session waits for an advisory lock (the tenant's state lock)."""
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    _wait_until(lambda: _scalar(engine, waiting) == 1, what)


def _disable(connection: Connection, disabled: str) -> None:
    if disabled == "tenant":
        set_tenant_state(connection, "acme", "disabled")
    else:
        update_principal(connection, "acme", "alice", state="disabled")


@pytest.mark.parametrize("disabled", ["tenant", "principal"])
@pytest.mark.parametrize("size", ["small", "large"])
def test_a_batch_committing_while_a_disable_commits_stores_nothing(
    engine: Engine, tmp_path: Path, disabled: str, size: str
) -> None:
    """The race the check before each batch left open: the disable commits while a batch is
    being stored. The batch waits for the disable (the tenant's state lock) and then sees it:
    nothing of it is stored, the job is `interrupted` with every file `not_done`. Small files
    are stored together in one transaction, a large one alone: both paths are held."""
    add_tenant(engine, "acme")
    with engine.begin() as connection:
        ensure_principal(connection, "acme", "alice", "Alice", "user")
    if size == "small":
        names = ["a.txt", "b.txt"]
        for name in names:
            (tmp_path / name).write_text(f"File {name}.\n", encoding="utf-8")
    else:
        names = ["big.bin"]
        (tmp_path / "big.bin").write_bytes(random_bytes(_FILE_SIZE, seed=3))
    failure: list[BaseException] = []

    def ingest() -> None:
        try:
            ingest_paths(engine, IngestRequest("acme", principal_id="alice"), [tmp_path])
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            failure.append(exc)

    with engine.connect() as disabling:
        transaction = disabling.begin()
        _disable(disabling, disabled)  # written, not committed: the job still starts
        worker = threading.Thread(target=ingest)
        worker.start()
        _wait_for_one_lock_wait(engine, "the batch to wait for the disable")
        transaction.commit()
    worker.join(_WAIT_SECONDS)
    stopped = TenantDisabledError if disabled == "tenant" else PrincipalDisabledError
    assert [type(exc) for exc in failure] == [stopped], failure
    with engine.connect() as connection:
        status = connection.execute(select(ingestion_jobs.c.status)).scalar_one()
        states = connection.execute(
            select(ingestion_job_atoms.c.path, ingestion_job_atoms.c.status)
        ).all()
        held = connection.execute(select(func.count()).select_from(holdings)).scalar_one()
    assert status == "interrupted"
    assert sorted((Path(path).name, state) for path, state in states) == [
        (name, "not_done") for name in names
    ]
    assert held == 0


def test_a_disable_waits_for_the_batch_that_is_committing(engine: Engine) -> None:
    """The other order: a batch holding the tenant's state lock (checked active, not yet
    committed) makes the disable wait until it commits, so the batch is stored before the
    disable and nothing is stored after it."""
    add_tenant(engine, "acme")
    with engine.connect() as batch:
        transaction = batch.begin()
        require_active_party(batch, "acme", None, holding=True)
        finished = threading.Event()

        def disable() -> None:
            with engine.begin() as connection:
                _disable(connection, "tenant")
            finished.set()

        worker = threading.Thread(target=disable)
        worker.start()
        _wait_for_one_lock_wait(engine, "the disable to wait for the batch")
        assert not finished.is_set()
        transaction.commit()
    worker.join(_WAIT_SECONDS)
    assert finished.is_set()
    assert _scalar(engine, "SELECT is_active FROM tenants WHERE tenant_id = 'acme'") is False
