"""Helpers of the data API tests: multipart bodies, waiting for a job, the spool folder."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from .conftest import bearer

TERMINAL = {"completed", "completed_with_errors", "failed", "interrupted"}
HANG_GUARD_SECONDS = 600  # a hang guard for a shared machine, not a performance claim


def multipart(parts: list[tuple[bytes, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body of ``(raw filename bytes, content)`` parts named ``files``.

    Built by hand so that a file name reaches the server exactly as given (NUL included).
    """
    return multipart_named(
        [(b'filename="' + filename + b'"', content) for filename, content in parts]
    )


def multipart_named(parts: list[tuple[bytes, bytes]]) -> tuple[bytes, dict[str, str]]:
    """As ``multipart``, each part's name given as its raw Content-Disposition parameters
    after ``name="files"`` (``filename*=UTF-8''%E6%97%A5.txt``)."""
    boundary = uuid.uuid4().hex
    body = bytearray()
    for parameters, content in parts:
        body += f"--{boundary}\r\n".encode()
        body += b'Content-Disposition: form-data; name="files"; ' + parameters + b"\r\n"
        body += b"Content-Type: application/octet-stream\r\n\r\n"
        body += content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(client: TestClient, token: str, files: list[tuple[str, bytes]]) -> dict[str, Any]:
    """POST the files; assert 202 and return the accepted body."""
    answer = client.post(
        "/v1/ingest",
        headers=bearer(token),
        files=[("files", (name, content, "application/octet-stream")) for name, content in files],
    )
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    assert answer.headers["location"] == f"/v1/jobs/{body['job_id']}"
    return body


def wait_for_job(client: TestClient, token: str, job_id: str) -> dict[str, Any]:
    """Poll the job until it is terminal; its last status."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        answer = client.get(f"/v1/jobs/{job_id}", headers=bearer(token))
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        if job["status"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.2)


def spooled(data_dir: Path) -> list[Path]:
    """Everything left under the data directory's upload spool."""
    root = data_dir / "uploads"
    return sorted(root.rglob("*")) if root.exists() else []
