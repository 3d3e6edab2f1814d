"""The space registry agrees with the table metadata, the migration and the text model."""

from __future__ import annotations

import importlib

import pytest

from hartonomous.db.tables.embeddings import SPACE_DIMENSIONS
from hartonomous.embed.spaces import SPACES, UnknownSpaceError, get_space, space_for_modality
from hartonomous.embed.text_model import MINILM_SPACE, MiniLMTextEmbedder


def test_registry_metadata_and_migration_agree() -> None:
    migration = importlib.import_module("hartonomous.db.migrations.versions.0006_embeddings_search")
    registered = [(s.name, s.dimension, s.modality, s.description) for s in SPACES]
    assert registered == list(migration.SPACES)
    assert [(s.name, s.dimension) for s in SPACES] == list(SPACE_DIMENSIONS)


def test_text_space_is_the_models() -> None:
    space = get_space(MINILM_SPACE)
    assert (space.dimension, space.modality) == (MiniLMTextEmbedder.dimension, "text")
    assert space_for_modality("image") is get_space("image-features-v1")
    assert space_for_modality("model") is None


def test_unknown_space_names_the_known_ones() -> None:
    with pytest.raises(UnknownSpaceError, match=r"'nope'.*minilm-l6-v2"):
        get_space("nope")
