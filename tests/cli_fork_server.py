"""Runs `python -m hartonomous` as a real process that skips the interpreter's start-up cost.

A test CLI run used to pay for a new interpreter importing the CLI (about 1.7 s of CPU on the
2-core CI machine, several seconds under load) before doing anything, and the suite makes
hundreds of them. This module starts one "fork server" per test session (per pytest-xdist
worker): a plain interpreter that imports `hartonomous.cli.main` once and then, for each run,
forks a child that takes the caller's argv, environment, working directory and stdin/stdout/
stderr, and runs `hartonomous.__main__` exactly as `python -m hartonomous` does (through
`runpy`, so the program name, `sys.argv[0]` and interpreter shutdown are those of a real run).

What stays real: a separate process with its own pid, file descriptors, environment and exit
status (a signal shows as a negative code, as `subprocess` reports it); stdout and stderr are
pipes to the test. What differs from a fresh interpreter: modules `hartonomous.cli.main`
imports are already imported (anything the CLI imports lazily is imported in the child, as
before), and variables that only act at interpreter start (PYTHON*) are the server's. Tests of
start-up itself, signals or exit under load start `sys.executable -m hartonomous` themselves.

Protocol, over a Unix socket: the client sends one JSON request {argv, env, cwd} with three
file descriptors (stdin, stdout, stderr) attached (SCM_RIGHTS); the server answers with the
child's pid on one line and, when the child has ended, its wait status on a second line.
"""

from __future__ import annotations

import array
import contextlib
import gc
import json
import locale
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

_MAX_REQUEST_BYTES = 4 * 1024 * 1024


