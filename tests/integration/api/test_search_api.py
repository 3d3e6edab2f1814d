"""POST /v1/search and /v1/search/by-example: the service's answers over HTTP, for the caller's
tenant only; bad input is a problem naming the field, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine
from tests.integration.data_plane.data_plane_support import ingest, write_docx
from tests.integration.search.search_support import sentences, write_corpus

from hartonomous.config import Settings
from hartonomous.db import head_revision
from hartonomous.services import Platform
from hartonomous.services import search as search_service

from .conftest import IssueKey, bearer
from .problem_checks import fields as _fields
from .problem_checks import problem as _problem

ACME_ONLY = "Acme's quarterly forecast predicts strong growth in anvil sales."
GLOBEX_ONLY = "Globex will relocate its headquarters to a volcano island."
REPORT = [
    "The annual report describes the anvil factory's safety record.",
    "Rockets and roller skates remain the company's best sellers.",
]


@pytest.fixture
def platform(engine: Engine, tmp_path: Path) -> Platform:
    """The conftest's platform, with a data directory of its own (uploads land there)."""
    settings = Settings(data_dir=tmp_path / "data")
    return Platform(engine=engine, settings=settings, migrations_head=head_revision())


def _uploads_left(platform: Platform) -> list[Path]:
    folder = platform.settings.data_dir / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


def _jsonable(result: search_service.SearchResult) -> Any:
    return json.loads(json.dumps(asdict(result)))


@pytest.fixture
def corpus(engine: Engine, issue_key: IssueKey, tmp_path: Path) -> dict[str, str]:
    """acme: 30 sentences as text files plus a Word document; globex: 30 others. Keys."""
    keys = {"acme": issue_key("acme"), "globex": issue_key("globex")}
    texts = sentences()
    ingest(engine, "acme", *write_corpus(tmp_path / "acme", [*texts[:30], ACME_ONLY]))
    ingest(engine, "acme", write_docx(tmp_path / "report.docx", REPORT))
    ingest(engine, "globex", *write_corpus(tmp_path / "globex", [*texts[30:60], GLOBEX_ONLY]))
    return keys


