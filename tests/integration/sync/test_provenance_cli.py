"""`explain`, `lineage` and `streams show` as an operator runs them, over an inference whose
rows went through the real pipeline (CDC → broker → sync worker → ledger)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from tests.conftest import Cli
from tests.integration.inference_rows import InputRef, Step, insert_inference, rate
from tests.integration.sync.conftest import Source, drain

from hartonomous.config import Settings


def test_explain_lineage_and_streams_show(source: Source, cli: Cli, tmp_path: Path) -> None:
    source.tenant("acme", "alice")
    source.tenant("globex")
    job = source.ingest("acme", 1, tag="question")
    atom, holding = source.conn.execute(
        "SELECT atom_id, holding_id FROM holdings WHERE job_id = %s", (job,)
    ).fetchone() or (None, None)
    rows = insert_inference(
        source.conn,
        "acme",
        principal_id="alice",
        task="text_embedding",
        inputs=[InputRef("text", bytes(atom), holding)],
        outputs=[("embedding", b"\x00" * 16)],
        usage_units=Decimal("0.012"),
        steps=[Step("semantic_search", 3.5, 6, 3, "exact"), Step("run", 1.25, None, 1)],
    )
    rate(source.conn, rows, 5, "exactly right")
    source.capture()
    drain(source, Settings())

    explained = cli("--json", "explain", str(rows.inference_id), "--tenant", "acme")
    assert explained.exit_code == 0, explained.stderr
    body = json.loads(explained.stdout)
    ledger = source.conn.execute(
        "SELECT units, total_dcu, total_cost FROM billing_usage_ledger WHERE event_id = %s",
        (f"inference:acme:{rows.inference_id}",),
    ).fetchone()
    assert ledger is not None
    assert [body["cost"][k] for k in ("units", "total_dcu", "total_cost")] == [
        format(value, "f") for value in ledger
    ]
    assert (body["rating"], body["feedback"]) == (5, "exactly right")
    human = cli("explain", str(rows.inference_id), "--tenant", "acme")
    assert human.exit_code == 0, human.stderr
    assert f"{format(ledger[2], 'f')}" in human.stdout
    assert "file:///acme/" in human.stdout  # the input's source
    assert "rating     5  exactly right" in human.stdout
    # Each step with what it examined and returned ("-" for a count it does not keep).
    assert "step 1     semantic_search  3.5 ms  index exact  rows 6→3" in human.stdout
    assert "step 2     run  1.25 ms  rows -→1" in human.stdout

    lineage = cli(
        "lineage", rows.output_atoms["embedding"].hex(), "--up", "--json", "--tenant", "acme"
    )
    assert lineage.exit_code == 0, lineage.stderr
    nodes = {n["node_id"] for n in json.loads(lineage.stdout)["nodes"]}
    assert {f"inference:acme:{rows.inference_id}", f"atom:{bytes(atom).hex()}"} <= nodes
    neither = cli("lineage", str(rows.inference_id), "--tenant", "acme")
    assert neither.exit_code == 2
    assert "--up" in neither.stderr
    other = cli("lineage", str(rows.inference_id), "--down", "--tenant", "globex")
    assert other.exit_code != 0
    assert "not found" in other.stderr

    raw = tmp_path / "stream.bin"
    shown = cli("streams", "show", str(rows.stream_id), "--raw", str(raw), "--tenant", "acme")
    assert shown.exit_code == 0, shown.stderr
    assert raw.read_bytes() == rows.stream
    assert "Input" in shown.stdout
    assert "Telemetry" in shown.stdout
    missing = cli("streams", "show", str(rows.stream_id), "--tenant", "globex")
    assert missing.exit_code != 0
    assert "not found" in missing.stderr
