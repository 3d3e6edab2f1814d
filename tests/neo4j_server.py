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
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent / "neo4j-server"
TARGET = PROJECT / "target"
LAUNCHER_JAR = TARGET / "test-neo4j-server.jar"
READY_PREFIX = "NEO4J_BOLT_URI "

# A modest heap: test graphs are small and the machine (2 cores) also runs PostgreSQL.
JVM_OPTIONS = ("-Xms256m", "-Xmx1g")

# Hang guards, not expectations: a cold build downloads ~150 MB, a start takes ~10 s.
BUILD_TIMEOUT_SECONDS = 1800.0
START_TIMEOUT_SECONDS = 300.0
STOP_TIMEOUT_SECONDS = 60.0
KILL_TIMEOUT_SECONDS = 30.0

# Bolt handshake: the magic preamble, then four version proposals of [0, range, minor, major]:
# 5.4 down to 5.0, 4.4, none, none. The server answers with the version it picked, or zeros.
BOLT_HANDSHAKE = bytes.fromhex("6060b017") + bytes([0, 4, 4, 5, 0, 0, 4, 4]) + bytes(8)


class Neo4jServerError(RuntimeError):
    """The test Neo4j server could not be built or started; the message says why."""


def build_launcher() -> Path:
    """Build tests/neo4j-server unless its jar is newer than its sources; return the jar.

    Offline first, so that a warm local Maven repository never touches the network; online when
    that fails (fresh machine, changed dependency). A lock keeps concurrent test sessions in the
    same tree from building into the same folder at once.
    """
    mvn = shutil.which("mvn")
    if mvn is None:
        raise Neo4jServerError("Maven (mvn) is not on PATH; it builds the test Neo4j server")
    TARGET.mkdir(exist_ok=True)
    with (TARGET / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _launcher_is_current():
            return LAUNCHER_JAR
        command = [mvn, "-B", "-q", "-Dstyle.color=never", "package"]
        if _run_maven([*command[:-1], "-o", "package"]).returncode == 0:
            return LAUNCHER_JAR
        completed = _run_maven(command)
        if completed.returncode != 0:
            raise Neo4jServerError(
                f"building {PROJECT} failed (exit {completed.returncode}):\n"
                f"{_tail(completed.stdout)}"
            )
    return LAUNCHER_JAR


def _run_maven(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=PROJECT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )


def _launcher_is_current() -> bool:
    if not LAUNCHER_JAR.is_file() or not (TARGET / "lib").is_dir():
        return False
    sources = [PROJECT / "pom.xml", *(PROJECT / "src").rglob("*")]
    newest_source = max(path.stat().st_mtime for path in sources if path.is_file())
    return LAUNCHER_JAR.stat().st_mtime >= newest_source


@dataclass
class Neo4jServer:
    """A running server; `stop` ends the JVM and removes its files."""

    process: subprocess.Popen[bytes]
    uri: str
    working_directory: Path

    def stop(self) -> None:
        """Close stdin (the launcher's stop signal), then escalate to SIGTERM and SIGKILL."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            _signal(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout=KILL_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                _signal(self.process, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.working_directory, ignore_errors=True)


def start_neo4j(
    working_directory: Path, port: int = 0, data_directory: Path | None = None
) -> Neo4jServer:
    """Build the launcher if needed, start a server whose files live in `working_directory`
    (created if missing; removed by `stop`) and return once Bolt answers a handshake.
    `port` 0 lets the system pick; a fixed port lets a test restart a server in place.
    `data_directory` (kept by `stop`) holds the databases instead, so that a server started
    again on it has the data of the one before, as a restarted Neo4j does."""
    jar = build_launcher()
    java = _java()
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
    server = Neo4jServer(process, "", working_directory)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        server.uri = _wait_for_ready_line(process, log_path, deadline)
        _wait_for_bolt(server.uri, deadline)
    except BaseException:
        server.stop()
        raise
    return server


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java is None or not Path(java).is_file():
        raise Neo4jServerError("no Java found (JAVA_HOME or PATH); Neo4j 5 needs Java 17 or 21")
    return java


def _wait_for_ready_line(process: subprocess.Popen[bytes], log_path: Path, deadline: float) -> str:
    while time.monotonic() < deadline:
        output = log_path.read_text(errors="replace")
        for line in output.splitlines():
            if line.startswith(READY_PREFIX):
                return line.removeprefix(READY_PREFIX).strip()
        if process.poll() is not None:
            raise Neo4jServerError(
                f"the test Neo4j server exited with {process.returncode} before it was ready:\n"
                f"{_tail(output)}"
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


def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
