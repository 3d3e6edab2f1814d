"""The torch-free all-MiniLM-L6-v2 embedder against sentence-transformers' reference vectors."""

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from hartonomous.embed import MINILM_SPACE, MiniLMTextEmbedder, TextModelError

FIXTURES = Path(__file__).parents[2] / "data" / "minilm"
# Long enough to pass the 256 word-piece window several times over.
LONG_TEXT = "The quick brown fox jumps over the lazy dog near the riverbank. " * 60


@pytest.fixture(scope="module")
def embedder() -> MiniLMTextEmbedder:
    model = MiniLMTextEmbedder()
    model.load()
    return model


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    loaded: list[str] = json.loads((FIXTURES / "sentences.json").read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def reference() -> npt.NDArray[np.float32]:
    loaded: npt.NDArray[np.float32] = np.load(FIXTURES / "reference_embeddings.npy")
    return loaded


def test_matches_sentence_transformers_reference(
    embedder: MiniLMTextEmbedder,
    sentences: list[str],
    reference: npt.NDArray[np.float32],
) -> None:
    vectors = embedder.embed(sentences)

    assert vectors.shape == (len(sentences), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(vectors * reference, axis=1)  # both sides have unit rows
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= 0.999, f"sentence {worst}: cosine {cosines[worst]:.6f}"


def test_order_is_preserved_under_length_bucketing(
    embedder: MiniLMTextEmbedder,
    sentences: list[str],
    reference: npt.NDArray[np.float32],
) -> None:
    # Interleave the longest and shortest texts so that sorting by length must move every one.
    by_length = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    order = [i for pair in zip(by_length, reversed(by_length), strict=True) for i in pair][:50]

    vectors = embedder.embed([sentences[i] for i in order], batch_size=8)

    cosines = np.sum(vectors * reference[order], axis=1)
    assert np.all(cosines >= 0.999)


def test_result_does_not_depend_on_batch_size(
    embedder: MiniLMTextEmbedder, sentences: list[str]
) -> None:
    texts = sentences[:40]
    one_at_a_time = embedder.embed(texts, batch_size=1)

    for batch_size in (3, 32, 64):
        np.testing.assert_allclose(
            embedder.embed(texts, batch_size=batch_size), one_at_a_time, atol=1e-5
        )


def test_long_text_is_truncated_and_reported(embedder: MiniLMTextEmbedder) -> None:
    result = embedder.encode(["A short sentence.", LONG_TEXT])

    assert result.max_tokens == embedder.max_tokens == 256
    assert result.truncated == (False, True)
    assert result.token_counts[0] < 256 < result.token_counts[1]
    # Whatever follows the window is not seen: more text after it leaves the vector unchanged.
    extended = embedder.embed([LONG_TEXT + " Completely different closing words about finance."])
    np.testing.assert_allclose(extended[0], result.vectors[1], atol=1e-5)


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_text_with_nothing_to_embed_is_rejected(embedder: MiniLMTextEmbedder, blank: str) -> None:
    with pytest.raises(ValueError, match=r"nothing to embed.*index 1"):
        embedder.embed(["fine", blank])


def test_no_texts_give_no_vectors(embedder: MiniLMTextEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 384)


def test_a_single_string_is_refused_rather_than_split_into_characters(
    embedder: MiniLMTextEmbedder,
) -> None:
    with pytest.raises(TypeError, match="not one string"):
        embedder.embed("a sentence")


def test_space_and_dimension_are_known_without_loading() -> None:
    model = MiniLMTextEmbedder()

    assert model.space == MINILM_SPACE == "minilm-l6-v2"
    assert model.dimension == 384


def test_folder_without_model_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TextModelError, match="unreadable model configuration"):
        MiniLMTextEmbedder(model_dir=tmp_path).load()
