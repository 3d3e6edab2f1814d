"""The admin UI's pages over real rows: dashboard, dead letters, tenants and keys, jobs."""

from __future__ import annotations

import html
import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.integration.api.conftest import IssueKey
from tests.integration.api.pipeline import Source, drain_banned, insert_dead_letters, pipeline
from tests.integration.api.test_ledger_routes import bill
from tests.integration.api.test_models_and_embed_api import held_models
from tests.integration.heartbeats import beat_every_service
from tests.integration.sync.conftest import drain

from hartonomous.config import Settings
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.security.roles import Role
from hartonomous.services import Platform
from hartonomous.services.status import platform_status
from hartonomous.services.sync_control import pause_sync, resume_sync

from .conftest import csrf_of, sign_in

__all__ = ["held_models", "pipeline"]


def test_the_dashboard_shows_platform_and_tenant_figures(
    client: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    insert_dead_letters(pipeline, 2)
    token = issue_key("acme", Role.ADMIN)
    pipeline.conn.execute(
        "INSERT INTO ingestion_jobs (tenant_id, principal_id) VALUES ('acme', 'p')"
    )
    sign_in(client, token)
    page = client.get("/ui/dashboard").text
    assert re.search(r'id="fig-dead-letters"><a [^>]*>2</a>', page)
    assert re.search(r'id="fig-depth">\d+<', page)
    assert 'id="fig-jobs">1<' in page  # the running job, with its progress bar
    assert "<progress" in page
    assert 'id="fig-dcu">0' in page
    # No `up` runs here: no service beats, which is named as stalled, not called healthy.
    assert "Stalled" in page
    assert "no heartbeat" in page


def test_the_dashboard_warns_of_a_paused_sync_as_status_does(
    client: TestClient, issue_key: IssueKey, pipeline: Source, database_url: str, platform: Platform
) -> None:
    beat_every_service(database_url)  # every service beats and the slot exists: only the pause
    pause_sync(platform, by="ops-on-call", reason="disk swap")
    try:
        sign_in(client, issue_key("ops", Role.ADMIN))
        page = client.get("/ui/dashboard").text
        said = next(c for c in platform_status(platform).checks if c.name == "sync pause")
    finally:
        resume_sync(platform)
    assert "All flowing" not in page
    assert '<section class="state warning"' in page
    assert f"<li>sync pause: {html.escape(said.detail)}</li>" in page
    assert "paused by ops-on-call since" in said.detail
    assert "(disk swap)" in said.detail


def test_dead_letters_listed_shown_replayed_each_and_purged_after_confirmation(
    client: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    real = drain_banned(pipeline)  # refused by the sync worker: a real dead letter
    [made] = insert_dead_letters(pipeline, 1, reason="poison")
    sign_in(client, issue_key("ops", Role.ADMIN))
    listing = client.get("/ui/dead-letters").text
    assert f'value="{real}"' in listing
    assert "poison" in listing
    assert "builtins.KeyError" in listing
    shown = client.get(f"/ui/dead-letters/{made}").text
    assert '<pre id="traceback" tabindex="0">tb</pre>' in shown
    csrf = csrf_of(listing)
    gone = 999_999
    answer = client.post(
        "/ui/dead-letters/replay",
        data={"csrf_token": csrf, "dead_letter_id": [str(made), str(gone), str(real)]},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200
    rows = re.findall(r"<tr class=\"(ok|bad)\"><td>(\d+)</td><td>([^<]*)</td>", answer.text)
    assert [(kind, int(letter)) for kind, letter, _ in rows] == [
        ("ok", made),
        ("bad", gone),
        ("ok", real),
    ]
    assert rows[1][2] == f"not replayed: dead letter {gone} does not exist"
    replayed_as = pipeline.scalar(
        f"SELECT replayed_message_id FROM message_dead_letters WHERE dead_letter_id = {made}"
    )
    assert rows[0][2] == f"replayed as message {replayed_as}"
    nothing = client.post("/ui/dead-letters/replay", data={"csrf_token": csrf})
    assert nothing.status_code == 400
    assert "Tick at least one" in nothing.text

    bad_age = client.post("/ui/dead-letters/purge", data={"csrf_token": csrf, "older_than": "x"})
    assert bad_age.status_code == 400
    assert 'id="older_than-error"' in bad_age.text
    asked = client.post("/ui/dead-letters/purge", data={"csrf_token": csrf, "older_than": "0s"})
    assert "Confirm purge" in asked.text
    stored = pipeline.scalar("SELECT count(*) FROM message_dead_letters")
    assert stored >= 2  # nothing deleted before the confirmation
    done = client.post(
        "/ui/dead-letters/purge",
        data={"csrf_token": csrf, "older_than": "0s", "confirm": "yes"},
    )
    assert f"Purged {stored} dead letters" in done.text
    assert [step.status_code for step in done.history] == [303]  # a reload purges nothing
    assert done.url.path == "/ui/dead-letters"
    plain = client.post(
        "/ui/dead-letters/replay", data={"csrf_token": csrf, "dead_letter_id": "1"}
    )  # a plain form (no htmx): the outcome shown once on the GET page it is sent to
    assert [step.status_code for step in plain.history] == [303]
    assert "not replayed: dead letter 1 does not exist" in plain.text
    again = client.get(str(plain.url)).text
    assert "not replayed" not in again
    assert "shown once already" in again
    assert pipeline.scalar("SELECT count(*) FROM message_dead_letters") == 0
    assert client.get("/ui/dead-letters/abc").status_code == 404
    assert client.get(f"/ui/dead-letters/{made}").status_code == 404


def test_tenants_created_keys_issued_once_revoked_and_tenant_disabled(
    client: TestClient, issue_key: IssueKey
) -> None:
    sign_in(client, issue_key("ops", Role.ADMIN))
    csrf = csrf_of(client.get("/ui/tenants").text)
    for bad, says in (("", "enter a tenant id"), ("Bad Id!", "Bad Id!"), ("ops", "exists")):
        refused = client.post("/ui/tenants", data={"csrf_token": csrf, "tenant_id": bad})
        assert refused.status_code == 400, bad
        assert 'id="tenant_id-error"' in refused.text
        assert says in refused.text, refused.text
    # Each refusal beside its own field; long inputs are not echoed whole.
    huge = "x" * 5000 + "!"
    refused = client.post("/ui/tenants", data={"csrf_token": csrf, "tenant_id": huge})
    assert 'id="tenant_id-error"' in refused.text
    assert "(5001 characters)" in refused.text
    assert refused.text.count("x" * 5000) == 1  # in the field's value only
    for name, field in (("N" * 257, "257"), ("Bell\x07", "U+0007"), ("Nul\x00x", "U+0000")):
        refused = client.post(
            "/ui/tenants", data={"csrf_token": csrf, "tenant_id": "ok-id", "display_name": name}
        )
        assert refused.status_code == 400
        assert 'id="display_name-error"' in refused.text
        assert 'id="tenant_id-error"' not in refused.text
        assert field in refused.text
    assert "ok-id" not in client.get("/ui/tenants").text  # nothing created
    created = client.post(
        "/ui/tenants", data={"csrf_token": csrf, "tenant_id": "initech"}, follow_redirects=False
    )
    assert created.headers["location"] == "/ui/tenants/initech"
    base = "/ui/tenants/initech"
    no_principal = client.post(f"{base}/keys", data={"csrf_token": csrf, "label": "x"})
    assert no_principal.status_code == 400
    assert 'id="key_principal_id-error"' in no_principal.text
    wrong_role = client.post(
        f"{base}/principals",
        data={"csrf_token": csrf, "principal_id": "milton", "role": "root"},
    )
    assert wrong_role.status_code == 400
    assert 'id="role-error">role must be one of' in wrong_role.text
    assert 'id="principal_id-error"' not in wrong_role.text
    client.post(
        f"{base}/principals",
        data={"csrf_token": csrf, "principal_id": "milton", "role": "user"},
    )
    too_long = client.post(
        f"{base}/keys",
        data={"csrf_token": csrf, "key_principal_id": "milton", "label": "L" * 400},
    )
    assert too_long.status_code == 400
    assert 'id="label-error">label must be at most 128 characters (it has 400)' in too_long.text
    assert 'id="key_principal_id-error"' not in too_long.text
    issued = client.post(
        f"{base}/keys", data={"csrf_token": csrf, "key_principal_id": "milton", "label": "ui"}
    )
    # Post/Redirect/Get: the secret is on a GET page shown once; a reload issues nothing.
    assert [step.status_code for step in issued.history] == [303]
    assert issued.url.path == base
    assert issued.headers["cache-control"] == "no-store"
    token = re.search(r'id="issued-token" readonly value="(hk_[^"]+)"', issued.text)
    assert token
    reloaded = client.get(str(issued.url))
    assert reloaded.status_code == 200
    assert token.group(1) not in reloaded.text
    assert "shown once and is not shown again" in reloaded.text
    later = client.get(base).text
    assert token.group(1) not in later  # shown once
    key_id = token.group(1).split("_")[1]
    assert f"Revoke key {key_id}" in later
    assert later.count("Revoke key ") == 1  # the reload issued no second key

    other = TestClient(client.app)
    assert sign_in(other, token.group(1)) == "/ui/dashboard"
    assert "Tenant <strong>initech</strong>" in other.get("/ui/dashboard").text
    client.post(f"{base}/keys/{key_id}/revoke", data={"csrf_token": csrf})
    assert f"Revoke key {key_id}" not in client.get(base).text
    assert other.get("/ui/dashboard", follow_redirects=False).status_code == 303

    client.post(f"{base}/state", data={"csrf_token": csrf, "state": "disabled"})
    assert 'id="tenant-state">disabled<' in client.get(base).text
    assert client.get("/ui/tenants/nosuch").status_code == 404


def test_a_job_page_is_its_tenants_only(
    client: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    pipeline.tenant("acme")
    job_id = pipeline.ingest("acme", 2)
    sign_in(client, issue_key("acme", Role.USER))
    mine = client.get(f"/ui/jobs/{job_id}")
    assert mine.status_code == 200
    assert 'id="job-status">completed<' in mine.text
    stranger = TestClient(client.app)
    sign_in(stranger, issue_key("globex", Role.USER))
    for path in (f"/ui/jobs/{job_id}", "/ui/jobs/not-a-job"):
        answer = stranger.get(path)
        assert answer.status_code == 404, path
        assert "not found" in answer.text


def test_search_finds_the_tenants_atoms_with_score_source_and_excerpt(
    client: TestClient, issue_key: IssueKey, engine: Engine, tmp_path: Path
) -> None:
    token = issue_key("acme", Role.USER)
    texts = {
        "harbour.txt": "The lighthouse keeper logged every ship entering the harbour at dusk.",
        "orchard.txt": "Apple trees in the orchard were pruned before the first frost.",
        "engine.txt": "The steam engine's governor kept the flywheel at a steady speed.",
    }
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    outcome = ingest_paths(engine, IngestRequest(tenant_id="acme"), sorted(tmp_path.iterdir()))
    assert outcome.status == "completed"
    sign_in(client, token)
    for mode in ("lexical", "hybrid"):
        page = client.get("/ui/search", params={"q": "lighthouse harbour", "mode": mode})
        assert page.status_code == 200, page.text
        rows = re.findall(
            r'<tr><td>([^<]*)</td><td><a href="/ui/atoms/[0-9a-f]{64}">([^<]*)</a>'
            r'(?: · <a href="/ui/holdings/for\?[^"]+"[^>]*>holding</a>)?</td><td>([^<]*)</td>',
            page.text,
        )
        assert rows, mode
        score, source, modality = rows[0]
        assert source.endswith("harbour.txt"), (mode, rows)
        assert modality == "text"
        assert "lighthouse keeper logged" in page.text
        if mode == "hybrid":
            assert 0 < float(score) <= 1
    stranger = TestClient(client.app)
    sign_in(stranger, issue_key("globex", Role.USER))
    theirs = stranger.get("/ui/search", params={"q": "lighthouse harbour", "mode": "lexical"})
    assert "harbour.txt" not in theirs.text
    for params, field in (
        ({"q": "x", "k": "many"}, "k"),
        ({"q": "x", "k": "0"}, "k"),
        ({"q": "x", "mode": "psychic"}, "mode"),
        ({"q": "x", "modality": "smell"}, "modality"),
        ({"q": ""}, "q"),
    ):
        refused = client.get("/ui/search", params=params)
        assert refused.status_code == 400, params
        assert f'id="{field}-error"' in refused.text, (params, refused.text)


def test_the_billing_pages_totals_equal_the_ledgers(
    client: TestClient, issue_key: IssueKey, pipeline: Source
) -> None:
    bill(pipeline, "acme", 3)
    bill(pipeline, "globex", 2)
    sign_in(client, issue_key("acme", Role.DATA_SCIENTIST))
    page = client.get("/ui/billing")
    assert page.status_code == 200, page.text
    dcu, cost, count = pipeline.conn.execute(
        "SELECT sum(total_dcu), sum(total_cost), count(*) FROM billing_usage_ledger "
        "WHERE tenant_id = 'acme'"
    ).fetchone()
    assert f'id="total-dcu">{dcu}<' in page.text
    assert f'id="total-cost">{cost}<' in page.text
    assert f'id="total-rows">{count}<' in page.text
    assert page.text.count("<td>neo4j_sync.ingest_completed</td>") == 1 + count  # report+rows
    filtered = client.get("/ui/billing", params={"operation": "nothing.such"})
    assert "<td>neo4j_sync.ingest_completed</td>" in filtered.text  # the report is the range's
    assert 'id="entries"' in filtered.text
    entries = filtered.text.split('id="entries"')[1]
    assert "neo4j_sync.ingest_completed" not in entries
    for params, field in (
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-02", "until": "2026-02-01"}, "until"),
    ):
        refused = client.get("/ui/billing", params=params)
        assert refused.status_code == 400
        assert f'id="{field}-error"' in refused.text
    user = TestClient(client.app)
    sign_in(user, issue_key("acme", Role.USER))
    assert user.get("/ui/billing").status_code == 403


def test_an_atom_page_shows_holdings_bytes_and_a_lineage_picture(
    client: TestClient, issue_key: IssueKey, engine: Engine, pipeline: Source, tmp_path: Path
) -> None:
    token = issue_key("acme", Role.USER)
    body = "First paragraph about tides.\n\nSecond paragraph about the moon.\n"
    (tmp_path / "tides.txt").write_text(body)
    outcome = ingest_paths(engine, IngestRequest(tenant_id="acme"), [tmp_path / "tides.txt"])
    atom_id = outcome.files[0].atom_id
    assert atom_id
    pipeline.capture()
    drain(pipeline, Settings())  # the sync worker builds the graph lineage walks
    sign_in(client, token)
    page = client.get(f"/ui/atoms/{atom_id}")
    assert page.status_code == 200, page.text
    assert "tides.txt" in page.text  # the tenant's holding
    assert '<svg id="lineage"' in page.text
    assert f'data-node="atom:{atom_id}"' in page.text
    up = client.get(f"/ui/atoms/{atom_id}", params={"direction": "up", "depth": 3})
    assert up.status_code == 200
    nodes = re.findall(r'data-node="([^"]+)"', up.text)
    assert f"atom:{atom_id}" in nodes
    assert len(nodes) >= 2, nodes  # the file's holding (or tenant) it came from
    download = client.get(f"/ui/atoms/{atom_id}/content")
    assert download.status_code == 200
    assert download.content == body.encode()
    stranger = TestClient(client.app)
    sign_in(stranger, issue_key("globex", Role.USER))
    for path in (f"/ui/atoms/{atom_id}", f"/ui/atoms/{atom_id}/content"):
        assert stranger.get(path).status_code == 404, path
    assert client.get("/ui/atoms/not-hex").status_code == 400
    # A bad lineage depth or direction: said beside its field, the picture still drawn.
    for name, bad in (("depth", "0"), ("depth", "33"), ("depth", "abc"), ("direction", "sideways")):
        refused = client.get(f"/ui/atoms/{atom_id}", params={name: bad})
        assert refused.status_code == 400, (name, bad)
        assert f'<p class="field-error" id="{name}-error">' in refused.text, (name, bad)
        assert "Invalid input" not in refused.text
        assert '<svg id="lineage"' in refused.text


def test_models_and_their_tensors_are_the_tenants_only(
    client: TestClient, issue_key: IssueKey, held_models: dict[str, str]
) -> None:
    sign_in(client, held_models["acme"])
    listing = client.get("/ui/models")
    assert listing.status_code == 200
    ids = re.findall(r'href="/ui/models/([0-9a-f]{64})"', listing.text)
    assert len(ids) == 3
    for model_id in ids:
        page = client.get(f"/ui/models/{model_id}")
        assert page.status_code == 200
        tensors = page.text.split('id="tensors"')[1]
        assert tensors.count("<tr><td>") >= 1  # each tiny model has tensors, shown by name
    stranger = TestClient(client.app)
    sign_in(stranger, held_models["globex"])
    assert "holds no model" in stranger.get("/ui/models").text
    assert stranger.get(f"/ui/models/{ids[0]}").status_code == 404
    user = TestClient(client.app)
    sign_in(user, held_models["acme-user"])
    assert user.get("/ui/models").status_code == 403
