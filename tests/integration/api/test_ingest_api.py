"""`POST /v1/ingest`, `GET /v1/jobs/{id}` and its event stream, over a real database."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from hartonomous.api import create_app
from hartonomous.config.sections import ServerSettings
from hartonomous.db.tables import holdings, ingestion_jobs
from hartonomous.ingest.uploads import UploadSpool
from hartonomous.services import Platform

from .conftest import IssueKey, bearer
from .data_api_support import multipart, multipart_named, spooled, upload, wait_for_job

LIMIT = 256 * 1024


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def platform(platform: Platform, spool_dir: Path) -> Platform:
    """The API tests' platform, spooling under this test's folder with a small upload limit."""
    settings = platform.settings.model_copy(
        update={"data_dir": spool_dir, "server": ServerSettings(max_upload_bytes=LIMIT)}
    )
    return dataclasses.replace(platform, settings=settings)


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_one_request_of_100_files_becomes_one_job_with_an_outcome_per_file(
    api: TestClient, issue_key: IssueKey, engine: Engine, spool_dir: Path
) -> None:
    token = issue_key()
    files = [(f"note-{i:03d}.bin", np.random.default_rng(i).bytes(200 + i)) for i in range(100)]
    accepted = upload(api, token, files)
    assert accepted["files"] == 100
    job = wait_for_job(api, token, accepted["job_id"])
    assert job["status"] == "completed", job
    assert job["progress"] == {"files_total": 100, "files_done": 100, "files_failed": 0}
    assert [file["path"] for file in job["files"]] == [name for name, _ in files]
    assert {file["status"] for file in job["files"]} == {"ingested"}
    assert job["principal_id"] == "user-of-acme"
    # Each file is held under the name its sender gave, not its spool path.
    with engine.connect() as connection:
        sources = set(
            connection.execute(
                select(holdings.c.source_uri).where(holdings.c.tenant_id == "acme")
            ).scalars()
        )
    assert sources == {name for name, _ in files}
    assert spooled(spool_dir) == []
    # The bytes come back exactly.
    first = job["files"][7]
    content = api.get(f"/v1/atoms/{first['atom_id']}/content", headers=bearer(token))
    assert content.content == files[7][1]


def test_two_files_of_one_name_in_one_upload_are_both_ingested(
    api: TestClient, issue_key: IssueKey
) -> None:
    token = issue_key()
    job = wait_for_job(
        api, token, upload(api, token, [("same.bin", b"one"), ("same.bin", b"two")])["job_id"]
    )
    assert [(file["path"], file["status"]) for file in job["files"]] == [
        ("same.bin", "ingested"),
        ("same.bin", "ingested"),
    ]


def test_an_upload_over_the_limit_is_413_naming_it_and_leaves_nothing(
    api: TestClient, issue_key: IssueKey, engine: Engine, spool_dir: Path
) -> None:
    token = issue_key()
    big = np.random.default_rng(1).bytes(LIMIT + 1)
    for files in ([("big.bin", big)], [("small.bin", b"fits"), ("big.bin", big)]):
        answer = api.post("/v1/ingest", headers=bearer(token), files=[("files", f) for f in files])
        assert answer.status_code == 413, answer.text
        problem = answer.json()
        assert problem["code"] == "payload-too-large"
        assert str(LIMIT) in problem["detail"]
        assert "max_upload_bytes" in problem["detail"]
    # Without a Content-Length the limit holds on what arrives.
    body, headers = multipart([(b"big.bin", big)])
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    answer = api.post("/v1/ingest", headers={**bearer(token), **headers}, content=chunks)
    assert answer.status_code == 413
    assert spooled(spool_dir) == []
    assert _count(engine, ingestion_jobs) == 0


@pytest.mark.parametrize(
    ("filename", "named"),
    [
        (b"..", "'..'"),
        (b"../etc/passwd", "path separator"),
        (b"a..b", "'..'"),
        (b"dir/file.txt", "path separator"),
        (b"bad\x00name", "NUL"),
        (b"", "empty"),
        ("invoice\u202etxt.exe".encode(), "U+202E"),
        ("a\u200bb.txt".encode(), "U+200B"),
    ],
)
def test_a_bad_file_name_is_400_naming_it_and_nothing_is_written(  # noqa: PLR0917
    api: TestClient,
    issue_key: IssueKey,
    engine: Engine,
    spool_dir: Path,
    filename: bytes,
    named: str,
) -> None:
    token = issue_key()
    # The good file first: it is spooled, then removed with the rest when the bad one comes.
    body, headers = multipart([(b"good.txt", b"fine"), (filename, b"payload")])
    answer = api.post("/v1/ingest", headers={**bearer(token), **headers}, content=body)
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["code"] == "invalid-file-name"
    assert named in problem["detail"]
    assert spooled(spool_dir) == []
    assert _count(engine, ingestion_jobs) == 0
    assert _count(engine, holdings) == 0


def test_a_filename_star_names_the_holding_and_wins_over_filename(
    api: TestClient, issue_key: IssueKey, engine: Engine, spool_dir: Path
) -> None:
    """RFC 7578 forbids `filename*` in form data, but clients send it for names outside ASCII;
    RFC 6266 and RFC 8187 define it, and it wins over `filename`."""
    token = issue_key()
    body, headers = multipart_named(
        [
            (b"filename*=UTF-8''%E6%97%A5%E8%A8%98.txt", b"a diary"),
            (b"filename=\"fallback.txt\"; filename*=utf-8'fr'caf%C3%A9%20cr%C3%A8me.md", b"x"),
            (b"filename*=ISO-8859-1''na%EFve.txt", b"latin"),
        ]
    )
    answer = api.post("/v1/ingest", headers={**bearer(token), **headers}, content=body)
    assert answer.status_code == 202, answer.text
    job = wait_for_job(api, token, answer.json()["job_id"])
    names = ["\u65e5\u8a18.txt", "caf\u00e9 cr\u00e8me.md", "na\u00efve.txt"]
    assert [file["path"] for file in job["files"]] == names
    with engine.connect() as connection:
        sources = set(connection.execute(select(holdings.c.source_uri)).scalars())
    assert sources == set(names)
    assert spooled(spool_dir) == []


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        (b"filename*=UTF-8''a%00b.txt", "NUL"),
        (b"filename*=UTF-8''%2E%2E", "'..'"),
        (b"filename*=UTF-8''..%2Fetc%2Fpasswd", "path separator"),
        (b"filename*=UTF-8''a%5Cb", "path separator"),
        (b"filename*=UTF-8''%FF%FE.txt", "not valid UTF-8"),
        (b"filename*=UTF-8''esc%1B%5B2J", "control character"),
        (b"filename*=UTF-8''invoice%E2%80%AEtxt.exe", "U+202E"),
        (b"filename=\"safe.txt\"; filename*=UTF-8''%2E%2E%2Fx", "path separator"),
        (b"filename*=KOI8-R''%C1", "RFC 8187"),
        (b"filename*=%E6%97%A5.txt", "RFC 8187"),
    ],
)
def test_a_hostile_filename_star_is_refused_as_a_plain_name_is(  # noqa: PLR0917
    api: TestClient,
    issue_key: IssueKey,
    engine: Engine,
    spool_dir: Path,
    parameters: bytes,
    named: str,
) -> None:
    token = issue_key()
    body, headers = multipart_named([(b'filename="good.txt"', b"fine"), (parameters, b"payload")])
    answer = api.post("/v1/ingest", headers={**bearer(token), **headers}, content=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid-file-name"
    assert named in answer.json()["detail"]
    assert spooled(spool_dir) == []
    assert _count(engine, ingestion_jobs) == 0


def test_a_body_that_is_not_files_is_a_problem_not_a_job(
    api: TestClient, issue_key: IssueKey, engine: Engine, spool_dir: Path
) -> None:
    token = issue_key()
    for headers, content in (
        ({"Content-Type": "application/json"}, b"{}"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x\r\nnot a part"),
        ({"Content-Type": f"multipart/form-data; boundary={'b' * 300}"}, b"--"),
        (multipart([])[1], multipart([])[0]),
    ):
        answer = api.post("/v1/ingest", headers={**bearer(token), **headers}, content=content)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    answer = api.post(
        "/v1/ingest", headers=bearer(token), data={"note": "x"}, files=[("files", ("a", b"a"))]
    )
    assert answer.status_code == 400
    assert "'note'" in answer.json()["detail"]
    assert spooled(spool_dir) == []
    assert _count(engine, ingestion_jobs) == 0


def test_public_visibility_needs_admin(api: TestClient, issue_key: IssueKey) -> None:
    answer = api.post(
        "/v1/ingest?visibility=public",
        headers=bearer(issue_key()),
        files=[("files", ("a.bin", b"a"))],
    )
    assert answer.status_code == 403


def test_another_tenants_job_is_404(api: TestClient, issue_key: IssueKey) -> None:
    mine, theirs = issue_key("acme"), issue_key("globex")
    job_id = upload(api, mine, [("a.bin", b"abc")])["job_id"]
    wait_for_job(api, mine, job_id)
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events"):
        answer = api.get(path, headers=bearer(theirs))
        assert answer.status_code == 404, path
        assert answer.json()["code"] == "not-found"
    assert api.get("/v1/jobs/not-a-uuid", headers=bearer(mine)).status_code == 422


def test_the_event_stream_reports_each_file_and_ends_when_the_job_is_done(
    api: TestClient, issue_key: IssueKey
) -> None:
    token = issue_key()
    files = [(f"f{i}.bin", np.random.default_rng(i).bytes(300)) for i in range(5)]
    job_id = upload(api, token, files)["job_id"]
    with api.stream("GET", f"/v1/jobs/{job_id}/events", headers=bearer(token)) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = list(_events(answer.iter_lines()))
    names = [name for name, _ in events]
    assert names[-1] == "done"
    assert names.count("done") == 1
    assert sorted(data["path"] for name, data in events if name == "file") == [
        name for name, _ in files
    ]
    progress = [data for name, data in events if name == "progress"]
    assert progress[-1] == {"files_total": 5, "files_done": 5, "files_failed": 0}
    assert [p["files_done"] for p in progress] == sorted({p["files_done"] for p in progress})
    assert events[-1][1]["status"] == "completed"
    assert len(events[-1][1]["files"]) == 5


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, object]]]:
    name, data = "message", ""
    for line in lines:
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data = line.removeprefix("data:").strip()
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""


def test_stale_spools_are_removed_when_the_api_starts_and_live_ones_kept(
    platform: Platform, spool_dir: Path
) -> None:
    dead = UploadSpool(spool_dir)
    (dead.new_file("left.bin")).write_bytes(b"behind")
    live = UploadSpool(spool_dir)
    live.new_file("busy.bin").write_bytes(b"in flight")
    # A process that died released its lock: close ours without deleting, as a crash would.
    dead_lock = dead._lock
    assert dead_lock is not None
    os.close(dead_lock)
    dead._lock = None
    create_app(platform)
    assert not dead.directory.exists()
    assert (live.directory / "000000" / "busy.bin").read_bytes() == b"in flight"
    live.remove()
    assert spooled(spool_dir) == []


def test_an_unknown_or_malformed_dedup_policy_is_refused_before_any_job(
    api: TestClient, issue_key: IssueKey, engine: Engine, spool_dir: Path
) -> None:
    token = issue_key()
    # NUL in a query parameter is refused before routing (400, api/middleware.py).
    for policy, status in (("no-such-policy", 400), ("bad\x00policy", 400), ("", 422)):
        answer = api.post(
            "/v1/ingest",
            params={"dedup_policy": policy},
            headers=bearer(token),
            files=[("files", ("a.bin", b"a"))],
        )
        assert answer.status_code == status, policy
        assert answer.headers["content-type"] == "application/problem+json"
        if policy == "no-such-policy":
            assert "no-such-policy" in answer.json()["detail"]
    assert spooled(spool_dir) == []
    assert _count(engine, ingestion_jobs) == 0
