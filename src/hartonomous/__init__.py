"""Hartonomous: PostgreSQL as a multimodal AI store with provenance."""

__version__ = "0.1.0"
