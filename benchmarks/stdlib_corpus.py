"""A real English corpus every machine has: the running Python's standard library documentation.

Paragraphs (split at blank lines, whitespace collapsed, at least 25 characters and 4 words,
each kept once) of: the docstrings of every module, class and function in the standard
library's source files (read with `ast`, nothing imported), the docstrings of its C modules and
their members (built-in and `lib-dynload` modules, imported: they have no import side
effects), and the reference manual's topics in `pydoc_data.topics`. Python 3.11 gives ~20,900.

Vectors (all-MiniLM-L6-v2, the project's text model) are computed once and cached on disk,
keyed by the corpus's SHA-256, so reruns are quick.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import os
import re
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Corpus:
    paragraphs: list[str]
    sources: list[str]
    """For each paragraph: `docstring` or `topic` (the reference manual)."""

    @property
    def digest(self) -> str:
        return hashlib.sha256("\0".join(self.paragraphs).encode()).hexdigest()


class _Collector:
    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self.sources: list[str] = []
        self._seen: set[str] = set()

    def add(self, text: str, source: str) -> None:
        for raw in _PARAGRAPH_BREAK.split(text):
            paragraph = " ".join(raw.split())
            if len(paragraph) < 25 or len(paragraph.split()) < 4 or paragraph in self._seen:
                continue
            self._seen.add(paragraph)
            self.paragraphs.append(paragraph)
            self.sources.append(source)


def stdlib_corpus() -> Corpus:
    collector = _Collector()
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] in ("site-packages", "dist-packages"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few files are deliberately broken (test data)
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                docstring = ast.get_docstring(node)
                if docstring:
                    collector.add(docstring, "docstring")
    for name in _c_modules():
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        _add_member_docs(collector, module)
    from pydoc_data.topics import topics

    for _, topic in sorted(topics.items()):
        collector.add(topic, "topic")
    return Corpus(collector.paragraphs, collector.sources)


def _c_modules() -> list[str]:
    dynload = Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload"
    names = set(sys.builtin_module_names) | {p.name.split(".")[0] for p in dynload.glob("*.so")}
    return sorted(name for name in names if "test" not in name)


def _add_member_docs(collector: _Collector, module: object) -> None:
    if isinstance(module.__doc__, str):
        collector.add(module.__doc__, "docstring")
    for _, member in sorted(vars(module).items()):
        doc = getattr(member, "__doc__", None)
        if isinstance(doc, str) and (inspect.isclass(member) or callable(member)):
            collector.add(doc, "docstring")
        if inspect.isclass(member):
            for _, attribute in sorted(vars(member).items()):
                attribute_doc = getattr(attribute, "__doc__", None)
                if isinstance(attribute_doc, str):
                    collector.add(attribute_doc, "docstring")


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hartonomous" / "benchmarks"


def corpus_vectors(corpus: Corpus) -> npt.NDArray[np.float32]:
    """The corpus's MiniLM vectors, (n, 384) float32, from the cache or computed once."""
    path = cache_dir() / f"stdlib-minilm-{corpus.digest[:16]}.npy"
    if path.exists():
        vectors: npt.NDArray[np.float32] = np.load(path)
        print(f"vectors: cached in {path}")
        return vectors
    from hartonomous.embed.indexing import shared_text_embedder

    started = time.perf_counter()
    vectors = shared_text_embedder().embed(corpus.paragraphs, batch_size=64)
    print(f"vectors: {len(vectors)} embedded in {time.perf_counter() - started:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


if __name__ == "__main__":
    corpus = stdlib_corpus()
    print(f"{len(corpus.paragraphs)} paragraphs, sha256 {corpus.digest[:16]}")
    corpus_vectors(corpus)
