"""`/v1/atoms` (metadata, streamed content, ETag, Range) and `/v1/holdings` (pages, delete)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hartonomous.security.roles import Role
from hartonomous.services import Platform

from .conftest import IssueKey, bearer
from .data_api_support import upload, wait_for_job

# Large enough to be a composite of many chunks, so ranges cross leaf boundaries.
CONTENT = np.random.default_rng(42).bytes(600_000)


@pytest.fixture
def platform(platform: Platform, tmp_path: Path) -> Platform:
    """The API tests' platform, spooling uploads under this test's folder."""
    settings = platform.settings.model_copy(update={"data_dir": tmp_path})
    return dataclasses.replace(platform, settings=settings)


def _ingest(api: TestClient, token: str, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    job = wait_for_job(api, token, upload(api, token, files)["job_id"])
    assert job["status"] == "completed", job
    files_done: list[dict[str, Any]] = job["files"]
    return files_done


@pytest.fixture
def blob(api: TestClient, issue_key: IssueKey) -> tuple[str, str]:
    """(token of acme, atom id of CONTENT held by acme)."""
    token = issue_key("acme")
    (file,) = _ingest(api, token, [("blob.bin", CONTENT)])
    return token, file["atom_id"]


def test_atom_metadata_names_its_holdings(api: TestClient, blob: tuple[str, str]) -> None:
    token, atom_id = blob
    answer = api.get(f"/v1/atoms/{atom_id}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    atom = answer.json()
    assert atom["atom_id"] == atom_id
    assert atom["kind"] == "composite"
    assert atom["size_bytes"] == len(CONTENT)
    assert atom["children"]["runs"] > 1
    assert [holder["source_uri"] for holder in atom["holders"]] == ["blob.bin"]


def test_content_streams_the_exact_bytes_with_a_strong_etag(
    api: TestClient, blob: tuple[str, str]
) -> None:
    token, atom_id = blob
    answer = api.get(f"/v1/atoms/{atom_id}/content", headers=bearer(token))
    assert answer.status_code == 200
    assert answer.content == CONTENT
    assert answer.headers["etag"] == f'"{atom_id}"'
    assert answer.headers["accept-ranges"] == "bytes"
    assert int(answer.headers["content-length"]) == len(CONTENT)
    for tag in (f'"{atom_id}"', f'W/"{atom_id}"', f'"other", "{atom_id}"', "*"):
        again = api.get(
            f"/v1/atoms/{atom_id}/content", headers={**bearer(token), "If-None-Match": tag}
        )
        assert again.status_code == 304, tag
        assert again.content == b""
        assert again.headers["etag"] == f'"{atom_id}"'
    other = api.get(
        f"/v1/atoms/{atom_id}/content", headers={**bearer(token), "If-None-Match": '"other"'}
    )
    assert other.status_code == 200


def test_head_answers_what_get_would_without_the_body(
    api: TestClient, blob: tuple[str, str]
) -> None:
    """RFC 9110 §9.3.2 on several GET routes: the same status and headers, no body."""
    token, atom_id = blob
    content = f"/v1/atoms/{atom_id}/content"
    own = bearer(token)
    for path, headers in (
        ("/health/live", {}),
        ("/health/ready", {}),
        ("/openapi.json", {}),
        ("/v1/holdings?limit=1", own),
        (f"/v1/atoms/{atom_id}", own),
        (content, own),
        (content, {**own, "Range": "bytes=100-199"}),
        (content, {**own, "Range": "bytes=-25"}),
        (content, {**own, "Range": "bytes=700000-"}),  # 416
        (content, {**own, "If-None-Match": f'"{atom_id}"'}),  # 304
        (f"/v1/atoms/{'0' * 64}", own),  # 404
        ("/v1/holdings", {}),  # 401
    ):
        got = api.get(path, headers=headers)
        head = api.head(path, headers=headers)
        assert head.status_code == got.status_code, (path, headers)
        assert head.content == b"", path
        for name in ("content-type", "content-length", "content-range", "etag", "www-authenticate"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
    assert (
        api.head(content, headers={**own, "Range": "bytes=100-199"}).headers["content-length"]
        == "100"
    )
    # HEAD is taken where GET is, and named in Allow; where GET is not, neither is HEAD.
    assert api.head("/v1/search", headers=own).status_code == 405
    assert api.put("/v1/holdings", headers=own).headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=100-299999", 100, 300_000),  # crosses chunk boundaries
        ("bytes=599990-", 599_990, 600_000),
        ("bytes=-25", 600_000 - 25, 600_000),
        ("bytes=500000-9999999", 500_000, 600_000),  # the end is clamped
        ("bytes=-9999999", 0, 600_000),
    ],
)
def test_a_byte_range_is_206_with_its_content_range(
    api: TestClient, blob: tuple[str, str], header: str, start: int, stop: int
) -> None:
    token, atom_id = blob
    answer = api.get(f"/v1/atoms/{atom_id}/content", headers={**bearer(token), "Range": header})
    assert answer.status_code == 206, answer.text
    assert answer.content == CONTENT[start:stop]
    assert answer.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(CONTENT)}"
    assert int(answer.headers["content-length"]) == stop - start


def test_unsatisfiable_ranges_are_416_and_others_ignored(
    api: TestClient, blob: tuple[str, str]
) -> None:
    token, atom_id = blob
    url = f"/v1/atoms/{atom_id}/content"
    for header in ("bytes=600000-", "bytes=700000-800000", "bytes=-0"):
        answer = api.get(url, headers={**bearer(token), "Range": header})
        assert answer.status_code == 416, header
        assert answer.headers["content-range"] == f"bytes */{len(CONTENT)}"
        assert answer.json()["code"] == "range-not-satisfiable"
    # Not one well-formed byte range, or an If-Range for another version: the whole content.
    for headers in (
        {"Range": "bytes=5-1"},
        {"Range": "bytes=0-1,5-6"},
        {"Range": "items=0-1"},
        {"Range": "bytes=0-1", "If-Range": '"another"'},
    ):
        answer = api.get(url, headers={**bearer(token), **headers})
        assert answer.status_code == 200, headers
        assert answer.content == CONTENT
    same = {"Range": "bytes=0-1", "If-Range": f'"{atom_id}"'}
    answer = api.get(url, headers={**bearer(token), **same})
    assert answer.status_code == 206


def test_another_tenants_atom_and_holdings_are_404_and_invisible(
    api: TestClient, blob: tuple[str, str], issue_key: IssueKey
) -> None:
    token, atom_id = blob
    theirs = issue_key("globex")
    for path in (f"/v1/atoms/{atom_id}", f"/v1/atoms/{atom_id}/content"):
        answer = api.get(path, headers=bearer(theirs))
        assert answer.status_code == 404, path
        assert answer.json()["code"] == "not-found"
        assert "acme" not in answer.text
    assert api.get("/v1/holdings", headers=bearer(theirs)).json() == {
        "items": [],
        "next_cursor": None,
    }
    (holding,) = api.get("/v1/holdings", headers=bearer(token)).json()["items"]
    answer = api.delete(f"/v1/holdings/{holding['holding_id']}", headers=bearer(theirs))
    assert answer.status_code == 404
    assert api.get(f"/v1/atoms/{atom_id}", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("bad", ["xyz", "00" * 31, "g" * 64, "00" * 33])
def test_a_malformed_id_in_a_path_is_the_same_422_naming_the_parameter(
    api: TestClient, issue_key: IssueKey, bad: str
) -> None:
    """Atoms and models answer a malformed id alike (they were 400 and 422). Dead-letter ids
    are numbers in the route itself (so `/replay` is never an id): 404, tested with them."""
    token = issue_key(role=Role.DATA_SCIENTIST)
    paths = {
        f"/v1/atoms/{bad}": "atom_id",
        f"/v1/atoms/{bad}/content": "atom_id",
        f"/v1/models/{bad}": "model_id",
        f"/v1/models/{bad}/tensors": "model_id",
    }
    for path, parameter in paths.items():
        answer = api.get(path, headers=bearer(token))
        assert answer.status_code == 422, path
        problem = answer.json()
        assert problem["code"] == "invalid-request"
        assert [error["field"] for error in problem["errors"]] == [f"path.{parameter}"], path


def test_holdings_page_newest_first_across_pages_and_delete(
    api: TestClient, issue_key: IssueKey
) -> None:
    token = issue_key()
    names = [f"h{i}.bin" for i in range(7)]
    for name in names:  # one job each: distinct creation times, newest last
        _ingest(api, token, [(name, name.encode() * 10)])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        answer = api.get("/v1/holdings", headers=bearer(token), params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages += 1
        assert len(page["items"]) <= 3
        seen += [item["source_uri"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == names[::-1]
    listing = api.get("/v1/holdings", headers=bearer(token), params={"limit": 500}).json()
    victim = listing["items"][0]
    answer = api.delete(f"/v1/holdings/{victim['holding_id']}", headers=bearer(token))
    assert answer.status_code == 204
    again = api.delete(f"/v1/holdings/{victim['holding_id']}", headers=bearer(token))
    assert again.status_code == 404
    left = api.get("/v1/holdings", headers=bearer(token), params={"limit": 500}).json()["items"]
    assert [item["source_uri"] for item in left] == names[-2::-1]


def test_a_tampered_or_foreign_cursor_is_400(api: TestClient, issue_key: IssueKey) -> None:
    token, other = issue_key("acme"), issue_key("globex")
    for name in ("a.bin", "b.bin"):
        _ingest(api, token, [(name, name.encode())])
        _ingest(api, other, [(name, name.encode())])
    cursor = api.get("/v1/holdings", headers=bearer(token), params={"limit": 1}).json()[
        "next_cursor"
    ]
    assert cursor
    flipped = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
    for tampered in (flipped, cursor + "x", "not-a-cursor", cursor.split(".")[0]):
        answer = api.get("/v1/holdings", headers=bearer(token), params={"cursor": tampered})
        assert answer.status_code == 400, tampered
        assert answer.json()["code"] == "invalid-cursor"
    # Issued to acme: another tenant cannot page with it.
    answer = api.get("/v1/holdings", headers=bearer(other), params={"cursor": cursor})
    assert answer.status_code == 400
    for limit in (0, 501):
        answer = api.get("/v1/holdings", headers=bearer(token), params={"limit": limit})
        assert answer.status_code == 422
