"""Every ```sh example of docs/api.md runs, and succeeds, against a real `hartonomous up`.

The blocks of one section (`## ` heading) run in order in one bash process, so a block may use
the variables an earlier one set; each block runs under `set -euo pipefail` and must complete.
The server is one `hartonomous up --port 0` for the module, on a database and data directory of
its own, with `HK_URL` and `HK_KEY` (an admin key) exported to the examples;
sections run in the doc's order and may see what earlier ones left.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, update
from tests.conftest import TEMPLATE_DATABASE, PostgresCluster, clean_environment
from tests.integration.test_up import RunningUp

from hartonomous.db.tables import principals
from hartonomous.security import create_api_key, ensure_principal, ensure_tenant
from hartonomous.security.roles import Role

DOCS = Path(__file__).resolve().parents[3] / "docs" / "api.md"
BLOCK_TIMEOUT_SECONDS = 120  # a hang guard for a shared machine, not a performance claim
_FENCE = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Section:
    heading: str
    blocks: tuple[str, ...]


def _sections(text: str) -> list[Section]:
    """The sections of ``text`` that hold ```sh blocks, in order (the preamble is "intro")."""
    sections: list[Section] = []
    for number, chunk in enumerate(re.split(r"^## ", text, flags=re.MULTILINE)):
        heading = "intro" if number == 0 else chunk.splitlines()[0].strip()
        blocks = tuple(_FENCE.findall(chunk))
        if blocks:
            sections.append(Section(heading, blocks))
    return sections


SECTIONS = _sections(DOCS.read_text(encoding="utf-8"))


def test_every_sh_block_of_the_doc_is_collected() -> None:
    text = DOCS.read_text(encoding="utf-8")
    # A fence written differently (```bash, ``` sh, unclosed) would otherwise be skipped quietly.
    opened = len(re.findall(r"^```\s*(sh|bash|shell|console)\b", text, flags=re.MULTILINE))
    assert sum(len(section.blocks) for section in SECTIONS) == opened
    assert {"Authentication", "Errors", "Request ids"} <= {s.heading for s in SECTIONS}


@dataclass(frozen=True)
class DocsServer:
    up: RunningUp
    admin_key: str


@pytest.fixture(scope="module")
def docs_server(postgres_cluster: PostgresCluster, data_root: Path) -> Iterator[DocsServer]:
    """One `up` for every section (each start costs seconds), on a database of its own."""
    database = postgres_cluster.create_database(TEMPLATE_DATABASE)
    database_url = postgres_cluster.url(database)
    engine = create_engine(database_url)
    data_dir = Path(tempfile.mkdtemp(prefix="docs-", dir=data_root))
    env = clean_environment()
    env["HARTONOMOUS_DATABASE__URL"] = database_url
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    try:
        up = RunningUp(env, data_dir)
        try:
            yield DocsServer(up, _admin_key(engine))
        finally:
            assert up.stop(signal.SIGTERM) == 0
    finally:
        engine.dispose()
        postgres_cluster.drop_database(database)


def _admin_key(engine: Engine) -> str:
    with engine.begin() as connection:
        ensure_tenant(connection, "docs", "Documentation examples")
        ensure_principal(connection, "docs", "docs-admin", "Examples' administrator", "user")
        connection.execute(
            update(principals)
            .where(principals.c.tenant_id == "docs", principals.c.principal_id == "docs-admin")
            .values(role=Role.ADMIN.value)
        )
        return create_api_key(connection, "docs", "docs-admin", "docs examples")


@pytest.mark.parametrize("section", SECTIONS, ids=[s.heading for s in SECTIONS])
def test_the_examples_of_a_section_run(
    section: Section, docs_server: DocsServer, tmp_path: Path
) -> None:
    for tool in ("bash", "curl", "jq"):
        assert shutil.which(tool), f"{tool} is missing: `./dev setup` installs it"
    done = tmp_path / "examples-done"
    script = ["set -euo pipefail"]
    for number, block in enumerate(section.blocks):
        script += [block, f"echo {number} >> {done}"]
    env = clean_environment()
    env["HK_URL"] = docs_server.up.url
    env["HK_KEY"] = docs_server.admin_key
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=BLOCK_TIMEOUT_SECONDS * len(section.blocks),
        check=False,
    )
    completed = done.read_text().split() if done.exists() else []
    failed = len(completed)
    every_block_ran = result.returncode == 0 and failed == len(section.blocks)
    assert every_block_ran, (
        f"block {failed + 1} of {len(section.blocks)} in section {section.heading!r} failed "
        f"(exit {result.returncode}):\n{section.blocks[min(failed, len(section.blocks) - 1)]}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
