"""The sync worker (design §8): policy → throttle → handler → SQL graph, ledger, Neo4j."""
