"""Semantic search over pgvector: per-space HNSW, exact scans for small scopes, tenant filters."""
