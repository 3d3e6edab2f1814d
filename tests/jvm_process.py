"""What the test servers that run as child JVMs (tests/neo4j_server.py, tests/kafka_server.py)
share: a Maven build under a lock (offline first), finding Java, free ports of 127.0.0.1 and a
stop that closes stdin, then escalates to SIGTERM and SIGKILL. See docs/testing-neo4j.md and
docs/testing-kafka.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

# Hang guards, not expectations: a cold build downloads up to ~200 MB.
BUILD_TIMEOUT_SECONDS = 1800.0
STOP_TIMEOUT_SECONDS = 60.0


def maven_build(
    project: Path,
    goals: list[str],
    is_current: Callable[[], bool],
    error: type[RuntimeError],
    *,
    clean: Path | None = None,
    after: Callable[[], None] = lambda: None,
) -> None:
    """Run `mvn <goals>` in `project` unless `is_current()`; offline first, so that a warm local
    Maven repository never touches the network, online when that fails (fresh machine, changed
    dependency). A lock in `project/target` keeps concurrent test sessions in the same tree from
    building into the same folder at once. `clean` (stale output of an older build) is removed
    before a build; `after` runs under the lock once a build succeeded.
    Raises `error` naming the project and Maven's last lines when both attempts fail."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise error(f"Maven (mvn) is not on PATH; it builds the test server of {project}")
    target = project / "target"
    target.mkdir(exist_ok=True)
    with (target / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_current():
            return
        if clean is not None:
            shutil.rmtree(clean, ignore_errors=True)
        options = ["-B", "-q", "-Dstyle.color=never"]
        completed = run([mvn, "-o", *options, *goals], project, BUILD_TIMEOUT_SECONDS)
        if completed.returncode != 0:
            completed = run([mvn, *options, *goals], project, BUILD_TIMEOUT_SECONDS)
        if completed.returncode != 0:
            raise error(
                f"building {project} failed (exit {completed.returncode}):\n"
                f"{tail(completed.stdout)}"
            )
        after()


def java(error: type[RuntimeError], needs: str) -> str:
    """The `java` of JAVA_HOME, else of PATH; raises `error` saying what `needs` it."""
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if found is None or not Path(found).is_file():
        raise error(f"no Java found (JAVA_HOME or PATH); {needs}")
    return found


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run to the end with stdout and stderr together in `stdout`; never raises on exit codes."""
    return subprocess.run(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop(process: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """Close stdin (the servers' stop signal), then escalate to SIGTERM and SIGKILL, sent to
    the process group when `group` (a shell that runs the JVM)."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
            return
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(process.pid, signum)
                else:
                    process.send_signal(signum)
    process.wait()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tail(text: str, lines: int = 40) -> str:
    """The last `lines` lines of `text`: what an error message quotes of a tool's output."""
    return "\n".join(text.splitlines()[-lines:])
