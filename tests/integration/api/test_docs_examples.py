"""Every ```sh example of docs/api.md runs, and succeeds, against a real `hartonomous up`.

The blocks of one section (`## ` heading) run in order in one bash process, so a block may use
the variables an earlier one set; each block runs under `set -euo pipefail` and must complete.
The server is `hartonomous up --port 0` on this test's database and data directory, with
`HARTONOMOUS_URL` and `HARTONOMOUS_KEY` (an admin key) exported to the examples.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import clean_environment
from tests.integration.test_up import RunningUp

from hartonomous.security.roles import Role

from .conftest import IssueKey

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


@pytest.fixture
def server(database_url: str, data_dir: Path) -> Iterator[RunningUp]:
    env = clean_environment()
    env["HARTONOMOUS_DATABASE__URL"] = database_url
    env["HARTONOMOUS_DATA_DIR"] = str(data_dir)
    up = RunningUp(env, data_dir)
    yield up
    assert up.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("section", SECTIONS, ids=[s.heading for s in SECTIONS])
def test_the_examples_of_a_section_run(
    section: Section, server: RunningUp, issue_key: IssueKey, data_dir: Path
) -> None:
    for tool in ("bash", "curl", "jq"):
        assert shutil.which(tool), f"{tool} is missing: `./dev setup` installs it"
    done = data_dir / "examples-done"
    script = ["set -euo pipefail"]
    for number, block in enumerate(section.blocks):
        script += [block, f"echo {number} >> {done}"]
    env = clean_environment()
    env["HARTONOMOUS_URL"] = server.url
    env["HARTONOMOUS_KEY"] = issue_key(tenant="docs", role=Role.ADMIN)
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=data_dir,
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
