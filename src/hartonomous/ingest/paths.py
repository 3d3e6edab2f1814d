"""Turning the paths an operator gives into the files to ingest, safely.

Folders are walked recursively in name order. A symbolic link is followed only when it resolves
inside one of the given roots; a link that loops or leads outside becomes a failed entry with
that reason, as does a path that does not exist. Each real folder is walked once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Candidate:
    path: Path
    error: str | None = None


def expand_paths(paths: Sequence[Path]) -> list[Candidate]:
    roots = [path.resolve() for path in paths if path.exists()]
    visited: set[Path] = set()
    candidates: list[Candidate] = []
    for path in paths:
        if not path.exists() and not path.is_symlink():
            candidates.append(Candidate(path, "does not exist"))
            continue
        candidates.extend(_walk(path, roots, visited))
    return candidates


def _walk(path: Path, roots: list[Path], visited: set[Path]) -> Iterator[Candidate]:
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except RuntimeError:
            yield Candidate(path, "symlink loop")
            return
        except OSError as exc:
            reason = "symlink loop" if exc.errno == 40 else f"broken symlink ({exc.strerror})"
            yield Candidate(path, reason)
            return
        if not any(target == root or target.is_relative_to(root) for root in roots):
            yield Candidate(path, f"symlink leads outside the given roots (to {target})")
            return
    if not path.is_dir():
        yield Candidate(path)
        return
    real = path.resolve()
    if real in visited:
        return
    visited.add(real)
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError as exc:
        yield Candidate(path, f"cannot list folder: {exc.strerror}")
        return
    for entry in entries:
        yield from _walk(Path(entry.path), roots, visited)


def named_as(message: str, path: Path, name: str) -> str:
    """``message`` with ``path`` (as given, and resolved) written as ``name``.

    Parsers quote the path they opened (Pillow: "cannot identify image file '<path>'"); for an
    upload that is the server's spool path, which is not the caller's business: every reason
    and message about a file names it as its owner gave it (docs/ingest.md)."""
    # os.path.realpath, not Path.resolve: a symlink loop is a file's failure to report, and
    # resolve raises on one (RuntimeError) where realpath returns what it reached.
    for shown in dict.fromkeys((str(path), str(path.absolute()), os.path.realpath(path))):
        message = message.replace(shown, name)
    return message
