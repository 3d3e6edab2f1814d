"""Ingestion: per-modality extractors, model readers and ingestion jobs."""
