"""The sync worker (docs/sync.md): policy → throttle → handler → SQL graph, ledger, Neo4j."""
