"""Every command's `--help` shows its texts' `[section]` references as written.

Typer renders help with Rich, which reads `[backup]` as a markup tag and drops it ("Backup
directory (default:  directory)"); a reference to docs/configuration.md's sections must be
escaped (`\\[backup]`). This renders every command's help and looks for each one.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.testing import CliRunner

from hartonomous.cli.main import app

# `[section]` as the configuration docs name them, escaped or not (not `[OPTIONS]`).
_SECTION = re.compile(r"\\?\[([a-z_]+)\]")


def _commands(command: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    """Every command under ``command`` (Typer's vendored click objects), with its path."""
    found = [(path, command)]
    if hasattr(command, "commands"):
        for name, sub in sorted(command.commands.items()):
            found += _commands(sub, (*path, name))
    return found


def _sections(command: Any) -> set[str]:
    texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
    return {f"[{name}]" for text in texts for name in _SECTION.findall(text)}


def test_every_help_shows_its_section_references() -> None:
    runner = CliRunner()
    checked: list[str] = []
    lost: list[str] = []
    for path, command in _commands(typer.main.get_command(app), ()):
        sections = _sections(command)
        if not sections:
            continue
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
        assert result.exit_code == 0, (path, result.output)
        checked.append(" ".join(path))
        lost += [f"{' '.join(path)}: {s}" for s in sorted(sections) if s not in result.output]
    # At least these name a section: --backup-dir, serve --workers, ledger prune-receipts.
    assert {"backup list", "serve", "ledger prune-receipts"} <= set(checked), checked
    assert lost == [], "escape `[` as `\\[` in help texts (Rich markup): " + ", ".join(lost)
