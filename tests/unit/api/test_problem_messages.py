"""What the HTTP API can say names request fields, never a CLI option (`--like`, `--since` …).

The services are shared by the CLI and the API, so an error message raised outside `cli/`
may reach an HTTP client as a problem's `detail`. Each `raise` outside the command-line-only
modules is read (its string parts, f-strings included), and one naming an option `--x` fails
the test: the message should say the concept, or the field's name (`since`, `source type`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import hartonomous

SOURCE = Path(hartonomous.__file__).resolve().parent
# Modules no HTTP request reaches: the commands themselves, and operator tools they alone run
# (backups and restores, the embedded server, shell access, sample seeding).
COMMAND_LINE_ONLY = ("cli/", "backup/", "db/embedded.py", "services/shell.py", "ops/")
_COMMAND = re.compile(r"`hartonomous [a-z-]+")
_OPTION = re.compile(r"(?<![\w-])--?[a-z][a-z-]*\b(?![\w-]*\.)")


def _raised_text(node: ast.Raise) -> str:
    if not isinstance(node.exc, ast.Call):
        return ""
    parts = [
        piece.value
        for argument in node.exc.args
        for piece in ast.walk(argument)
        if isinstance(piece, ast.Constant) and isinstance(piece.value, str)
    ]
    return "".join(parts)


def _options_in_raised_messages() -> list[str]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE).as_posix()
        if relative.startswith(COMMAND_LINE_ONLY):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise):
                text = _raised_text(node)
                options = [m for m in _OPTION.findall(text) if m.startswith("--")]
                # A command to run belongs in ``cli_hint``, which an HTTP answer never shows.
                options += _COMMAND.findall(text)
                if options:
                    found.append(f"{relative}:{node.lineno}: {options} in {text!r}")
    return found


def test_no_message_an_http_client_may_read_names_a_cli_option() -> None:
    assert _options_in_raised_messages() == []


def test_the_walk_finds_an_option_where_there_is_one() -> None:
    raised = ast.parse('raise SearchError(f"give a query or --like FILE, not {both}")')
    (node,) = [n for n in ast.walk(raised) if isinstance(n, ast.Raise)]
    assert _OPTION.findall(_raised_text(node)) == ["--like"]
    raised = ast.parse('raise UnavailableError(f"no key {name}: run `hartonomous db upgrade`")')
    (node,) = [n for n in ast.walk(raised) if isinstance(n, ast.Raise)]
    assert _COMMAND.findall(_raised_text(node)) == ["`hartonomous db"]


def test_a_problem_shows_control_characters_and_bidi_overrides_escaped() -> None:
    """A field name, a path or a detail quoting the request never carries a raw ESC, NUL or
    a right-to-left override to the reader's terminal (api/problems.py, ``printable``)."""
    from hartonomous.api.problems import printable

    assert printable("body.\x1b[31m") == "body.\\x1b[31m"
    assert printable("/v1/a\x00b\x85\u202ec\u2066") == "/v1/a\\x00b\\x85\\u202ec\\u2066"
    assert printable("caf\u00e9 \u65e5 'quoted'") == "caf\u00e9 \u65e5 'quoted'"
