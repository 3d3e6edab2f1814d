"""The test Neo4j server is a real Neo4j 5: Bolt, Cypher, schema constraints. (Its clean stop:
tests/integration/graph/test_graph_backup.py, which stops the session's server.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from neo4j import Driver, GraphDatabase
from neo4j.exceptions import ConstraintError

LABEL = "Neo4jServerSmoke"
CONSTRAINT = "neo4j_server_smoke_key"


@pytest.fixture
def driver(neo4j_uri: str) -> Iterator[Driver]:
    with GraphDatabase.driver(neo4j_uri, auth=None) as driver:
        yield driver
        # The server is shared by the session: leave nothing behind for other tests.
        driver.execute_query(f"MATCH (n:{LABEL}) DETACH DELETE n")
        driver.execute_query(f"DROP CONSTRAINT {CONSTRAINT} IF EXISTS")


def test_server_reports_neo4j_5(driver: Driver) -> None:
    assert driver.get_server_info().agent.startswith("Neo4j/5.")
    records, _, _ = driver.execute_query(
        "CALL dbms.components() YIELD name, versions RETURN name, versions[0] AS version"
    )
    assert records[0]["name"] == "Neo4j Kernel"
    assert records[0]["version"].startswith("5.")


def test_merge_under_a_uniqueness_constraint(driver: Driver) -> None:
    driver.execute_query(
        f"CREATE CONSTRAINT {CONSTRAINT} IF NOT EXISTS FOR (n:{LABEL}) REQUIRE n.key IS UNIQUE"
    )
    for key in ["alpha", "beta", "alpha"]:
        driver.execute_query(f"MERGE (:{LABEL} {{key: $key}})", key=key)
    driver.execute_query(
        f"MATCH (a:{LABEL} {{key: 'alpha'}}), (b:{LABEL} {{key: 'beta'}}) "
        "MERGE (a)-[:DERIVED_FROM]->(b)"
    )

    records, _, _ = driver.execute_query(
        f"MATCH (n:{LABEL}) OPTIONAL MATCH (n)-[r:DERIVED_FROM]->(m) "
        "RETURN n.key AS key, m.key AS source ORDER BY key"
    )
    assert [(r["key"], r["source"]) for r in records] == [("alpha", "beta"), ("beta", None)]

    constraints, _, _ = driver.execute_query(
        "SHOW CONSTRAINTS YIELD name, type WHERE name = $name RETURN type", name=CONSTRAINT
    )
    assert [c["type"] for c in constraints] == ["UNIQUENESS"]
    with pytest.raises(ConstraintError):
        driver.execute_query(f"CREATE (:{LABEL} {{key: 'alpha'}})")
