"""Concurrent sync batches lock `graph_nodes` rows in one order (node id), so two workers whose
batches share nodes wait for each other instead of deadlocking; on real PostgreSQL."""

from __future__ import annotations

import threading
from itertools import pairwise
from typing import Any

import psycopg
import pytest
from tests.integration.sync.conftest import libpq, wait_until

from hartonomous.sync.graph import GraphEdge, GraphNode, GraphSegment, NodeRef
from hartonomous.sync.sql_graph import write_segment


def segment(ids: list[str], version: int) -> GraphSegment:
    """Nodes put in the order of ``ids`` (the order a batch's events brought them), with an
    edge between each neighbour pair, also in that order."""
    part = GraphSegment()
    for node_id in ids:
        part.put_node(GraphNode(NodeRef(node_id, "Atom"), "acme", {"v": version}), None)
    for left, right in pairwise(ids):
        part.put_edge(
            GraphEdge(
                f"{left}->{right}",
                "NEXT",
                NodeRef(left, "Atom"),
                NodeRef(right, "Atom"),
                "acme",
                {"v": version},
            ),
            None,
        )
    return part


def lockable(conn: psycopg.Connection[Any], table: str, key: str, value: str) -> bool:
    """Whether the row can be locked now (NOWAIT), released at once."""
    try:
        with conn.transaction():
            conn.execute(f"SELECT 1 FROM {table} WHERE {key} = %s FOR UPDATE NOWAIT", (value,))
    except psycopg.errors.LockNotAvailable:
        return False
    return True


@pytest.mark.parametrize(
    ("table", "key", "first", "last"),
    [
        ("graph_nodes", "node_id", "n-a", "n-z"),
        ("graph_edges", "edge_id", "n-a->n-z", "n-z->n-a"),
    ],
)
def test_a_batch_locks_shared_rows_in_key_order(
    database_url: str, table: str, key: str, first: str, last: str
) -> None:
    url = libpq(database_url)
    with (
        psycopg.connect(url, autocommit=True) as setup,
        psycopg.connect(url) as blocker,
        psycopg.connect(url) as writer,
    ):
        with setup.transaction():
            write_segment(setup, segment(["n-a", "n-z"], 1), projected=False)
            write_segment(setup, segment(["n-z", "n-a"], 1), projected=False)
        # Another worker's transaction holds the row first in key order.
        blocker.execute(f"UPDATE {table} SET properties = properties WHERE {key} = %s", (first,))
        pid = writer.info.backend_pid
        # This batch brought the rows last-first: written in that order, it would lock `last`
        # and then wait for `first` (and a worker holding `first` that wants `last` next would
        # deadlock with it).
        rows = ["n-z", "n-a"] if table == "graph_nodes" else ["n-z", "n-a", "n-z"]
        done = threading.Event()

        def write() -> None:
            write_segment(writer, segment(rows, 2), projected=False)
            writer.commit()
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        try:
            wait_until(
                lambda: (
                    setup.execute(
                        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                        (pid,),
                    ).fetchone()
                    == (True,)
                ),
                "the batch waits for the blocked row",
            )
            # Waiting on the first row in key order, it holds none of the later ones.
            assert lockable(setup, table, key, last)
        finally:
            blocker.rollback()
            thread.join(60)
        assert done.is_set()
