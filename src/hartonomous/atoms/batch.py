"""Atoms of many small files written together, in the caller's transaction.

`AtomBatch` takes the same calls as `AtomWriter` (`put_leaves`, `put_composite`, `describe`)
but only records them; `write` then stores all of them with one look-up (locking what exists
`FOR KEY SHARE`, in key order) and one COPY per table, whatever the number of files. Each atom
is owned by the first file that put it, so the bytes a file brought new can be told apart, and
a file that fails while being planned is `discard`ed without touching the others' atoms.

A conflict with a concurrent writer (the same new atom committed meanwhile) fails the COPY;
the caller rolls the batch back and stores its files one by one (docs/ingest.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

from sqlalchemy import Connection

from hartonomous.atoms.store import (
    BARE,
    DESCRIBE,
    CompositeAtom,
    JsonObject,
    LeafAtom,
    copy_atoms,
    driver_connection,
    json_text,
    lock_existing,
)

_Atom = TypeVar("_Atom", LeafAtom, CompositeAtom)


@dataclass(frozen=True)
class _Label:
    modality: str
    subtype: str
    metadata: JsonObject
    file: int


@dataclass(frozen=True)
class _Owner:
    file: int
    content: bool  # the file's own bytes, not what was derived from them


class AtomBatch:
    """Planned atoms of several files; `write` stores them and says what each file added."""

    def __init__(self) -> None:
        self._leaves: dict[bytes, LeafAtom] = {}
        self._composites: dict[bytes, CompositeAtom] = {}
        self._labels: dict[bytes, _Label] = {}
        self._owners: dict[bytes, _Owner] = {}
        self._file = 0
        self._content = True

    def start_file(self, file: int) -> None:
        """Attribute what is put next to `file` (its content until `start_derived`)."""
        self._file, self._content = file, True

    def start_derived(self) -> None:
        self._content = False

    def discard(self, file: int) -> None:
        """Forget every atom `file` was the first to put (it failed before being stored)."""
        for atom_id in [a for a, owner in self._owners.items() if owner.file == file]:
            del self._owners[atom_id]
            self._leaves.pop(atom_id, None)
            self._composites.pop(atom_id, None)
        for atom_id in [a for a, label in self._labels.items() if label.file == file]:
            del self._labels[atom_id]

    def put_leaves(self, leaves: Iterable[LeafAtom]) -> None:
        for leaf in leaves:
            if leaf.atom_id not in self._owners:
                self._leaves[leaf.atom_id] = leaf
                self._owners[leaf.atom_id] = _Owner(self._file, self._content)

    def put_composite(self, atom: CompositeAtom) -> bool:
        if atom.atom_id in self._owners:
            return False
        self._composites[atom.atom_id] = atom
        self._owners[atom.atom_id] = _Owner(self._file, self._content)
        return True

    def describe(self, atom_id: bytes, modality: str, subtype: str, metadata: JsonObject) -> None:
        self._labels.setdefault(atom_id, _Label(modality, subtype, metadata, self._file))

    def texts(self) -> dict[bytes, str]:
        """Canonical text of every text leaf planned (atom id -> text)."""
        return {
            atom_id: leaf.canonical_text
            for atom_id, leaf in self._leaves.items()
            if leaf.modality == "text" and leaf.canonical_text is not None
        }

    def write(self, connection: Connection) -> tuple[dict[int, int], dict[int, int]]:
        """Store everything; (new payload bytes, new bytes of own content) per file."""
        pg = driver_connection(connection)
        planned = sorted(self._owners)
        existing = lock_existing(pg, planned) if planned else set()
        leaves = [self._labelled(leaf) for a, leaf in self._leaves.items() if a not in existing]
        composites = [
            self._labelled(atom) for a, atom in self._composites.items() if a not in existing
        ]
        if leaves or composites:
            copy_atoms(pg, leaves, composites)
        relabel = [
            (label.modality, label.subtype, json_text(label.metadata), atom_id)
            for atom_id, label in self._labels.items()
            if atom_id in existing
        ]
        if relabel:
            with pg.cursor() as cursor:
                cursor.executemany(DESCRIBE, relabel)
        new: dict[int, int] = {}
        content: dict[int, int] = {}
        for leaf in leaves:
            owner = self._owners[leaf.atom_id]
            new[owner.file] = new.get(owner.file, 0) + len(leaf.data)
            if owner.content:
                content[owner.file] = content.get(owner.file, 0) + len(leaf.data)
        return new, content

    def _labelled(self, atom: _Atom) -> _Atom:
        label = self._labels.get(atom.atom_id)
        if label is None or atom.modality != BARE[0] or atom.subtype not in BARE[1]:
            return atom
        return replace(
            atom, modality=label.modality, subtype=label.subtype, metadata=label.metadata
        )
