"""`GET /health/live`: answered ahead of the FastAPI stack (api/health.py, LivenessShortcut)
exactly as the route answers, with the request id; anything else still reaches the route."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_liveness_is_answered_with_the_routes_body_and_a_request_id(api: TestClient) -> None:
    answer = api.get("/health/live", headers={"X-Request-ID": "probe-1"})
    assert answer.status_code == 200
    assert answer.content == b'{"status":"live"}'
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-request-id"] == "probe-1"
    assert "ratelimit" not in answer.headers  # no key, nothing counted
    fresh = api.get("/health/live")
    assert len(fresh.headers["x-request-id"]) == 32
    # The route documents the same answer (schemathesis checks answers against it).
    schema = api.get("/openapi.json").json()["paths"]["/health/live"]["get"]
    assert "200" in schema["responses"]


def test_what_is_not_a_plain_get_goes_to_the_route_and_its_checks(api: TestClient) -> None:
    unknown = api.get("/health/live", params={"verbose": "1"})
    assert unknown.status_code == 400
    assert unknown.headers["content-type"] == "application/problem+json"
    assert "unknown query parameter 'verbose'" in unknown.json()["detail"]
    assert unknown.headers["x-request-id"] == unknown.json()["request_id"]
    posted = api.post("/health/live")
    assert posted.status_code == 405
    assert posted.headers["content-type"] == "application/problem+json"
    # A malformed request is refused before the shortcut, as on every route.
    bad = api.get("/health/live", headers={"Content-Length": "ten"})
    assert bad.status_code == 400
    assert "Content-Length must be a decimal number" in bad.json()["detail"]
