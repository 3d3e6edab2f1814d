"""`graph status / repair / replay` and `sync --once` as an operator runs them."""

from __future__ import annotations

import json

from tests.conftest import Cli
from tests.integration.sync.conftest import Source


def test_graph_commands_report_lag_repair_and_refuse_replay_without_neo4j(
    source: Source, cli: Cli
) -> None:
    source.tenant("acme", "alice")
    source.ingest("acme", 2, principal_id="alice")
    source.capture()
    synced = cli("--json", "sync", "--once")
    assert synced.exit_code == 0, synced.stderr
    assert json.loads(synced.stdout)["billed"] == 2

    status = json.loads(cli("--json", "graph", "status").stdout)
    assert status["neo4j_projection"] == "off"
    assert status["graph_nodes"]["rows"] == 5
    # Projection off: nothing is projected, so no "unprojected" counts that would alarm.
    assert "unprojected" not in status["graph_nodes"]
    assert "unprojected" not in status["graph_edges"]
    assert status["change_capture"]["lag_bytes"] is not None
    text = cli("graph", "status").stdout
    assert "unprojected" not in text
    assert "None" not in text
    assert "change capture: slot lag" in text
    assert status["ledger_rows"] == 2
    assert status["counters"]["billed:neo4j_sync.ingest_completed"] == 2

    source.conn.execute("TRUNCATE graph_nodes, graph_edges")
    repaired = cli("--json", "graph", "repair", "--batch-size", "1")
    assert repaired.exit_code == 0, repaired.stderr
    assert json.loads(repaired.stdout)["rows"]["holdings"] == 2
    assert source.scalar("SELECT count(*) FROM graph_nodes") == 5

    replay = cli("graph", "replay", "--since", "yesterday")
    assert replay.exit_code == 2
    assert "graph replay needs [neo4j] uri" in replay.stderr
