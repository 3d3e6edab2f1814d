"""Search by an example image or sound in the admin UI (in-process): the nearest atoms first,
their thumbnails and sounds served with their media type from the atoms' exact bytes, the
tenant's only; a refused example or option named beside its field; CSRF refused."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine
from tests.integration.api.conftest import IssueKey

from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.security.roles import Role

from .conftest import csrf_of, sign_in

_THUMBNAIL = re.compile(r'<img class="thumbnail" src="(/ui/atoms/[0-9a-f]{64}/media)"')
_PLAYER = re.compile(r'<audio controls preload="none" src="(/ui/atoms/[0-9a-f]{64}/media)"')


def image(path: Path, seed: int, side: int = 120) -> Path:
    """A smooth random PNG (tests/integration/search/test_search_media_and_policy.py)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    Image.fromarray(base).resize((side, side), Image.Resampling.BICUBIC).save(path)
    return path


def tone(path: Path, hertz: float, loudness: float = 0.3, rate: int = 16000) -> Path:
    soundfile.write(path, loudness * np.sin(2 * np.pi * hertz * np.arange(rate) / rate), rate)
    return path


def held_media(engine: Engine, folder: Path) -> list[Path]:
    """Three images, two tones and a text file held by acme."""
    folder.mkdir()
    files = [image(folder / f"image-{seed}.png", seed) for seed in range(3)]
    files += [tone(folder / f"tone-{hz}.wav", hz) for hz in (220, 880)]
    (folder / "note.txt").write_text("A note about harbours.")
    ingest_paths(engine, IngestRequest(tenant_id="acme"), [*files, folder / "note.txt"])
    return files


def _search(client: TestClient, example: Path | None, **fields: str) -> tuple[int, str]:
    page = client.get("/ui/search").text
    data = {"csrf_token": csrf_of(page), **fields}
    files = {"example": (example.name, example.read_bytes()) if example else ("", b"")}
    answer = client.post("/ui/search/by-example", data=data, files=files)
    return answer.status_code, answer.text


def test_an_example_finds_its_nearest_with_thumbnails_and_players_the_tenants_only(
    client: TestClient, issue_key: IssueKey, engine: Engine, tmp_path: Path
) -> None:
    sign_in(client, issue_key("acme", Role.USER))  # acme exists from here
    held = held_media(engine, tmp_path / "held")
    probe = tmp_path / "probe.jpg"
    Image.open(held[1]).resize((90, 90)).save(probe, quality=85)
    status, page = _search(client, probe, k="3", modality="image")
    assert status == 200, page
    first = page.split("<tbody>")[1].split("</tr>")[0]
    assert "image-1.png" in first
    thumbnails = _THUMBNAIL.findall(page)
    assert len(thumbnails) == 3
    shown = client.get(thumbnails[0])
    assert shown.headers["content-type"] == "image/png"
    assert shown.content == held[1].read_bytes()  # the atom's exact bytes

    louder = tone(tmp_path / "louder.wav", 880, loudness=0.9)
    status, page = _search(client, louder, k="2", mode="hybrid")
    assert status == 200, page
    players = _PLAYER.findall(page)
    assert len(players) == 2
    played = client.get(players[0])
    assert played.headers["content-type"] == "audio/wav"
    assert played.content == held[4].read_bytes()  # tone-880.wav first

    # A text atom has no preview; another tenant sees none of acme's media.
    text_hit = client.get("/ui/search", params={"q": "harbours", "mode": "lexical"}).text
    text_atom = re.search(r'href="/ui/atoms/([0-9a-f]{64})"', text_hit)
    assert text_atom
    assert client.get(f"/ui/atoms/{text_atom.group(1)}/media").status_code == 404
    stranger = TestClient(client.app)
    sign_in(stranger, issue_key("globex", Role.USER))
    assert stranger.get(thumbnails[0]).status_code == 404
    status, page = _search(stranger, probe, k="3")
    assert (status, _THUMBNAIL.findall(page)) == (200, [])


def test_a_refused_example_or_option_is_named_beside_its_field(
    client: TestClient, issue_key: IssueKey, tmp_path: Path
) -> None:
    sign_in(client, issue_key("acme", Role.USER))
    note = tmp_path / "note.txt"
    note.write_text("not a picture")
    probe = image(tmp_path / "probe.png", 7)
    cases = [
        (note, {}, "example", "takes an image or an audio file"),
        (None, {}, "example", "no file was chosen"),  # as a browser sends an empty input
        (probe, {"k": "0"}, "example_k", "1"),
        (probe, {"k": "many"}, "example_k", "whole number"),
        (probe, {"mode": "lexical"}, "example_mode", "semantic or hybrid"),
        (probe, {"modality": "smell"}, "example_modality", "smell"),
    ]
    for example, fields, field, says in cases:
        status, page = _search(client, example, **fields)
        assert status == 400, (fields, page)
        beside = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', page)
        assert beside, (field, page)
        assert says in beside.group(1)
        assert f'aria-describedby="{field}-error"' in page
    forged = client.post(
        "/ui/search/by-example",
        data={"csrf_token": "forged"},
        files={"example": ("probe.png", probe.read_bytes())},
    )
    assert forged.status_code == 403
    assert "CSRF" in forged.text