def test_every_mode_and_filter_answers_as_the_service_does(
    api: TestClient, platform: Platform, corpus: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    later, earlier = (now + timedelta(hours=1)).isoformat(), (now - timedelta(hours=1)).isoformat()
    filter_cases: list[dict[str, str]] = [
        {},
        {"modality": "document"},
        {"modality": "text"},
        {"source_type": "file"},
        {"source_type": "sample"},
        {"since": later},
        {"until": later},
        {"since": earlier, "until": later},
        {"modality": "document", "since": earlier},
    ]
    seen: dict[str, set[int]] = {}
    for mode in search_service.SEARCH_MODES:
        for filters in filter_cases:
            body = {"query": "anvil", "k": 5, "mode": mode, "filters": filters}
            answer = api.post("/v1/search", json=body, headers=bearer(corpus["acme"]))
            assert answer.status_code == 200, answer.text
            expected = search_service.search(
                platform,
                "acme",
                search_service.Query(text=body["query"]),
                5,
                mode=mode,
                filters=search_service.search_filters(
                    source_modality=filters.get("modality"),
                    source_type=filters.get("source_type"),
                    held_since=datetime.fromisoformat(filters["since"])
                    if "since" in filters
                    else None,
                    held_until=datetime.fromisoformat(filters["until"])
                    if "until" in filters
                    else None,
                ),
            )
            assert answer.json() == _jsonable(expected), (mode, filters)
            hits = answer.json()["hits"]
            seen.setdefault(json.dumps(filters), set()).add(len(hits))
            if "modality" in filters:
                assert {hit["modality"] for hit in hits} <= {filters["modality"]}
            assert answer.json()["mode"] == mode
    # The filters really filter: the document alone, nothing held in the future, no samples.
    assert seen[json.dumps({"modality": "document"})] - {0}
    assert seen[json.dumps({"since": later})] == {0}
    assert seen[json.dumps({"source_type": "sample"})] == {0}
    assert 0 not in seen[json.dumps({})]


def test_another_tenant_never_sees_acmes_atoms(
    api: TestClient, platform: Platform, corpus: dict[str, str]
) -> None:
    acme_hits = api.post(
        "/v1/search",
        json={"query": ACME_ONLY, "k": 100, "mode": "lexical"},
        headers=bearer(corpus["acme"]),
    ).json()["hits"]
    acme_atoms = {hit["atom_id"] for hit in acme_hits}
    assert acme_hits[0]["text"].strip() == ACME_ONLY
    for mode in search_service.SEARCH_MODES:
        for query in (ACME_ONLY, REPORT[0], sentences()[3]):
            answer = api.post(
                "/v1/search",
                json={"query": query, "k": 100, "mode": mode},
                headers=bearer(corpus["globex"]),
            )
            assert answer.status_code == 200
            found = {hit["atom_id"] for hit in answer.json()["hits"]}
            assert not found & acme_atoms, (mode, query)
            assert all(ACME_ONLY not in (hit["text"] or "") for hit in answer.json()["hits"])
    globex = api.post(
        "/v1/search", json={"query": GLOBEX_ONLY, "k": 1}, headers=bearer(corpus["globex"])
    )
    assert globex.json()["hits"][0]["text"].strip() == GLOBEX_ONLY


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": ""}, "body.query"),
        ({"query": "   "}, "body.query"),
        ({"query": "x" * (search_service.MAX_QUERY_CHARACTERS + 1)}, "body.query"),
        ({"query": 42}, "body.query"),
        ({}, "body.query"),
        ({"query": "anvil", "k": 0}, "body.k"),
        ({"query": "anvil", "k": search_service.MAX_K + 1}, "body.k"),
        ({"query": "anvil", "k": 10**30}, "body.k"),
        ({"query": "anvil", "k": "ten"}, "body.k"),
        ({"query": "anvil", "k": 2.5}, "body.k"),
        ({"query": "anvil", "k": True}, "body.k"),
        ({"query": "anvil", "mode": "fuzzy"}, "body.mode"),
        ({"query": "anvil", "filters": {"colour": "red"}}, "body.filters.colour"),
        ({"query": "anvil", "filters": {"modality": "pictures"}}, "body.filters.modality"),
        ({"query": "anvil", "filters": {"source_type": 3}}, "body.filters.source_type"),
        ({"query": "anvil", "filters": {"since": "yesterday"}}, "body.filters.since"),
        ({"query": "anvil", "filters": []}, "body.filters"),
        # RFC 3339 with an offset only: a bare date is not a date-time.
        ({"query": "anvil", "filters": {"since": "2026-02-01"}}, "body.filters.since"),
        ({"query": "anvil", "tenant": "globex"}, "body.tenant"),
        (["anvil"], "body"),
    ],
)
def test_bad_search_input_is_a_problem_naming_the_field(
    api: TestClient, issue_key: IssueKey, body: Any, field: str
) -> None:
    answer = api.post("/v1/search", json=body, headers=bearer(issue_key()))
    problem = _problem(answer, 422)
    assert field in _fields(problem), problem
    assert field in problem["detail"]