class ForkServer:
    """One fork server process; `run` is `subprocess.run(["python", "-m", "hartonomous", ...])`."""

    def __init__(self, socket_path: Path, env: dict[str, str]) -> None:
        self.socket_path = socket_path
        # stdin is a pipe the server watches: when this process ends, the server does too.
        self._process = subprocess.Popen(
            [sys.executable, __file__, str(socket_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=env,
            cwd=socket_path.parent,
        )
        # The server prints nothing: it is ready when its socket accepts a connection.

    def _connect(self, timeout: float | None) -> socket.socket:
        deadline = time.monotonic() + 120.0
        while True:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                client.connect(str(self.socket_path))
            except (FileNotFoundError, ConnectionRefusedError):
                client.close()
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"the CLI fork server exited with {self._process.returncode}"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError("hang guard: the CLI fork server did not start") from None
                time.sleep(0.05)
                continue
            client.settimeout(timeout)
            return client

    def run(
        self,
        args: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        input_text: str | None,
        timeout: float,
        errors: str = "strict",
    ) -> subprocess.CompletedProcess[str]:
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        stdin_r, stdin_w = os.pipe() if input_text is not None else (0, -1)
        request = json.dumps({"argv": args, "env": env, "cwd": str(cwd)}).encode()
        client = self._connect(timeout)
        try:
            fds = array.array("i", [stdin_r, stdout_w, stderr_w])
            client.sendmsg(
                [len(request).to_bytes(8, "big"), request],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)],
            )
        finally:
            os.close(stdout_w)
            os.close(stderr_w)
            if stdin_w != -1:
                os.close(stdin_r)
        outputs: dict[int, bytes] = {}
        readers = [
            threading.Thread(target=_read_all, args=(fd, outputs), daemon=True)
            for fd in (stdout_r, stderr_r)
        ]
        if stdin_w != -1:
            readers.append(
                threading.Thread(
                    target=_write_all, args=(stdin_w, (input_text or "").encode()), daemon=True
                )
            )
        for reader in readers:
            reader.start()
        lines = client.makefile("r")
        pid = 0
        try:
            pid = int(lines.readline())
            status_line = lines.readline()
        except (TimeoutError, ValueError):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise subprocess.TimeoutExpired([*args], timeout) from None
        finally:
            lines.close()
            client.close()
        for reader in readers:
            reader.join()
        if not status_line:
            raise RuntimeError("the CLI fork server closed the connection without a status")
        return subprocess.CompletedProcess(
            ["python", "-m", "hartonomous", *args],
            os.waitstatus_to_exitcode(int(status_line)),
            _text(outputs[stdout_r], errors),
            _text(outputs[stderr_r], errors),
        )

    def spawn(
        self,
        args: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        stdout: int | None = subprocess.DEVNULL,
        stderr: int | None = subprocess.DEVNULL,
    ) -> ForkedProcess:
        """`subprocess.Popen([python, "-m", "hartonomous", *args], ...)` for a long-running
        command a test signals or waits on: `stdout`/`stderr` are `subprocess.DEVNULL`,
        `subprocess.PIPE` (then a text stream) or None (this process's); stdin is inherited."""
        ends: list[int] = []
        ours: list[int | None] = []
        for target, choice in ((1, stdout), (2, stderr)):
            if choice == subprocess.PIPE:
                read_end, write_end = os.pipe()
                ends.append(write_end)
                ours.append(read_end)
            elif choice == subprocess.DEVNULL:
                ends.append(os.open(os.devnull, os.O_WRONLY))
                ours.append(None)
            elif choice is None:
                ends.append(os.dup(target))
                ours.append(None)
            else:
                raise ValueError(f"stdout/stderr {choice!r}: DEVNULL, PIPE or None")
        request = json.dumps({"argv": args, "env": env, "cwd": str(cwd)}).encode()
        client = self._connect(None)
        try:
            client.sendmsg(
                [len(request).to_bytes(8, "big"), request],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, *ends]))],
            )
        finally:
            for fd in ends:
                os.close(fd)
        lines = client.makefile("r")
        pid = int(lines.readline())
        return ForkedProcess(pid, client, lines, *(_text_stream(fd) for fd in ours))

    def stop(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class ForkedProcess:
    """The part of `subprocess.Popen` tests use, for a process `ForkServer.spawn` started.

    The process is not this one's child: its wait status arrives on the server connection.
    """

    def __init__(
        self,
        pid: int,
        connection: socket.socket,
        lines: IO[str],
        stdout: IO[str] | None,
        stderr: IO[str] | None,
    ) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._connection = connection
        self._lines = lines

    def poll(self) -> int | None:
        if self.returncode is None:
            readable, _, _ = select.select([self._connection], [], [], 0)
            if readable:
                self._finish()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            readable, _, _ = select.select([self._connection], [], [], timeout)
            if not readable:
                raise subprocess.TimeoutExpired(["hartonomous"], timeout or 0.0)
            self._finish()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Reads pipes to their end and waits (no input: stdin is inherited)."""
        texts = {"out": "", "err": ""}

        def read(name: str, stream: IO[str] | None) -> None:
            if stream is not None:
                texts[name] = stream.read()

        readers = [
            threading.Thread(target=read, args=("out", self.stdout), daemon=True),
            threading.Thread(target=read, args=("err", self.stderr), daemon=True),
        ]
        for reader in readers:
            reader.start()
        self.wait(timeout)
        for reader in readers:
            reader.join(timeout)
        return texts["out"], texts["err"]

    def _finish(self) -> None:
        status = self._lines.readline()
        self._lines.close()
        self._connection.close()
        if not status:
            raise RuntimeError("the CLI fork server closed the connection without a status")
        self.returncode = os.waitstatus_to_exitcode(int(status))

    def __enter__(self) -> ForkedProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        self.wait()


def _text_stream(fd: int | None) -> IO[str] | None:
    return None if fd is None else open(fd, encoding=locale.getpreferredencoding(False))


def _read_all(fd: int, into: dict[int, bytes]) -> None:
    chunks = []
    with open(fd, "rb", buffering=0) as stream:
        while chunk := stream.read(65536):
            chunks.append(chunk)
    into[fd] = b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    with open(fd, "wb", buffering=0) as stream, contextlib.suppress(BrokenPipeError):
        stream.write(data)


def _text(data: bytes, errors: str) -> str:
    # As subprocess.run(text=True) decodes: the locale's encoding, universal newlines.
    encoding = locale.getpreferredencoding(False)
    return data.decode(encoding, errors).replace("\r\n", "\n").replace("\r", "\n")


# --- the server side (this file run as a script) -------------------------------------------


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    fds = array.array("i")
    header, ancillary, _flags, _address = connection.recvmsg(8, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    size = int.from_bytes(header, "big")
    if size > _MAX_REQUEST_BYTES:
        raise ValueError(f"request of {size} bytes")
    body = b""
    while len(body) < size:
        chunk = connection.recv(size - len(body))
        if not chunk:
            raise ConnectionError("request cut short")
        body += chunk
    return json.loads(body), list(fds)


def _serve(socket_path: str, control: IO[bytes]) -> dict[str, Any]:
    """Accept runs until `control` (stdin) closes; returns only in a CLI child, with its request."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(16)
    while True:
        readable, _, _ = select.select([listener, control], [], [])
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if control in readable:
            listener.close()
            os.unlink(socket_path)
            sys.exit(0)
        connection, _ = listener.accept()
        if os.fork() != 0:
            connection.close()
            continue
        # The run's supervisor: it reports the CLI child's pid and wait status.
        listener.close()
        request, fds = _receive(connection)
        pid = os.fork()
        if pid == 0:
            connection.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in set(fds):
                if fd > 2:
                    os.close(fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            # As `python -m` sets it: the working directory first on the import path.
            sys.path[0] = os.getcwd()
            sys.argv = ["-m", *request["argv"]]
            return request
        for fd in fds:
            os.close(fd)
        connection.sendall(f"{pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            connection.sendall(f"{status}\n".encode())
        os._exit(0)


if __name__ == "__main__":
    import runpy

    sys.path[0] = os.getcwd()
    import hartonomous.cli.main  # noqa: F401 (the point: imported once, before any fork)

    sys.stdout.flush()
    sys.stderr.flush()
    # Every object imported so far moves to the collector's permanent generation: a child's
    # collections and its exit then no longer walk (and write to) the server's objects, which
    # copied each page they touched from the parent (copy-on-write). Measured on the 2-core
    # machine: a forked `tenants create` 0.70 -> 0.30 s, `--version` 0.50 -> 0.19 s.
    gc.freeze()
    _serve(sys.argv[1], sys.stdin.buffer)
    runpy.run_module("hartonomous", run_name="__main__", alter_sys=True)
