"""`sync pause` / `sync resume`: the operator's flag every sync process honours.

The flag is ``sync_control`` (``messaging.pause``); the CES consumer and the sync worker read
it on every turn, whichever process runs them (docs/operations.md, "Pausing sync").
"""

from __future__ import annotations

from dataclasses import dataclass

from hartonomous.messaging.broker import Broker
from hartonomous.messaging.pause import SyncPause, SyncPausedError, read_pause, set_pause
from hartonomous.services.platform import Platform
from hartonomous.services.sessions import driver_session

__all__ = ["PauseChange", "pause_sync", "require_running", "resume_sync", "sync_pause"]


@dataclass(frozen=True)
class PauseChange:
    state: SyncPause
    changed: bool  # False: it already was in that state


def pause_sync(platform: Platform, *, by: str, reason: str | None = None) -> PauseChange:
    """Pause every sync process; an already paused sync keeps its first pause's details."""
    with driver_session(platform) as connection:
        state, changed = set_pause(connection, True, by=by, reason=reason)
    return PauseChange(state, changed)


def resume_sync(platform: Platform) -> PauseChange:
    """Resume every sync process (idle sync workers are woken through the broker's NOTIFY)."""
    channel = Broker(platform.settings.message_broker).channel
    with driver_session(platform) as connection:
        state, changed = set_pause(connection, False, channel=channel)
    return PauseChange(state, changed)


def sync_pause(platform: Platform) -> SyncPause:
    """The flag as stored."""
    with driver_session(platform) as connection:
        return read_pause(connection)


def require_running(platform: Platform) -> None:
    """Raise ``SyncPausedError`` when sync is paused (a one-off run must not bypass a pause)."""
    state = sync_pause(platform)
    if state.paused:
        paused = SyncPausedError(f"{state.describe()}; resuming sync lets it run")
        paused.cli_hint = "`hartonomous sync resume`"  # the CLI says it; an HTTP answer does not
        raise paused
