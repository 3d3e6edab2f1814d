"""Writing atoms inside the caller's transaction, deduplicated against what is stored.

Leaf atoms (one chunk of bytes each) are written with COPY, and only those not yet stored are
sent: re-ingesting known content costs one look-up per batch, not its bytes. Every atom this
transaction relies on is locked `FOR KEY SHARE`, so a concurrent `atoms gc` cannot delete it
between the look-up and the commit (gc deletes with `FOR UPDATE SKIP LOCKED`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from psycopg import Connection as PgConnection
from sqlalchemy import Connection

from hartonomous.atoms.component_stream import Run, merge_runs
from hartonomous.db.array_param import BinaryArray
from hartonomous.storable import storable_json, storable_text

JsonObject = Mapping[str, object]


class AtomVanishedError(Exception):
    """An atom was collected between its look-up and its use; the unit of work is retried."""


@dataclass(frozen=True)
class LeafAtom:
    atom_id: bytes
    data: bytes | memoryview
    modality: str
    subtype: str
    canonical_text: str | None = None
    metadata: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class CompositeAtom:
    atom_id: bytes
    runs: Sequence[Run]
    size_bytes: int
    modality: str
    subtype: str
    metadata: JsonObject = field(default_factory=dict)


DESCRIBE = (
    "UPDATE atoms SET modality = %s, subtype = %s, metadata = %s "
    "WHERE atom_id = %s AND modality = 'binary' AND subtype IN ('chunk', 'span')"
)
BARE = ("binary", ("chunk", "span"))  # (modality, subtypes) of atoms `describe` may label


class AtomWriter:
    """Writes atoms on one connection; counts the payload bytes it actually stored."""

    def __init__(self, connection: Connection) -> None:
        self._pg = driver_connection(connection)
        self.new_bytes = 0
        self._known: set[bytes] = set()

    def put_leaves(self, leaves: Iterable[LeafAtom]) -> None:
        batch: dict[bytes, LeafAtom] = {}
        for leaf in leaves:
            if leaf.atom_id not in self._known:
                batch.setdefault(leaf.atom_id, leaf)
        if not batch:
            return
        missing = set(batch) - self._lock_existing(list(batch))
        if missing:
            self._copy_leaves([batch[atom_id] for atom_id in sorted(missing)])
        self._known.update(batch)

    def put_composite(self, atom: CompositeAtom) -> bool:
        """Store a composite atom and its runs unless it exists; True when it was new."""
        if atom.atom_id in self._known:
            return False
        runs = merge_runs(atom.runs)
        with self._pg.cursor() as cursor:
            cursor.execute(
                "INSERT INTO atoms (atom_id, kind, modality, subtype, size_bytes, metadata) "
                "VALUES (%s, 'composite', %s, %s, %s, %s) "
                "ON CONFLICT (atom_id) DO NOTHING RETURNING atom_id",
                (
                    atom.atom_id,
                    atom.modality,
                    atom.subtype,
                    atom.size_bytes,
                    json_text(atom.metadata),
                ),
            )
            created = cursor.fetchone() is not None
            if created:
                with cursor.copy(
                    "COPY atom_components (parent_atom_id, ordinal, child_atom_id, repeat) "
                    "FROM STDIN"
                ) as copy:
                    for ordinal, run in enumerate(runs):
                        copy.write_row((atom.atom_id, ordinal, run.child, run.repeat))
        if not created and not self._lock_existing([atom.atom_id]):
            raise AtomVanishedError(atom.atom_id.hex())
        self._known.add(atom.atom_id)
        return created

    def describe(self, atom_id: bytes, modality: str, subtype: str, metadata: JsonObject) -> None:
        """Label a bare chunk, or a bare span of chunks, with what it really is (a whole file).

        Labels only ever get more specific: an atom already described is left as it is.
        """
        with self._pg.cursor() as cursor:
            cursor.execute(DESCRIBE, (modality, subtype, json_text(metadata), atom_id))

    def _lock_existing(self, atom_ids: list[bytes]) -> set[bytes]:
        return lock_existing(self._pg, atom_ids)

    def _copy_leaves(self, leaves: Sequence[LeafAtom]) -> None:
        # A concurrent ingestion of the same new bytes makes one COPY fail on the primary key;
        # the caller retries the file, which then finds them stored.
        copy_atoms(self._pg, leaves, [])
        self.new_bytes += sum(len(leaf.data) for leaf in leaves)


def driver_connection(connection: Connection) -> PgConnection[tuple[bytes]]:
    """The psycopg connection under a SQLAlchemy one (COPY needs it)."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, PgConnection)
    return driver


def lock_existing(pg: PgConnection[tuple[bytes]], atom_ids: list[bytes]) -> set[bytes]:
    """Which of the atoms exist, each locked `FOR KEY SHARE` (in key order: no deadlock)."""
    with pg.cursor() as cursor:
        cursor.execute(
            "SELECT atom_id FROM atoms WHERE atom_id = ANY(%s) ORDER BY atom_id FOR KEY SHARE",
            (BinaryArray(atom_ids),),
        )
        return {bytes(atom_id) for (atom_id,) in cursor.fetchall()}


def copy_atoms(
    pg: PgConnection[tuple[bytes]],
    leaves: Sequence[LeafAtom],
    composites: Sequence[CompositeAtom],
) -> None:
    """COPY new atoms: their `atoms` rows, the leaves' payloads and the composites' runs.

    Every atom must be new (a stored one fails the COPY on the primary key) and every
    composite's children must be stored or among these.
    """
    with pg.cursor() as cursor:
        with cursor.copy(
            "COPY atoms (atom_id, kind, modality, subtype, size_bytes, canonical_text, "
            "metadata) FROM STDIN"
        ) as copy:
            for leaf in leaves:
                copy.write_row(
                    (
                        leaf.atom_id,
                        "leaf",
                        leaf.modality,
                        leaf.subtype,
                        len(leaf.data),
                        None if leaf.canonical_text is None else storable_text(leaf.canonical_text),
                        json_text(leaf.metadata),
                    )
                )
            for atom in composites:
                copy.write_row(
                    (
                        atom.atom_id,
                        "composite",
                        atom.modality,
                        atom.subtype,
                        atom.size_bytes,
                        None,
                        json_text(atom.metadata),
                    )
                )
        if leaves:
            # Binary COPY: payload bytes travel as they are, not hex-escaped.
            with cursor.copy(
                "COPY atom_payloads (atom_id, content) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["bytea", "bytea"])
                for leaf in leaves:
                    copy.write_row((leaf.atom_id, leaf.data))
        if composites:
            with cursor.copy(
                "COPY atom_components (parent_atom_id, ordinal, child_atom_id, repeat) FROM STDIN"
            ) as copy:
                for atom in composites:
                    for ordinal, run in enumerate(merge_runs(atom.runs)):
                        copy.write_row((atom.atom_id, ordinal, run.child, run.repeat))


def json_text(value: JsonObject) -> str:
    """A JSON object as the text `jsonb` stores (see hartonomous.storable)."""
    return json.dumps(storable_json(value), ensure_ascii=False, separators=(",", ":"))
