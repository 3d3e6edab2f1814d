"""Every `hartonomous` command starts without importing the web stack or the workers' libraries.

They take seconds to import; only `up` and `serve` (and the commands that run a model or read
the graph) need them, and import them when they run. The test suite runs the CLI in hundreds
of subprocesses, and operators wait for each start.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Loaded on first use only: the HTTP server and framework, the ONNX runtime, the Neo4j driver.
HEAVY = ("fastapi", "starlette", "uvicorn", "onnxruntime", "neo4j")

_IMPORTED = f"""
import json, sys
import hartonomous.cli.main
print(json.dumps(sorted(name for name in {HEAVY!r} if name in sys.modules)))
"""


def test_the_command_line_imports_no_heavy_library_at_start() -> None:
    # A fresh interpreter: this test process may have imported anything already.
    completed = subprocess.run(
        [sys.executable, "-c", _IMPORTED], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(completed.stdout) == [], (
        "import these inside the command that uses them (see cli/up_command.py)"
    )
