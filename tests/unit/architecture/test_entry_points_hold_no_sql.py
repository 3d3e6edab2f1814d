"""Entry points (`cli/`, `api/`, `ui/`) call application services and hold no SQL
(docs/architecture.md).

Neither imports SQLAlchemy or psycopg, lazily or not: a query in a command or a route is a use
case the other entry points cannot share.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hartonomous

ROOT = Path(hartonomous.__file__).parent
DRIVERS = ("sqlalchemy", "psycopg", "psycopg_pool")
ENTRY_POINTS = ("cli", "api", "ui")

# Files still carrying SQL while issue 12 moves it into services; the list only shrinks.
NOT_YET_MOVED = {}


def _driver_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        found += [name for name in names if name.split(".")[0] in DRIVERS]
    return found


def test_cli_and_api_import_no_database_driver() -> None:
    offenders = {}
    for package in ENTRY_POINTS:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            imports = _driver_imports(path)
            if imports and relative not in NOT_YET_MOVED:
                offenders[relative] = imports
    assert offenders == {}


def test_the_not_yet_moved_list_names_only_files_that_still_need_it() -> None:
    stale = sorted(name for name in NOT_YET_MOVED if not _driver_imports(ROOT / name))
    assert stale == []
