"""Test harness: one embedded PostgreSQL per test session, one cloned database per test.

Every test that needs a database gets its own, created from a template that was migrated to
head once: isolation is complete (separate processes may use it) and creation costs tens of
milliseconds rather than a migration run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import psycopg
import pytest
from sqlalchemy import Engine, create_engine
from tests.cli_fork_server import ForkedProcess, ForkServer
from tests.kafka_server import KafkaServer, start_kafka
from tests.neo4j_server import Neo4jServer, start_neo4j

from hartonomous.db import EmbeddedPostgres, libpq_url, upgrade
from hartonomous.db.embedded import SERVER_SETTINGS

TEMPLATE_DATABASE = "hartonomous_template"
# The session's cluster only: no fsync. Each test's CREATE/DROP DATABASE and every commit
# otherwise waits for the disk (about half a second a test). This loses data only if the
# machine itself crashes, which no test does; a crash of a server process or a client loses
# exactly what it loses with fsync on. Servers that `up` and the CLI start run with the
# product's settings.
SESSION_CLUSTER_SETTINGS = {"fsync": "off"}
# A hang guard, not an expectation.
CLI_HANG_GUARD_SECONDS = 240


@dataclass(frozen=True)
class PostgresCluster:
    server: EmbeddedPostgres

    def url(self, database: str) -> str:
        return self.server.url.replace("/hartonomous?", f"/{database}?")

    def admin(self, sql: str) -> None:
        admin_url = libpq_url(self.url("postgres"))
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(sql)  # type: ignore[arg-type]

    def create_database(self, template: str) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        # A logical replication slot (the CES consumer's) would block DROP DATABASE.
        self.admin(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE database = '{name}'"
        )
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Clusters go to memory (tmpfs) when it has this much room, else to the system's temp folder.
MEMORY_SCRATCH = Path("/dev/shm")  # noqa: S108 - a private folder is made inside it
MEMORY_SCRATCH_MIN_FREE_BYTES = 4 << 30


def scratch_parent() -> Path | None:
    """The folder test clusters are made in: ``TESTS_SCRATCH_DIR`` when set, else /dev/shm when
    it has 4 GiB free, else None (the system's temp folder, /tmp).

    The suite creates and drops a database per test (about 1,000 files each) and initialises
    dozens of clusters. On ext4 each new inode then scans the recently deleted ones
    (`recently_deleted` in the kernel's inode allocator): CREATE DATABASE from the migrated
    template took 0.3-0.5 s of kernel CPU under /tmp and 0.03 s on tmpfs (2-core machine)."""
    if os.environ.get("TESTS_SCRATCH_DIR"):
        return Path(os.environ["TESTS_SCRATCH_DIR"])
    try:
        status = os.statvfs(MEMORY_SCRATCH)
    except OSError:
        return None
    writable = os.access(MEMORY_SCRATCH, os.W_OK | os.X_OK)
    if writable and status.f_bavail * status.f_frsize >= MEMORY_SCRATCH_MIN_FREE_BYTES:
        return MEMORY_SCRATCH
    return None


@pytest.fixture(scope="session")
def data_root() -> Iterator[Path]:
    """Where embedded clusters live during tests: a new folder in ``scratch_parent()``.

    Not pytest's tmp_path: as root, PostgreSQL runs as an unprivileged user that must traverse
    to its data directory, and pytest keeps its own temporary root private (0700).
    """
    root = Path(tempfile.mkdtemp(prefix="hartonomous-tests-", dir=scratch_parent()))
    root.chmod(0o711)
    yield root
    _stop_servers_under(root)
    shutil.rmtree(root, ignore_errors=True)


def _stop_servers_under(root: Path) -> None:
    """A failed test may leave a server behind; never leave one running on the machine."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            arguments = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            arguments
            and arguments[0].endswith(b"/postgres")
            and f"{root}/".encode() in b" ".join(arguments)
        ):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(cmdline.parent.name), signal.SIGQUIT)


