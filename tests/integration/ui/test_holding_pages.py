"""Holding pages in-process: source, metadata, atom and job of the tenant's holding, reached
from a search hit and from its atom's page; released only after a confirmation with the
session's CSRF token; another tenant's holding a 404."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.integration.api.conftest import IssueKey
from tests.integration.api.pipeline import Source, pipeline

from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.security.roles import Role

from .conftest import csrf_of, sign_in

__all__ = ["pipeline"]


def test_a_holding_shows_its_source_metadata_atom_and_job_to_its_tenant_only(
    client: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    pipeline.tenant("acme")
    job_id = pipeline.ingest("acme", 1)
    holding_id, atom_id, source = pipeline.conn.execute(
        "SELECT holding_id, encode(atom_id, 'hex'), source_uri FROM holdings"
    ).fetchone()
    sign_in(client, issue_key("acme", Role.USER))
    page = client.get(f"/ui/holdings/{holding_id}")
    assert page.status_code == 200
    assert f'id="holding-source">{source}<' in page.text
    assert f'href="/ui/atoms/{atom_id}" id="holding-atom"' in page.text
    assert f'href="/ui/jobs/{job_id}" id="holding-job"' in page.text
    assert "<tr><td>n</td><td>0</td></tr>" in page.text  # the metadata {"n": 0}
    atom_page = client.get(f"/ui/atoms/{atom_id}").text
    assert f'href="/ui/holdings/{holding_id}"' in atom_page
    stranger = TestClient(client.app)
    sign_in(stranger, issue_key("globex", Role.USER))
    for path in (f"/ui/holdings/{holding_id}", "/ui/holdings/not-an-id"):
        assert stranger.get(path).status_code == 404, path
    answer = stranger.get("/ui/holdings/for", params={"atom_id": atom_id, "source": source})
    assert answer.status_code == 404
    refused = stranger.post(
        f"/ui/holdings/{holding_id}/release",
        data={"csrf_token": csrf_of(stranger.get("/ui/search").text), "confirm": "yes"},
    )
    assert refused.status_code == 404
    assert pipeline.scalar("SELECT count(*) FROM holdings") == 1


def test_a_search_hit_leads_to_its_holding_which_is_released_after_confirmation(
    client: TestClient, issue_key: IssueKey, engine: Engine, tmp_path: Path, pipeline: Source
) -> None:
    sign_in(client, issue_key("acme", Role.USER))
    (tmp_path / "tides.txt").write_text("Neap tides follow the quarter moon.\n\nSpring tides.\n")
    ingest_paths(engine, IngestRequest(tenant_id="acme"), [tmp_path / "tides.txt"])
    results = client.get("/ui/search", params={"q": "neap tides", "mode": "lexical"}).text
    link = re.search(r'href="(/ui/holdings/for\?[^"]+)"', results)
    assert link, results
    found = client.get(link.group(1).replace("&amp;", "&"), follow_redirects=False)
    assert found.status_code == 303
    holding_page = found.headers["location"]
    holding_id = holding_page.rsplit("/", 1)[1]
    shown = client.get(holding_page).text
    assert "tides.txt" in shown
    csrf = csrf_of(shown)
    release = f"/ui/holdings/{holding_id}/release"
    forged = client.post(release, data={"csrf_token": "forged", "confirm": "yes"})
    assert forged.status_code == 403
    asked = client.post(release, data={"csrf_token": csrf})
    assert asked.status_code == 200
    assert "Confirm release" in asked.text
    assert pipeline.scalar("SELECT count(*) FROM holdings") == 1  # asking deletes nothing
    done = client.post(release, data={"csrf_token": csrf, "confirm": "yes"})
    assert done.status_code == 200
    assert "Holding released" in done.text
    assert [step.status_code for step in done.history] == [303]  # a reload releases nothing
    assert "The holding of <strong>" in done.text  # its source, shown once
    assert "The holding of <strong>" not in client.get(str(done.url)).text
    assert pipeline.scalar("SELECT count(*) FROM holdings") == 0
    assert client.get(holding_page).status_code == 404
