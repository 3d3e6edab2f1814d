"""Broker, dead-letter and graph routes over real rows; admin only (docs/api.md, "Operations")."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hartonomous.api.problems import PROBLEM_MEDIA_TYPE
from hartonomous.config import Settings
from hartonomous.security.roles import Role

from .conftest import IssueKey, bearer
from .pipeline import Source, all_pages, drain_banned, insert_dead_letters, pipeline

__all__ = ["pipeline"]


@pytest.fixture
def admin(issue_key: IssueKey) -> dict[str, str]:
    return bearer(issue_key(tenant="ops", role=Role.ADMIN))


def test_broker_status_reports_the_queue_and_its_dead_letters(
    api: TestClient, admin: dict[str, str], pipeline: Source
) -> None:
    pipeline.tenant("acme")
    pipeline.ingest("acme", 2)
    pipeline.capture()
    insert_dead_letters(pipeline, 1)
    answer = api.get("/v1/broker/status", headers=admin)
    assert answer.status_code == 200, answer.text
    status = answer.json()
    assert status["queue"] == "hartonomous_message_queue"
    assert status["depth"] == pipeline.scalar("SELECT count(*) FROM broker_messages") > 0
    assert status["dead_letters"] == 1
    assert status["change_capture"]["slot_exists"] is True


def test_dead_letters_list_show_replay_and_purge(
    api: TestClient, admin: dict[str, str], pipeline: Source
) -> None:
    letter_id = drain_banned(pipeline)
    shown = api.get(f"/v1/dead-letters/{letter_id}", headers=admin)
    assert shown.status_code == 200, shown.text
    letter = shown.json()
    assert letter["body"]["table"] == "holdings"
    assert letter["reason"]
    listed = api.get("/v1/dead-letters", headers=admin).json()
    assert letter_id in [item["dead_letter_id"] for item in listed["items"]]
    assert listed["next_cursor"] is None

    replayed = api.post(f"/v1/dead-letters/{letter_id}/replay", headers=admin)
    assert replayed.status_code == 200, replayed.text
    [message_id] = replayed.json()["message_ids"]
    assert (
        pipeline.scalar(
            "SELECT replayed_from FROM broker_messages WHERE message_id = %s", message_id
        )
        == letter_id
    )
    # Replayed letters leave the default listing, and come back with include_replayed.
    pending = api.get("/v1/dead-letters", headers=admin).json()["items"]
    assert letter_id not in [item["dead_letter_id"] for item in pending]
    everything = api.get("/v1/dead-letters?include_replayed=true", headers=admin).json()
    assert letter_id in [item["dead_letter_id"] for item in everything["items"]]

    unconfirmed = api.post("/v1/dead-letters/purge", headers=admin, json={"older_than": "0s"})
    assert unconfirmed.status_code == 400
    assert "confirm" in unconfirmed.json()["detail"]
    assert pipeline.scalar("SELECT count(*) FROM message_dead_letters") > 0
    purged = api.post(
        "/v1/dead-letters/purge", headers=admin, json={"older_than": "0s", "confirm": True}
    )
    assert purged.status_code == 200, purged.text
    assert purged.json()["purged"] >= 1
    assert pipeline.scalar("SELECT count(*) FROM message_dead_letters") == 0


def test_replay_by_reason_replays_only_those(
    api: TestClient, admin: dict[str, str], pipeline: Source
) -> None:
    chosen = insert_dead_letters(pipeline, 2, reason="poison")
    insert_dead_letters(pipeline, 1, reason="other")
    answer = api.post("/v1/dead-letters/replay", headers=admin, json={"reason": "poison"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["replayed"] == 2
    replayed_from = {
        row[0]
        for row in pipeline.conn.execute("SELECT replayed_from FROM broker_messages").fetchall()
    }
    assert replayed_from == set(chosen)
    both = api.post("/v1/dead-letters/replay", headers=admin, json={"all": True, "reason": "x"})
    # A rule across members, not a schema violation: 400 (422 is for the schema's own rules).
    assert both.status_code == 400
    assert both.headers["content-type"] == PROBLEM_MEDIA_TYPE


def test_the_dead_letter_body_keeps_its_exact_numbers(
    api: TestClient, admin: dict[str, str], pipeline: Source
) -> None:
    [letter_id] = insert_dead_letters(pipeline, 1)
    body = api.get(f"/v1/dead-letters/{letter_id}", headers=admin).json()["body"]
    # Never a float: 1.000000000000000000001 would become 1.0.
    assert body["amount"] == "1.000000000000000000001"


def test_dead_letters_page_beyond_one_page_and_refuse_a_tampered_cursor(
    api: TestClient, admin: dict[str, str], pipeline: Source
) -> None:
    ids = insert_dead_letters(pipeline, 5)
    items, pages = all_pages(api, "/v1/dead-letters?limit=2", admin)
    assert [item["dead_letter_id"] for item in items] == sorted(ids, reverse=True)
    assert pages == 3
    first = api.get("/v1/dead-letters?limit=2", headers=admin).json()["next_cursor"]
    body, signature = first.split(".")
    tampered = body[:-1] + ("A" if body[-1] != "A" else "B") + "." + signature
    answer = api.get(f"/v1/dead-letters?limit=2&cursor={tampered}", headers=admin)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert answer.json()["code"] == "invalid-cursor"
    # A cursor of the pending letters is not one of the listing with replayed letters too.
    answer = api.get(f"/v1/dead-letters?include_replayed=true&cursor={first}", headers=admin)
    assert answer.status_code == 400
    assert "made for other filters" in answer.json()["detail"]


def test_an_unknown_dead_letter_is_a_404_problem(api: TestClient, admin: dict[str, str]) -> None:
    for path in ("/v1/dead-letters/999999", "/v1/dead-letters/999999/replay"):
        answer = (api.get if not path.endswith("replay") else api.post)(path, headers=admin)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert answer.json()["detail"] == "dead letter 999999 does not exist"


@pytest.mark.parametrize(
    ("request_line", "body", "field"),
    [
        ("GET /v1/dead-letters/0", None, "path.dead_letter_id"),
        ("GET /v1/dead-letters?limit=0", None, "query.limit"),
        ("GET /v1/dead-letters?limit=501", None, "query.limit"),
        ("POST /v1/dead-letters/purge", {"older_than": "7d", "yes": True}, "body.yes"),
        ("POST /v1/graph/repair", {"batch_size": 0}, "body.batch_size"),
        ("POST /v1/dead-letters/replay", {"reason": "a\x00b"}, "body.reason"),
        ("POST /v1/graph/replay", {"since": "2026-01-31T12:00:00"}, "body.since"),
    ],
)
def test_bad_inputs_are_problems_naming_the_field(
    api: TestClient,
    admin: dict[str, str],
    request_line: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    method, path = request_line.split(" ")
    answer = api.request(method, path, headers=admin, json=body)
    # NUL in any JSON body is refused before routing (400, api/middleware.py), also by field.
    has_nul = any("\x00" in str(value) for value in (body or {}).values())
    assert answer.status_code == (400 if has_nul else 422), answer.text
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert field in [error["field"] for error in answer.json()["errors"]]


def test_a_dead_letter_id_that_is_not_a_number_is_a_422_naming_it(
    api: TestClient, admin: dict[str, str]
) -> None:
    # Malformed: a 422 naming the parameter; /replay and /purge are their own routes' 405.
    answer = api.get("/v1/dead-letters/abc", headers=admin)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert [error["field"] for error in answer.json()["errors"]] == ["path.dead_letter_id"]
    assert api.get("/v1/dead-letters/replay", headers=admin).status_code == 405
    assert api.get("/v1/dead-letters/purge", headers=admin).status_code == 405


def test_a_bad_purge_age_is_a_400_naming_older_than(api: TestClient, admin: dict[str, str]) -> None:
    answer = api.post(
        "/v1/dead-letters/purge", headers=admin, json={"older_than": "soon", "confirm": True}
    )
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("older_than 'soon' is not a duration")
    endless = api.post(
        "/v1/dead-letters/purge",
        headers=admin,
        json={"older_than": "99999999999999w", "confirm": True},
    )
    assert endless.status_code == 400
    assert endless.json()["detail"] == "older_than '99999999999999w' is longer than 100 years"


def test_graph_status_and_repair_over_real_rows(
    api: TestClient, admin: dict[str, str], pipeline: Source
) -> None:
    pipeline.tenant("acme", "alice")
    pipeline.ingest("acme", 3, principal_id="alice")
    pipeline.capture()
    before = api.get("/v1/graph/status", headers=admin).json()
    assert before["graph_nodes"]["rows"] == 0
    assert before["queue"]["pending_events"] > 0
    assert before["neo4j_projection"] == "off"
    assert before["graph_nodes"]["unprojected"] is None
    repaired = api.post("/v1/graph/repair", headers=admin)
    assert repaired.status_code == 200, repaired.text
    report = repaired.json()
    assert report["rows"]["holdings"] == 3
    assert report["nodes"] > 0
    after = api.get("/v1/graph/status", headers=admin).json()
    labels = dict(
        pipeline.conn.execute("SELECT label, count(*) FROM graph_nodes GROUP BY label").fetchall()
    )
    assert after["graph_nodes"]["rows"] == sum(labels.values()) > 0
    assert labels["Atom"] == 3


def test_graph_replay_without_neo4j_is_a_problem_saying_so(
    api: TestClient, admin: dict[str, str]
) -> None:
    answer = api.post("/v1/graph/replay", headers=admin, json={})
    assert answer.status_code == 400
    assert answer.json()["code"] == "projection-not-configured"
    assert "[neo4j] uri" in answer.json()["detail"]


def test_graph_replay_projects_into_neo4j(
    platform: Any, admin: dict[str, str], pipeline: Source, neo4j_uri: str
) -> None:
    from tests.integration.sync.conftest import clear_graph, neo4j_graph, sql_graph

    from hartonomous.api import create_app

    clear_graph(neo4j_uri)
    try:
        settings = Settings.model_validate({"neo4j": {"uri": neo4j_uri}})
        pipeline.tenant("acme")
        pipeline.ingest("acme", 2)
        with TestClient(
            create_app(dataclasses.replace(platform, settings=settings)),
            raise_server_exceptions=False,
        ) as client:
            assert client.post("/v1/graph/repair", headers=admin).status_code == 200
            answer = client.post("/v1/graph/replay", headers=admin, json={"batch_size": 10})
            assert answer.status_code == 200, answer.text
            report = answer.json()
        nodes, edges = sql_graph(pipeline.conn)
        assert report["nodes"] == pipeline.scalar("SELECT count(*) FROM graph_nodes")
        assert report["since"] is None
        assert neo4j_graph(neo4j_uri) == (nodes, edges)
    finally:
        clear_graph(neo4j_uri)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/broker/status"),
        ("get", "/v1/dead-letters"),
        ("get", "/v1/dead-letters/1"),
        ("post", "/v1/dead-letters/1/replay"),
        ("post", "/v1/dead-letters/replay"),
        ("post", "/v1/dead-letters/purge"),
        ("get", "/v1/graph/status"),
        ("post", "/v1/graph/repair"),
        ("post", "/v1/graph/replay"),
    ],
)
def test_operations_are_admin_only(
    api: TestClient, issue_key: IssueKey, method: str, path: str
) -> None:
    assert api.request(method.upper(), path).status_code == 401
    for role in (Role.USER, Role.DATA_SCIENTIST):
        answer = api.request(method.upper(), path, headers=bearer(issue_key(role=role)))
        assert answer.status_code == 403, (path, role)
