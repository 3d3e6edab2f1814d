"""The ingestion page in-process: an upload (as a form without script, and as the script sends
it) becomes a job of the tenant acted for; CSRF refused before anything is ingested; a refused
upload named beside the field; the job history newest first, cursor-paginated, the tenant's
only; a job's progress (JSON) is the tenant's only."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from tests.integration.api.conftest import IssueKey
from tests.integration.api.pipeline import Source, pipeline

from hartonomous.security.roles import Role
from hartonomous.ui.pages.ingestion import HISTORY_PAGE

from .conftest import csrf_of, sign_in

__all__ = ["pipeline"]

_JOB_LINK = re.compile(r'href="/ui/jobs/([0-9a-f-]{36})"')


def _wait_terminal(client: TestClient, progress_url: str) -> dict[str, Any]:
    while True:  # the job runs in a thread of the app; the test's timeout bounds this
        job: dict[str, Any] = client.get(progress_url).json()
        if job["terminal"]:
            return job


def test_an_upload_becomes_the_tenants_job_with_each_files_outcome(
    client: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    pipeline.tenant("acme")
    sign_in(client, issue_key("acme", Role.USER))
    csrf = csrf_of(client.get("/ui/ingest").text)
    files = [
        ("files", ("notes.txt", b"Harbour notes for the ingestion page.", "text/plain")),
        ("files", ("empty.txt", b"", "text/plain")),
        # Parsers quote the file they opened (Pillow, libsndfile): the spool's path must not
        # reach the reason; the name given must.
        ("files", ("broken.png", b"\x89PNG\r\n\x1a\n not an image", "image/png")),
        ("files", ("broken.wav", b"RIFF\x00\x00\x00\x00WAVE not a sound", "audio/wav")),
    ]
    scripted = client.post(
        "/ui/ingest",
        files=files,
        headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
    )
    assert scripted.status_code == 202, scripted.text
    started = scripted.json()
    job = _wait_terminal(client, started["progress_url"])
    assert job["status"] == "completed_with_errors"
    assert (job["files_total"], job["files_done"], job["files_failed"]) == (4, 4, 3)
    outcomes = {f["path"]: (f["status"], f["error"]) for f in job["files"]}
    assert outcomes["notes.txt"] == ("ingested", None)
    assert outcomes["empty.txt"][0] == "failed"
    assert "empty file" in outcomes["empty.txt"][1]
    for broken in ("broken.png", "broken.wav"):
        status, reason = outcomes[broken]
        assert status == "failed"
        assert reason.startswith(f"{broken}: ")
        assert "uploads" not in reason, reason  # no spool path
        assert "/" not in reason, reason
    assert (
        pipeline.scalar(
            f"SELECT principal_id FROM ingestion_jobs WHERE job_id = '{started['job_id']}'"
        )
        == "user-of-acme"
    )
    # Without a script the form posts with its CSRF field and is sent to the job's page.
    posted = client.post(
        "/ui/ingest",
        data={"csrf_token": csrf},
        files=[("files", ("more.txt", b"More harbour notes.", "text/plain"))],
        follow_redirects=False,
    )
    assert posted.status_code == 303
    assert posted.headers["location"].startswith("/ui/jobs/")
    history = client.get("/ui/ingest").text
    listed = _JOB_LINK.findall(history)
    assert listed[:2] == [posted.headers["location"].rsplit("/", 1)[1], started["job_id"]]


def test_an_upload_without_the_csrf_token_or_a_file_is_refused_and_ingests_nothing(
    client: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    pipeline.tenant("acme")
    sign_in(client, issue_key("acme", Role.USER))
    csrf = csrf_of(client.get("/ui/ingest").text)
    one = [("files", ("a.txt", b"some text", "text/plain"))]
    for headers, data in (
        ({"X-CSRF-Token": "forged", "Accept": "application/json"}, None),
        ({}, {"csrf_token": "forged"}),
        ({}, None),
    ):
        answer = client.post("/ui/ingest", files=one, data=data, headers=headers)
        assert answer.status_code == 403, answer.text
        assert "CSRF" in answer.text
    # No file: named beside the file field, as JSON to the script and on the page without.
    empty_form = {"csrf_token": csrf}
    page = client.post("/ui/ingest", data=empty_form, files={"other": ("x", b"")})
    assert page.status_code == 400
    assert re.search(r'id="files-error" role="alert">[^<]*unexpected form field', page.text)
    unchosen = client.post("/ui/ingest", data=empty_form, files={"files": ("", b"")})
    assert unchosen.status_code == 400  # a file input left empty, as a browser sends it
    assert "choose files or a folder: no file was chosen" in unchosen.text
    # A name given but refused is named, alone or beside a good file.
    for parts in (
        [("files", ("../../evil.txt", b"x", "text/plain"))],
        [*one, ("files", ("../../evil.txt", b"x", "text/plain"))],
    ):
        named = client.post("/ui/ingest", data=empty_form, files=parts)
        assert named.status_code == 400
        assert "file name &#39;../../evil.txt&#39; holds a path separator" in named.text
        assert "no file was chosen" not in named.text
    # Not multipart and no token in a header: the CSRF refusal comes first, as on every form.
    plain = client.post("/ui/ingest", content=b"not multipart")
    assert plain.status_code == 403
    assert "CSRF" in plain.text
    scripted = client.post(
        "/ui/ingest",
        content=b"not multipart",
        headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
    )
    assert scripted.status_code == 400
    assert "multipart/form-data" in scripted.json()["error"]
    assert pipeline.scalar("SELECT count(*) FROM ingestion_jobs") == 0


def test_the_job_history_is_newest_first_paginated_and_the_tenants_only(
    client: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    pipeline.tenant("acme")
    pipeline.tenant("globex")
    # One more than a page, all created in one transaction (equal times: the id breaks ties).
    pipeline.conn.execute(
        "INSERT INTO ingestion_jobs (tenant_id, principal_id) "
        f"SELECT 'acme', 'p' FROM generate_series(1, {HISTORY_PAGE + 1})"
    )
    pipeline.conn.execute(
        "INSERT INTO ingestion_jobs (tenant_id, principal_id, created_at) "
        "VALUES ('acme', 'p', now() + interval '1 minute')"
    )
    theirs = pipeline.scalar(
        "INSERT INTO ingestion_jobs (tenant_id, principal_id) VALUES ('globex', 'q') "
        "RETURNING job_id"
    )
    newest = pipeline.scalar("SELECT job_id FROM ingestion_jobs ORDER BY created_at DESC LIMIT 1")
    sign_in(client, issue_key("acme", Role.USER))
    first = client.get("/ui/ingest").text
    shown = _JOB_LINK.findall(first)
    assert len(shown) == HISTORY_PAGE
    assert shown[0] == str(newest)
    cursor = re.search(r'href="/ui/ingest\?cursor=([^"]+)"', first)
    assert cursor, "a next page link"
    second = client.get(f"/ui/ingest?cursor={cursor.group(1)}").text
    rest = _JOB_LINK.findall(second)
    assert len(rest) == 2
    everyone = set(shown) | set(rest)
    rows = pipeline.conn.execute("SELECT job_id FROM ingestion_jobs WHERE tenant_id = 'acme'")
    mine = {str(job_id) for (job_id,) in rows.fetchall()}
    assert everyone == mine
    assert str(theirs) not in everyone
    assert "Older jobs" not in second
    # A job of another tenant: its progress is a 404; a cursor from elsewhere a 400.
    assert client.get(f"/ui/jobs/{theirs}/progress").status_code == 404
    assert client.get("/ui/ingest?cursor=forged.cursor").status_code == 400
    assert client.get("/ui/ingest?cursor=").status_code == 400  # empty: refused, not page 1
