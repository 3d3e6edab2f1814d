"""One-time flashes (ui/flashes.py): taken once, by their session only, not past their life."""

from __future__ import annotations

from hartonomous.ui.flashes import FLASH_SECONDS, FlashBox
from hartonomous.ui.sessions import Session

MINE = Session("k1", "acme", "csrf-mine")
THEIRS = Session("k2", "acme", "csrf-theirs")


def test_a_flash_is_taken_once_and_by_its_own_session_only() -> None:
    box = FlashBox(clock=lambda: 0.0)
    flash = box.put(MINE, "secret")
    assert box.take(THEIRS, flash) is None
    assert box.take(MINE, flash) == "secret"
    assert box.take(MINE, flash) is None
    assert box.take(MINE, None) is None


def test_an_expired_flash_is_not_shown() -> None:
    now = [0.0]
    box = FlashBox(clock=lambda: now[0])
    flash = box.put(MINE, "secret")
    now[0] = FLASH_SECONDS + 1
    assert box.take(MINE, flash) is None
