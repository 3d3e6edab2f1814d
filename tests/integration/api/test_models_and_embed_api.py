"""GET /v1/models (…/{id}, …/{id}/tensors) for the caller's tenant only, paged with signed
cursors; POST /v1/embed gives the service's vectors; bad input is a problem naming the field."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.integration.data_plane.data_plane_support import (
    by_name,
    ingest,
    write_gguf,
    write_onnx,
    write_safetensors,
)

from hartonomous.db.tenant_context import tenant_bound
from hartonomous.security.roles import Role
from hartonomous.services import Platform
from hartonomous.services import embed as embed_service
from hartonomous.services import models as model_service

from .conftest import IssueKey, bearer
from .problem_checks import fields as _fields
from .problem_checks import problem as _problem


def _pages(api: TestClient, path: str, key: str, limit: int) -> tuple[list[Any], int]:
    """Every item of a listing, following next_cursor; and how many pages it took."""
    items: list[Any] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        answer = api.get(path, params=params, headers=bearer(key))
        assert answer.status_code == 200, answer.text
        pages += 1
        items += answer.json()["items"]
        assert len(answer.json()["items"]) <= limit
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return items, pages


@pytest.fixture
def held_models(engine: Engine, issue_key: IssueKey, tmp_path: Path) -> dict[str, str]:
    """acme holds three models (and a text file); keys of both tenants' data scientists."""
    keys = {
        "acme": issue_key("acme", Role.DATA_SCIENTIST),
        "globex": issue_key("globex", Role.DATA_SCIENTIST),
        "acme-user": issue_key("acme", Role.USER),
    }
    (tmp_path / "notes.txt").write_text("Not a model at all.\n", encoding="utf-8")
    files = [
        write_safetensors(tmp_path / "tiny.safetensors"),
        write_gguf(tmp_path / "tiny.gguf"),
        write_onnx(tmp_path / "tiny.onnx"),
        tmp_path / "notes.txt",
    ]
    outcome = by_name(ingest(engine, "acme", *files))
    keys["text-atom"] = outcome["notes.txt"].atom_id
    return keys


def test_models_list_show_and_tensors_page_through_what_the_service_answers(
    api: TestClient, platform: Platform, held_models: dict[str, str]
) -> None:
    key = held_models["acme"]
    # In-process on the API's platform: bound to the tenant as a request would be (RLS).
    with tenant_bound("acme"):
        expected = model_service.list_models(platform, "acme").items
    assert len(expected) == 3
    listed, pages = _pages(api, "/v1/models", key, limit=2)
    assert pages == 2
    assert listed == [json.loads(json.dumps(asdict(model))) for model in expected]
    for model in expected:
        with tenant_bound("acme"):
            details = model_service.show_model(platform, "acme", bytes.fromhex(model.model_id))
        shown = api.get(f"/v1/models/{model.model_id}", headers=bearer(key))
        assert shown.status_code == 200
        want = json.loads(json.dumps(asdict(details)))
        assert shown.json() == {k: v for k, v in want.items() if k != "tensors"}
        tensors, pages = _pages(api, f"/v1/models/{model.model_id}/tensors", key, limit=1)
        assert tensors == want["tensors"]
        assert len(tensors) == model.tensor_count == pages
    # Upper-case hex names the same model.
    upper = api.get(f"/v1/models/{expected[0].model_id.upper()}", headers=bearer(key))
    assert upper.json()["model_id"] == expected[0].model_id


def test_another_tenants_model_is_not_found_and_users_may_not_read_models(
    api: TestClient, held_models: dict[str, str]
) -> None:
    acme_models = api.get("/v1/models", headers=bearer(held_models["acme"])).json()["items"]
    model_id = acme_models[0]["model_id"]
    globex = bearer(held_models["globex"])
    assert api.get("/v1/models", headers=globex).json() == {"items": [], "next_cursor": None}
    for path in (f"/v1/models/{model_id}", f"/v1/models/{model_id}/tensors"):
        hidden = _problem(api.get(path, headers=globex), 404)
        # Told apart from a model that does not exist at all by nothing but the id.
        absent = _problem(api.get(path.replace(model_id, "0" * 64), headers=globex), 404)
        assert hidden["detail"].replace(model_id, "0" * 64) == absent["detail"]
        assert hidden["code"] == absent["code"] == "not-found"
        answer = api.get(path, headers=bearer(held_models["acme-user"]))
        assert _problem(answer, 403)["code"] == "forbidden"
        assert api.get(path).status_code == 401
    # An atom acme holds that is not a model is not found either.
    text_atom = held_models["text-atom"]
    answer = api.get(f"/v1/models/{text_atom}", headers=bearer(held_models["acme"]))
    assert "is not a model" in _problem(answer, 404)["detail"]


