"""A real Neo4j 5 server for tests, built from Maven Central artifacts and run as a child JVM.

`tests/neo4j-server/` is a Maven project: Neo4j's test harness plus a small launcher class that
starts an in-process server with Bolt on 127.0.0.1 (no TLS, no auth, no HTTP), prints
`NEO4J_BOLT_URI bolt://127.0.0.1:PORT` when it is ready and stops when its stdin closes. This
module builds that project when its output is missing or older than its sources, starts the
server and stops it. See docs/testing-neo4j.md. (The folder name has a hyphen so that it can
never pass for a Python package named `neo4j` and shadow the driver.)
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests import jvm_process

PROJECT = Path(__file__).resolve().parent / "neo4j-server"
TARGET = PROJECT / "target"
LAUNCHER_JAR = TARGET / "test-neo4j-server.jar"
READY_PREFIX = "NEO4J_BOLT_URI "

# A modest heap: test graphs are small and the machine (2 cores) also runs PostgreSQL. The
# client compiler only and the serial collector: on 2 loaded cores a start took 34 s instead
# of 57-82 s and a test's queries half the time (C2's compile threads and G1's were the cost).
JVM_OPTIONS = ("-Xms256m", "-Xmx1g", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")

# A hang guard, not an expectation: a start takes ~10 s.
START_TIMEOUT_SECONDS = 300.0

# Bolt handshake: the magic preamble, then four version proposals of [0, range, minor, major]:
# 5.4 down to 5.0, 4.4, none, none. The server answers with the version it picked, or zeros.
BOLT_HANDSHAKE = bytes.fromhex("6060b017") + bytes([0, 4, 4, 5, 0, 0, 4, 4]) + bytes(8)


class Neo4jServerError(RuntimeError):
    """The test Neo4j server could not be built or started; the message says why."""


def build_launcher() -> Path:
    """Build tests/neo4j-server unless its jar is newer than its sources; return the jar."""
    jvm_process.maven_build(PROJECT, ["package"], _launcher_is_current, Neo4jServerError)
    return LAUNCHER_JAR


def _launcher_is_current() -> bool:
    if not LAUNCHER_JAR.is_file() or not (TARGET / "lib").is_dir():
        return False
    sources = [PROJECT / "pom.xml", *(PROJECT / "src").rglob("*")]
    newest_source = max(path.stat().st_mtime for path in sources if path.is_file())
    return LAUNCHER_JAR.stat().st_mtime >= newest_source


@dataclass
class Neo4jServer:
    """A running server; `stop` ends the JVM and removes its files (not `data_directory`)."""

    process: subprocess.Popen[bytes]
    uri: str
    working_directory: Path
    data_directory: Path | None = None

    def stop(self) -> None:
        """Close stdin (the launcher's stop signal), then escalate to SIGTERM and SIGKILL."""
        jvm_process.stop(self.process)
        shutil.rmtree(self.working_directory, ignore_errors=True)

    def restart(self) -> None:
        """Start again after `stop` on the same port and `data_directory`: the same graph at
        the same `uri`, as a restarted Neo4j. Raises `Neo4jServerError` without a
        `data_directory` (the graph would be gone)."""
        if self.data_directory is None:
            raise Neo4jServerError("a server started without a data directory cannot restart")
        port = int(self.uri.rsplit(":", 1)[1])
        started = start_neo4j(self.working_directory, port, self.data_directory)
        self.process, self.uri = started.process, started.uri


def start_neo4j(
    working_directory: Path, port: int = 0, data_directory: Path | None = None
) -> Neo4jServer:
    """Build the launcher if needed, start a server whose files live in `working_directory`
    (created if missing; removed by `stop`) and return once Bolt answers a handshake.
    `port` 0 lets the system pick; a fixed port lets a test restart a server in place.
    `data_directory` (kept by `stop`) holds the databases instead, so that a server started
    again on it has the data of the one before, as a restarted Neo4j does."""
    jar = build_launcher()
    java = jvm_process.java(Neo4jServerError, "Neo4j 5 needs Java 17 or 21")
    working_directory.mkdir(parents=True, exist_ok=True)
    log_path = working_directory / "launcher.log"
    arguments = [str(working_directory / "server"), str(port)]
    if data_directory is not None:
        arguments.append(str(data_directory))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [java, *JVM_OPTIONS, "-jar", str(jar), *arguments],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal reaches pytest, whose teardown stops the
            # server in order, rather than the JVM directly.
            start_new_session=True,
        )
    server = Neo4jServer(process, "", working_directory, data_directory)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        server.uri = _wait_for_ready_line(process, log_path, deadline)
        _wait_for_bolt(server.uri, deadline)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_ready_line(process: subprocess.Popen[bytes], log_path: Path, deadline: float) -> str:
    while time.monotonic() < deadline:
        output = log_path.read_text(errors="replace")
        for line in output.splitlines():
            if line.startswith(READY_PREFIX):
                return line.removeprefix(READY_PREFIX).strip()
        if process.poll() is not None:
            raise Neo4jServerError(
                f"the test Neo4j server exited with {process.returncode} before it was ready:\n"
                f"{jvm_process.tail(output)}"
            )
        time.sleep(0.1)
    raise Neo4jServerError(
        f"the test Neo4j server was not ready within {START_TIMEOUT_SECONDS:.0f} s; "
        f"its output is in {log_path}"
    )


def _wait_for_bolt(uri: str, deadline: float) -> None:
    """Ready means a Bolt handshake succeeds, not merely that the port accepts connections."""
    host, port = uri.removeprefix("bolt://").rsplit(":", 1)
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with socket.create_connection((host, int(port)), timeout=10) as connection:
                connection.sendall(BOLT_HANDSHAKE)
                agreed = connection.recv(4)
            if len(agreed) == 4 and agreed != bytes(4):
                return
        time.sleep(0.1)
    raise Neo4jServerError(f"no Bolt handshake on {uri} within {START_TIMEOUT_SECONDS:.0f} s")
