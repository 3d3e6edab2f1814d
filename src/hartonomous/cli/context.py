"""What every command shares: global options, settings, and how results are printed."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import typer

from hartonomous.config import Settings, load_settings
from hartonomous.instants import rfc3339
from hartonomous.observability import configure_logging
from hartonomous.observability.tracing import configure_tracing
from hartonomous.storable import storable_text

# C0 controls, DEL and C1 controls: bytes a terminal acts on (ANSI escapes, line breaks).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(value: object) -> str:
    """``value`` as text safe to print on a terminal: control characters escaped.

    ESC becomes the four characters ``\\x1b``, a line break ``\\n`` (``\\r``, ``\\t`` likewise),
    and undecodable bytes ``\\xNN`` (``storable_text``), so a file name or other user-supplied
    text can neither drive the terminal nor split an output line. --json output needs none of
    this: JSON escapes control characters itself.
    """
    return _CONTROL.sub(_escaped, storable_text(str(value)))


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char, f"\\x{ord(char):02x}")


@dataclass
class CliContext:
    config_file: Path | None
    data_dir: Path | None
    as_json: bool
    log_level: str | None
    _settings: Settings | None = field(default=None, init=False)

    def settings(self) -> Settings:
        if self._settings is None:
            overrides: dict[str, Any] = {}
            if self.data_dir is not None:
                overrides["data_dir"] = self.data_dir
            settings = load_settings(self.config_file, overrides)
            if self.log_level is not None:
                settings.logging.level = self.log_level  # type: ignore[assignment]
            configure_logging(settings.logging.level, settings.logging.format)
            configure_tracing(settings.telemetry)  # nothing unless an OTLP endpoint is set
            self._settings = settings
        return self._settings

    def emit(self, data: Any, human: str) -> None:
        """Print the result: JSON with --json, the human rendering otherwise."""
        if self.as_json:
            sys.stdout.write(json.dumps(data, default=json_value) + "\n")
        else:
            sys.stdout.write(human.rstrip("\n") + "\n")
        sys.stdout.flush()


def json_value(value: object) -> str:
    """How ``--json`` writes what JSON has no type for: instants as the HTTP API does
    (RFC 3339, UTC, ``Z``: `hartonomous.instants.rfc3339`), dates as ISO 8601, the rest as
    ``str``."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def cli_context(ctx: typer.Context) -> CliContext:
    state = ctx.find_root().obj
    assert isinstance(state, CliContext)
    return state
