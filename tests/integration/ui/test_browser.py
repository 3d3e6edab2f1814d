"""The admin UI in Debian's chromium (Playwright): sign-in by keyboard, the live dashboard,
dead letters replayed with their outcome, admin pages refused to a user key, forged CSRF
refused, another tenant's job a 404; axe-core's WCAG 2.1 A/AA rules on every page seen."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from tests.integration.api.conftest import IssueKey
from tests.integration.api.pipeline import Source, drain_banned, insert_dead_letters, pipeline
from tests.integration.api.test_ledger_routes import bill
from tests.integration.api.test_models_and_embed_api import held_models
from tests.integration.sync.conftest import drain

from hartonomous.config import Settings
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.security.roles import Role
from hartonomous.services import Platform, tenancy

from .browser import check_accessibility, document
from .test_inference_pages import acme_inference
from .test_search_example_pages import held_media, tone

__all__ = ["held_models", "pipeline"]


def sign_in_by_keyboard(page: Page, base: str, token: str, wanted: str) -> None:
    """Opens ``wanted``, is sent to sign-in, signs in with the keyboard alone, comes back."""
    page.goto(base + wanted)
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next="))
    check_accessibility(page)
    document(page, "sign-in")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    while page.evaluate("document.activeElement.id") != "api_key":
        page.keyboard.press("Tab")
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    expect(page).to_have_url(base + wanted)


def test_sign_in_and_the_dashboard_updates_live(
    page: Page, ui_server: str, issue_key: IssueKey, pipeline: Source, platform: Platform
) -> None:
    token = issue_key("acme", Role.ADMIN)
    sign_in_by_keyboard(page, ui_server, token, "/ui/dashboard")
    expect(page.locator("#fig-dead-letters")).to_have_text("0")
    check_accessibility(page)
    page.evaluate("window.stillTheSamePage = true")
    insert_dead_letters(pipeline, 3)
    # The next server-sent event carries the new figure: no reload (the marker survives).
    expect(page.locator("#fig-dead-letters")).to_have_text("3", timeout=20_000)
    assert page.evaluate("window.stillTheSamePage") is True
    expect(page.locator(".state.stalled")).to_contain_text("no heartbeat")
    # The throughput chart follows the events too: messages completed now are drawn.
    chart = page.locator("#throughput-chart")
    expect(chart.locator("canvas")).to_have_count(1)
    expect(chart).to_have_attribute("data-completed", "0")
    bill(pipeline, "acme", 2)
    expect(chart).not_to_have_attribute("data-completed", "0", timeout=20_000)
    assert page.evaluate("window.stillTheSamePage") is True
    check_accessibility(page)
    document(page, "dashboard")
    # Revoking the key ends the live page too: the stream says so and the page goes to sign-in.
    tenancy.revoke_key(platform, "acme", token.split("_")[1])
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next="), timeout=20_000)


def test_a_dead_letter_is_replayed_and_its_outcome_shown(
    page: Page, ui_server: str, issue_key: IssueKey, pipeline: Source
) -> None:
    letter = drain_banned(pipeline)
    sign_in_by_keyboard(page, ui_server, issue_key("ops", Role.ADMIN), "/ui/dead-letters")
    check_accessibility(page)
    document(page, "dead-letters")
    page.get_by_role("link", name=f"Dead letter {letter}: details and traceback").click()
    expect(page.get_by_role("heading", name=f"Dead letter {letter}")).to_be_visible()
    check_accessibility(page)
    document(page, "dead-letter")
    page.go_back()
    # A refusal (400 fragment) lands in the page, where the outcome would (static/ui.js).
    page.get_by_role("button", name="Replay selected").click()
    expect(page.locator("#replay-outcome")).to_contain_text(
        "Tick at least one dead letter to replay."
    )
    page.get_by_label(f"Select dead letter {letter}").check()
    page.get_by_role("button", name="Replay selected").click()
    outcome = page.locator("#replay-outcomes")
    expect(outcome).to_contain_text(re.compile(rf"{letter}\s*replayed as message \d+"))
    check_accessibility(page)
    document(page, "replay-outcome")
    page.get_by_label(re.compile("Delete letters older than")).fill("0s")
    page.get_by_role("button", name="Purge…").click()
    expect(page.get_by_role("heading", name="Confirm purge")).to_be_visible()
    check_accessibility(page)


def test_a_user_key_cannot_open_admin_pages(
    page: Page, ui_server: str, issue_key: IssueKey
) -> None:
    sign_in_by_keyboard(page, ui_server, issue_key("acme", Role.USER), "/ui/dashboard")
    check_accessibility(page)
    expect(page.get_by_role("link", name="Dead letters")).to_have_count(0)
    for path in ("/ui/dead-letters", "/ui/tenants"):
        answer = page.goto(ui_server + path)
        assert answer is not None
        assert answer.status == 403
        expect(page.get_by_role("alert")).to_contain_text("needs the 'admin' role")
    check_accessibility(page)


def test_tenants_and_keys_and_a_forged_csrf_token_is_refused(
    page: Page, ui_server: str, issue_key: IssueKey
) -> None:
    sign_in_by_keyboard(page, ui_server, issue_key("ops", Role.ADMIN), "/ui/tenants")
    check_accessibility(page)
    page.get_by_label("Tenant id").fill("Not Valid!")
    page.get_by_role("button", name="Create tenant").click()
    expect(page.locator("#tenant_id-error")).to_be_visible()
    check_accessibility(page)
    page.get_by_label("Tenant id").fill("initech")
    page.get_by_role("button", name="Create tenant").click()
    expect(page).to_have_url(ui_server + "/ui/tenants/initech")
    page.get_by_label("New principal id").fill("milton")
    page.get_by_role("button", name="Add principal").click()
    page.get_by_label("Issue a key for principal").select_option("milton")
    page.get_by_role("button", name="Issue key").click()
    token = page.get_by_label("API key for milton")
    expect(token).to_have_value(re.compile(r"^hk_"))
    check_accessibility(page)
    document(page, "tenant-keys")
    page.goto(ui_server + "/ui/tenants")
    document(page, "tenants")
    # A form whose CSRF token was altered is refused and changes nothing.
    page.evaluate(
        "document.querySelectorAll('input[name=csrf_token]').forEach(i => i.value = 'forged')"
    )
    page.get_by_label("Tenant id").fill("forged")
    page.get_by_role("button", name="Create tenant").click()
    expect(page.get_by_role("alert")).to_contain_text("CSRF")
    check_accessibility(page)
    answer = page.goto(ui_server + "/ui/tenants/forged")
    assert answer is not None
    assert answer.status == 404


def test_another_tenants_job_by_url_is_not_found(
    page: Page, ui_server: str, issue_key: IssueKey, pipeline: Source
) -> None:
    pipeline.tenant("acme")
    job_id = pipeline.ingest("acme", 2)
    sign_in_by_keyboard(page, ui_server, issue_key("acme", Role.USER), f"/ui/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("completed")
    check_accessibility(page)
    document(page, "job")
    page.context.clear_cookies()
    sign_in_by_keyboard(page, ui_server, issue_key("globex", Role.USER), "/ui/dashboard")
    answer = page.goto(f"{ui_server}/ui/jobs/{job_id}")
    assert answer is not None
    assert answer.status == 404
    check_accessibility(page)


def test_search_by_keyboard_shows_scored_results(
    page: Page, ui_server: str, issue_key: IssueKey, engine: Engine, tmp_path: Path
) -> None:
    token = issue_key("acme", Role.USER)
    (tmp_path / "harbour.txt").write_text("The lighthouse keeper logged every ship at dusk.")
    (tmp_path / "orchard.txt").write_text("Apple trees in the orchard were pruned in autumn.")
    ingest_paths(engine, IngestRequest(tenant_id="acme"), sorted(tmp_path.iterdir()))
    sign_in_by_keyboard(page, ui_server, token, "/ui/search")
    check_accessibility(page)
    page.get_by_label("Text to look for").fill("lighthouse keeper")
    page.get_by_label("Text to look for").press("Enter")
    first = page.locator("#results tbody tr").first
    expect(first).to_contain_text("harbour.txt")
    expect(first).to_contain_text("lighthouse keeper logged")
    check_accessibility(page)
    document(page, "search")
    page.get_by_label("Results (1-").fill("0")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#k-error")).to_be_visible()
    check_accessibility(page)


def test_billing_shows_the_ledgers_totals_and_a_chart(
    page: Page, ui_server: str, issue_key: IssueKey, pipeline: Source
) -> None:
    bill(pipeline, "acme", 2)
    token = issue_key("acme", Role.DATA_SCIENTIST)
    sign_in_by_keyboard(page, ui_server, token, "/ui/billing")
    dcu = pipeline.scalar("SELECT sum(total_dcu) FROM billing_usage_ledger")
    expect(page.locator("#total-dcu")).to_have_text(str(dcu))
    expect(page.locator("#usage-chart canvas")).to_have_count(1)  # uPlot drew the days
    expect(page.locator("#operation-chart canvas")).to_have_count(1)  # and the operations
    check_accessibility(page)
    document(page, "billing")
    with page.expect_download() as download:
        page.locator("#export-csv").click()
    exported = Path(download.value.path()).read_text().splitlines()
    assert len(exported) == 1 + pipeline.scalar("SELECT count(*) FROM billing_usage_ledger")
    page.get_by_role("link", name="Invoice preview").click()
    expect(page.locator("#invoice-total")).to_be_visible()
    check_accessibility(page)
    document(page, "invoice")


def test_an_atoms_lineage_picture_is_drawn_and_its_nodes_open_their_pages(
    page: Page,
    ui_server: str,
    issue_key: IssueKey,
    *,
    engine: Engine,
    pipeline: Source,
    tmp_path: Path,
) -> None:
    token = issue_key("acme", Role.USER)
    (tmp_path / "tides.txt").write_text("Tides follow the moon.\n\nSpring tides are larger.\n")
    outcome = ingest_paths(engine, IngestRequest(tenant_id="acme"), [tmp_path / "tides.txt"])
    atom_id = outcome.files[0].atom_id
    pipeline.capture()
    drain(pipeline, Settings())
    sign_in_by_keyboard(page, ui_server, token, f"/ui/atoms/{atom_id}")
    picture = page.locator("svg#lineage")
    expect(picture.locator(f'[data-node="atom:{atom_id}"]')).to_have_count(1)
    check_accessibility(page)
    document(page, "atom")
    linked = picture.locator("a").filter(has_not=page.locator(f'[data-node="atom:{atom_id}"]'))
    if linked.count():  # a child or parent atom: its box opens its page
        linked.first.click()
        expect(page.get_by_role("heading", name=re.compile("^Atom "))).to_be_visible()
        assert atom_id not in page.url


def test_models_and_a_models_tensors(
    page: Page, ui_server: str, held_models: dict[str, str]
) -> None:
    sign_in_by_keyboard(page, ui_server, held_models["acme"], "/ui/models")
    expect(page.locator("#models tbody tr")).to_have_count(3)
    check_accessibility(page)
    document(page, "models")
    page.locator("#models tbody a").first.click()
    expect(page.locator("#tensors tbody tr").first).to_be_visible()
    check_accessibility(page)
    document(page, "model")


def test_three_files_uploaded_reach_done_and_search_finds_them(
    page: Page, ui_server: str, issue_key: IssueKey, tmp_path: Path
) -> None:
    words = ("quayside", "breakwater", "seawall")
    for word in words:
        (tmp_path / f"{word}.txt").write_text(f"The {word} stood firm through the winter storm.")
    (tmp_path / "empty.txt").write_bytes(b"")  # fails: its reason is shown beside it
    sign_in_by_keyboard(page, ui_server, issue_key("acme", Role.USER), "/ui/ingest")
    check_accessibility(page)
    page.get_by_label("Files to upload").set_input_files(sorted(tmp_path.iterdir()))
    page.get_by_role("button", name="Upload and ingest").click()
    rows = page.locator("#upload-files tbody tr")
    expect(rows).to_have_count(4)
    for word in words:
        row = rows.filter(has_text=f"{word}.txt")
        expect(row.locator(".outcome")).to_have_text("done", timeout=30_000)
        expect(row.get_by_role("progressbar")).to_have_attribute("value", "100")
    failed = rows.filter(has_text="empty.txt")
    expect(failed.locator(".outcome")).to_have_text("failed")
    expect(failed.locator(".reason")).to_contain_text("empty file")
    expect(page.locator("#upload-status")).to_contain_text("completed_with_errors")
    check_accessibility(page)
    document(page, "ingest")
    # Listed first in the history without a reload, finished, and opens its page.
    job_url = page.locator("#upload-job").get_attribute("href")
    newest = page.locator("#history tbody tr").first
    expect(newest.get_by_role("link")).to_have_attribute("href", job_url or "no job link")
    expect(newest).to_contain_text("completed_with_errors")
    newest.get_by_role("link").click()
    expect(page.locator("#job-status")).to_have_text("completed_with_errors")
    page.goto(f"{ui_server}/ui/search?q=breakwater&mode=lexical")
    expect(page.locator("#results tbody tr").first).to_contain_text("breakwater.txt")


def test_search_by_an_example_image_and_sound_shows_thumbnails_and_a_player(
    page: Page, ui_server: str, issue_key: IssueKey, engine: Engine, tmp_path: Path
) -> None:
    token = issue_key("acme", Role.USER)
    held = held_media(engine, tmp_path / "held")
    probe = tmp_path / "probe.jpg"
    Image.open(held[1]).resize((90, 90)).save(probe, quality=85)
    sign_in_by_keyboard(page, ui_server, token, "/ui/search")
    page.get_by_label("Image or sound to look like").set_input_files(probe)
    page.get_by_role("button", name="Find like the example").click()
    first = page.locator("#results tbody tr").first
    expect(first).to_contain_text("image-1.png")
    thumbnail = first.get_by_role("img")
    expect(thumbnail).to_be_visible()
    # Decoded from the atom's bytes: the PNG's own width.
    assert thumbnail.evaluate("img => img.decode().then(() => img.naturalWidth)") == 120
    check_accessibility(page)
    document(page, "search-by-example")
    page.get_by_label("Image or sound to look like").set_input_files(
        tone(tmp_path / "louder.wav", 880, loudness=0.9)
    )
    page.get_by_role("button", name="Find like the example").click()
    player = page.locator("#results tbody tr").first.locator("audio[controls]")
    expect(player).to_have_attribute("aria-label", re.compile(r"tone-880\.wav$"))
    check_accessibility(page)


def test_a_holding_opened_from_search_is_released_after_confirmation(
    page: Page, ui_server: str, issue_key: IssueKey, engine: Engine, tmp_path: Path
) -> None:
    token = issue_key("acme", Role.USER)
    (tmp_path / "tides.txt").write_text("Neap tides follow the quarter moon.")
    ingest_paths(engine, IngestRequest(tenant_id="acme"), [tmp_path / "tides.txt"])
    sign_in_by_keyboard(page, ui_server, token, "/ui/search?q=neap+tides&mode=lexical")
    page.get_by_role("link", name=re.compile(r"^Holding of .*tides\.txt$")).first.click()
    expect(page.get_by_role("heading", name=re.compile("^Holding "))).to_be_visible()
    expect(page.locator("#holding-source")).to_contain_text("tides.txt")
    check_accessibility(page)
    document(page, "holding")
    page.get_by_role("button", name="Release this holding…").click()
    expect(page.get_by_role("heading", name="Confirm release")).to_be_visible()
    check_accessibility(page)
    page.get_by_role("button", name="Release for good").click()
    expect(page.get_by_role("status")).to_contain_text("was released")
    check_accessibility(page)


def test_inference_history_opens_an_inferences_explanation(
    page: Page, ui_server: str, issue_key: IssueKey, pipeline: Source
) -> None:
    token = issue_key("acme", Role.USER)
    done = acme_inference(pipeline)
    sign_in_by_keyboard(page, ui_server, token, "/ui/inference")
    check_accessibility(page)
    document(page, "inference-history")
    page.get_by_role("link", name=f"Inference {done.inference_id}").click()
    expect(page.locator("#inference-state")).to_have_text("completed")
    expect(page.locator("#inference-steps tbody tr")).to_have_count(2)
    check_accessibility(page)
    document(page, "inference")