def test_bad_model_ids_limits_and_cursors_are_problems(
    api: TestClient, held_models: dict[str, str]
) -> None:
    headers = bearer(held_models["acme"])
    first = api.get("/v1/models", params={"limit": 1}, headers=headers).json()
    cursor, model_id = first["next_cursor"], first["items"][0]["model_id"]
    for path, field in (
        ("/v1/models/xyz", "path.model_id"),
        (f"/v1/models/{model_id}0", "path.model_id"),
        (f"/v1/models/{model_id[:-1]}g/tensors", "path.model_id"),
        ("/v1/models?limit=0", "query.limit"),
        ("/v1/models?limit=501", "query.limit"),
        ("/v1/models?limit=many", "query.limit"),
        (f"/v1/models/{model_id}/tensors?limit=-1", "query.limit"),
        (f"/v1/models?cursor={'a' * 4097}", "query.cursor"),
    ):
        assert field in _fields(_problem(api.get(path, headers=headers), 422)), path
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    for bad in (tampered, "not-a-cursor", cursor.split(".")[0]):
        answer = api.get("/v1/models", params={"cursor": bad, "limit": 1}, headers=headers)
        assert _problem(answer, 400)["code"] == "invalid-cursor"
    # A cursor of one listing is refused by another: the models' cursor on tensors.
    answer = api.get(f"/v1/models/{model_id}/tensors", params={"cursor": cursor}, headers=headers)
    assert "another listing" in _problem(answer, 400)["detail"]
    # …and another tenant's cursor, even for the same listing.
    other = api.get("/v1/models", params={"cursor": cursor}, headers=bearer(held_models["globex"]))
    assert _problem(other, 400)["code"] == "invalid-cursor"


def test_embed_gives_the_services_vectors_and_says_why_a_text_has_none(
    api: TestClient, issue_key: IssueKey
) -> None:
    texts = ["Anvils are heavy.", "", "🙂🙂", "word " * 400]
    answer = api.post("/v1/embed", json={"texts": texts}, headers=bearer(issue_key()))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    space = embed_service.text_space()
    assert (body["space"], body["dimension"]) == (space.name, space.dimension)
    expected = embed_service.embed_texts(texts)
    assert [item["vector"] for item in body["items"]] == [e.vector for e in expected]
    assert len(body["items"][0]["vector"]) == space.dimension
    assert body["items"][1]["vector"] is None
    assert body["items"][1]["error"].startswith("nothing to embed")
    assert "does not know" in body["items"][2]["error"]
    assert body["items"][3]["truncated"] is True
    assert body["items"][3]["token_count"] > 256
    # A lone surrogate (a JSON escape no UTF-8 text holds) is refused naming the text.
    raw = b'{"texts": ["fine", "bad \\ud800 text"]}'
    answer = api.post(
        "/v1/embed",
        content=raw,
        headers={**bearer(issue_key()), "content-type": "application/json"},
    )
    assert _fields(_problem(answer, 422)) == ["body.texts.1"]
    # In-process, the service answers it as that text's error, beside the others' vectors.
    fine, bad = embed_service.embed_texts(["fine", "bad \ud800 text"])
    assert fine.vector is not None
    assert bad.vector is None
    assert bad.error == "not Unicode text: lone surrogate U+D800 at offset 4"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"texts": []}, "body.texts"),
        ({"texts": ["a"] * (embed_service.MAX_EMBED_TEXTS + 1)}, "body.texts"),
        ({"texts": ["a" * (embed_service.MAX_EMBED_CHARACTERS + 1)]}, "body.texts.0"),
        ({"texts": "a"}, "body.texts"),
        ({"texts": ["a", 3]}, "body.texts.1"),
        ({"texts": ["a"], "space": "image-features-v1"}, "body.space"),
        ({}, "body.texts"),
    ],
)
def test_bad_embed_input_is_a_problem_naming_the_field(
    api: TestClient, issue_key: IssueKey, body: Any, field: str
) -> None:
    answer = api.post("/v1/embed", json=body, headers=bearer(issue_key()))
    assert field in _fields(_problem(answer, 422))