@pytest.fixture
def data_dir(data_root: Path) -> Iterator[Path]:
    """A new, empty data directory for one test; removed after it (with any server a failed
    test left running there), so that clusters in memory do not pile up over the session."""
    path = Path(tempfile.mkdtemp(prefix="data-", dir=data_root))
    yield path
    _stop_servers_under(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster(data_root: Path) -> Iterator[PostgresCluster]:
    server = EmbeddedPostgres(data_root / "cluster")
    with mock.patch.dict(SERVER_SETTINGS, SESSION_CLUSTER_SETTINGS):
        server.start()
    cluster = PostgresCluster(server)
    try:
        cluster.admin(f'CREATE DATABASE "{TEMPLATE_DATABASE}"')
        engine = create_engine(cluster.url(TEMPLATE_DATABASE))
        upgrade(engine)
        engine.dispose()
        yield cluster
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh database at migrations head, dropped after the test."""
    name = postgres_cluster.create_database(TEMPLATE_DATABASE)
    yield postgres_cluster.url(name)
    postgres_cluster.drop_database(name)


@pytest.fixture
def empty_database_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh database with nothing in it (no extension, no migrations)."""
    name = postgres_cluster.create_database("template0")
    yield postgres_cluster.url(name)
    postgres_cluster.drop_database(name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


CliProcess = ForkedProcess | subprocess.Popen[str]

# At most one: this session's (this xdist worker's) fork server, started on first use.
_fork_servers: list[ForkServer] = []


def _cli_fork_server() -> ForkServer:
    if not _fork_servers:
        folder = Path(tempfile.mkdtemp(prefix="hartonomous-cli-"))
        _fork_servers.append(ForkServer(folder / "fork.sock", clean_environment()))
    return _fork_servers[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist's `--dist loadgroup`: a module's tests share a worker (its module
    fixtures are made once) and every module that uses Neo4j shares one worker, so one JVM
    starts (Community has one graph, which those tests clear)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    modules_using_neo4j = {
        item.nodeid.split("::")[0] for item in items if "neo4j_server" in item.fixturenames
    }
    for item in items:
        module = item.nodeid.split("::")[0]
        group = "neo4j" if module in modules_using_neo4j else module
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionfinish(session: pytest.Session) -> None:
    for server in _fork_servers:
        server.stop()
        shutil.rmtree(server.socket_path.parent, ignore_errors=True)


@dataclass(frozen=True)
class Cli:
    """Runs the real `hartonomous` command in a process of its own, as an operator would.

    The process is forked from a server that has already imported the CLI (tests/
    cli_fork_server.py): each run is a separate process with this env, cwd and exit status,
    without paying an interpreter start. `fresh_interpreter=True` runs
    `python -m hartonomous` from scratch instead.
    """

    env: dict[str, str]
    cwd: Path
    fresh_interpreter: bool = os.environ.get("TESTS_CLI_FRESH_INTERPRETER") == "1"

    def __call__(
        self, *args: str, input_text: str | None = None, errors: str = "strict"
    ) -> CliResult:
        """Runs to the end; `errors` decodes stdout/stderr (`surrogateescape` keeps bad bytes)."""
        if self.fresh_interpreter:
            completed = subprocess.run(
                [sys.executable, "-m", "hartonomous", *args],
                capture_output=True,
                text=True,
                errors=errors,
                env=self.env,
                cwd=self.cwd,
                input=input_text,
                timeout=CLI_HANG_GUARD_SECONDS,
                check=False,
            )
        else:
            completed = _cli_fork_server().run(
                list(args),
                env=self.env,
                cwd=self.cwd,
                input_text=input_text,
                timeout=CLI_HANG_GUARD_SECONDS,
                errors=errors,
            )
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    def spawn(
        self,
        *args: str,
        stdout: int | None = subprocess.DEVNULL,
        stderr: int | None = subprocess.DEVNULL,
    ) -> CliProcess:
        """A running command to signal or wait on, as `subprocess.Popen` (text pipes)."""
        if self.fresh_interpreter:
            return subprocess.Popen(
                [sys.executable, "-m", "hartonomous", *args],
                env=self.env,
                cwd=self.cwd,
                stdout=stdout,
                stderr=stderr,
                text=True,
            )
        return _cli_fork_server().spawn(
            list(args), env=self.env, cwd=self.cwd, stdout=stdout, stderr=stderr
        )


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HARTONOMOUS_")}


@pytest.fixture
def cli(database_url: str, data_dir: Path) -> Cli:
    """The CLI pointed at this test's database (as `database.url`), run from an empty folder."""
    env = clean_environment()
    env["HARTONOMOUS_DATABASE__URL"] = database_url
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    return Cli(env=env, cwd=data_dir)


@pytest.fixture
def embedded_cli(data_dir: Path) -> Cli:
    """The CLI with no database URL: it starts its own embedded server in `data_dir`."""
    env = clean_environment()
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    return Cli(env=env, cwd=data_dir)


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jServer]:
    """A real Neo4j 5 server (no auth) shared by the session, started only when a test asks
    for it; built from tests/neo4j-server on first use. Its databases live in a data directory
    of their own, so a test that stops it (`graph backup` needs a stopped database) restarts it
    with `restart()` on the same port and graph. Tests clean up what they create."""
    root = tmp_path_factory.mktemp("neo4j")
    server = start_neo4j(root / "server", data_directory=root / "data")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def neo4j_uri(neo4j_server: Neo4jServer) -> str:
    """`bolt://127.0.0.1:PORT` of the session's Neo4j server; it has one graph for the whole
    session: tests clean up what they create."""
    return neo4j_server.uri


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """A real Apache Kafka 4 broker (KRaft, one node, PLAINTEXT) shared by the session, started
    only when a test asks for it (docs/testing-kafka.md). A test that stops it restarts it."""
    server = start_kafka(tmp_path_factory.mktemp("kafka"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: KafkaServer) -> str:
    """`127.0.0.1:PORT` of the session's Kafka broker; tests use topics and consumer groups
    of their own."""
    return kafka_server.bootstrap_servers