def test_since_after_until_is_a_400_naming_them(api: TestClient, issue_key: IssueKey) -> None:
    # Each member is valid on its own: the rule across them is a 400, not a schema error.
    filters = {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    answer = api.post(
        "/v1/search", json={"query": "anvil", "filters": filters}, headers=bearer(issue_key())
    )
    problem = _problem(answer, 400)
    assert "since must be earlier than until" in problem["detail"]


@pytest.mark.parametrize("escaped", [r"an\u0000vil", r"an\ud800vil", r"\udcff"])
def test_a_query_postgresql_cannot_hold_is_a_problem_not_a_500(
    api: TestClient, issue_key: IssueKey, escaped: str
) -> None:
    headers = {**bearer(issue_key()), "content-type": "application/json"}
    for mode in search_service.SEARCH_MODES:
        body = f'{{"query": "{escaped}", "mode": "{mode}"}}'.encode()
        answer = api.post("/v1/search", content=body, headers=headers)
        # NUL is refused for every JSON body before routing (400, api/middleware.py); a lone
        # surrogate by the route's validation (422). Both name the query field.
        problem = _problem(answer, 400 if "u0000" in escaped else 422)
        assert _fields(problem) == ["body.query"]
    # In-process (the CLI meets lone surrogates as undecodable argv bytes), the service's refusal.
    text = json.loads(f'"{escaped}"')
    with pytest.raises(search_service.SearchError, match="not searchable text"):
        search_service.check_search(search_service.Query(text=text), 10, "hybrid", None)


def test_malformed_json_and_an_unseeable_query_are_problems(
    api: TestClient, issue_key: IssueKey
) -> None:
    headers = {**bearer(issue_key()), "content-type": "application/json"}
    problem = _problem(api.post("/v1/search", content=b'{"query": "an', headers=headers), 422)
    assert problem["errors"][0]["type"] == "json_invalid"
    assert problem["errors"][0]["field"].startswith("body")
    # Valid JSON the model cannot see: the service's own refusal, as a 400 problem.
    answer = api.post(
        "/v1/search", json={"query": "🙂🙂", "mode": "semantic"}, headers=bearer(issue_key())
    )
    assert "no meaning to search for" in _problem(answer, 400)["detail"]


def _image(path: Path, seed: int, side: int = 120) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    Image.fromarray(base).resize((side, side), Image.Resampling.BICUBIC).save(path)
    return path


def test_search_by_an_uploaded_example(
    api: TestClient, platform: Platform, engine: Engine, issue_key: IssueKey, tmp_path: Path
) -> None:
    acme, globex = issue_key("acme"), issue_key("globex")
    images = [_image(tmp_path / f"image-{seed}.png", seed) for seed in range(5)]
    ingest(engine, "acme", *images)
    probe = tmp_path / "probe.jpg"
    Image.open(images[3]).resize((90, 90)).save(probe, quality=85)
    files = {"file": ("probe.jpg", probe.read_bytes(), "image/jpeg")}

    answer = api.post("/v1/search/by-example", files=files, data={"k": "3"}, headers=bearer(acme))
    assert answer.status_code == 200, answer.text
    hits = answer.json()["hits"]
    assert hits[0]["source"].endswith("image-3.png")
    expected = search_service.search(
        platform, "acme", search_service.Query(like=search_service.example_from_file(probe)), 3
    )
    assert answer.json() == _jsonable(expected)
    # With a filter: images are not documents.
    none = api.post(
        "/v1/search/by-example",
        files=files,
        data={"k": "3", "modality": "document"},
        headers=bearer(acme),
    )
    assert none.status_code == 200
    assert none.json()["hits"] == []
    # Another tenant searching by acme's own image finds none of acme's images.
    other = api.post("/v1/search/by-example", files=files, headers=bearer(globex))
    assert other.status_code == 200
    assert other.json()["hits"] == []
    assert _uploads_left(platform) == []


BOUNDARY = "example-boundary-7d41"


def _multipart(name: str, *content: bytes) -> Iterator[bytes]:
    """A multipart body with one file part, written by hand (and sent in these pieces)."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{name}"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    yield from content
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _zeros(size: int) -> Iterator[bytes]:
    chunk = b"\0" * 65536
    for _ in range(size // len(chunk)):
        yield chunk
    yield b"\0" * (size % len(chunk))


def test_bad_examples_are_problems_and_leave_no_upload_behind(
    api: TestClient, platform: Platform, issue_key: IssueKey, tmp_path: Path
) -> None:
    headers = bearer(issue_key())
    multipart = {**headers, "content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    png = _image(tmp_path / "a.png", 1).read_bytes()

    text = api.post(
        "/v1/search/by-example",
        files={"file": ("note.txt", b"hello there\n", "text/plain")},
        headers=headers,
    )
    assert "note.txt is text" in _problem(text, 400)["detail"]
    empty = api.post(
        "/v1/search/by-example", files={"file": ("void.png", b"", "image/png")}, headers=headers
    )
    assert "void.png: empty file" in _problem(empty, 400)["detail"]
    # One example is taken: the refusal of none asks for one part, not "one or more".
    only_k = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="k"\r\n\r\n3\r\n--{BOUNDARY}--\r\n'
    )
    none = api.post("/v1/search/by-example", content=only_k.encode(), headers=multipart)
    assert _problem(none, 400)["detail"] == "no file: send a part named 'file'"
    assert "uploads" not in _problem(empty, 400)["detail"]
    # A file the image decoder refuses: its message quotes the file, never the server's spool.
    broken = api.post(
        "/v1/search/by-example",
        files={"file": ("broken.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")},
        headers=headers,
    )
    detail = _problem(broken, 400)["detail"]
    assert "broken.png" in detail
    assert "uploads" not in detail
    assert str(platform.settings.data_dir) not in detail

    too_big = api.post(
        "/v1/search/by-example",
        files={"file": ("huge.png", b"\0" * (search_service.MAX_EXAMPLE_BYTES + 1), "image/png")},
        headers=headers,
    )
    assert f"{search_service.MAX_EXAMPLE_BYTES} bytes" in _problem(too_big, 413)["detail"]
    # Without a Content-Length (chunked), the body is cut off as it passes the limit.
    streamed = api.post(
        "/v1/search/by-example",
        content=_multipart("huge.png", *_zeros(search_service.MAX_EXAMPLE_BYTES + 1)),
        headers=multipart,
    )
    assert _problem(streamed, 413)["code"] == "payload-too-large"

    for data, field in (
        ({"k": "0"}, "body.k"),
        ({"k": "many"}, "body.k"),
        ({"mode": "lexical"}, "body.mode"),
        ({"modality": "pictures"}, "body.modality"),
        ({"colour": "red"}, "body.colour"),
    ):
        answer = api.post(
            "/v1/search/by-example",
            files={"file": ("a.png", png, "image/png")},
            data=data,
            headers=headers,
        )
        assert field in _fields(_problem(answer, 422)), data

    for name, said in (
        ("../a.png", "holds a path separator"),
        ("dir/a.png", "holds a path separator"),
        ("..", "holds '..'"),
        ("a\0.png", "holds a NUL character"),
    ):
        # Raw, as a client may send it (httpx would escape the NUL as %00). The names are
        # checked as every upload's are (ingest/uploads.py, check_upload_name).
        body = b"".join(_multipart(name, png))
        answer = api.post("/v1/search/by-example", content=body, headers=multipart)
        assert said in _problem(answer, 400)["detail"], name
    missing = api.post("/v1/search/by-example", data={"k": "3"}, headers=headers)
    assert _problem(missing, 400)["code"] == "invalid-input"
    as_json = api.post("/v1/search/by-example", json={"file": "a.png"}, headers=headers)
    assert "multipart/form-data" in _problem(as_json, 400)["detail"]
    two = api.post(
        "/v1/search/by-example",
        files=[("file", ("a.png", png, "image/png")), ("file", ("b.png", png, "image/png"))],
        headers=headers,
    )
    assert "not several" in _problem(two, 400)["detail"]
    assert _uploads_left(platform) == []


def test_search_needs_a_key(api: TestClient) -> None:
    assert api.post("/v1/search", json={"query": "anvil"}).status_code == 401
    assert api.post("/v1/search/by-example").status_code == 401
