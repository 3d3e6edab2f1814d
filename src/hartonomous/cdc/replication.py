"""The publication and logical replication slot the CES consumer reads (created at run time).

The captured tables come from the table metadata (`info={"cdc_captured": True}`), so a table
added by a later migration joins the publication the next time the consumer prepares.
Neither object can live in a migration: their names are settings, and a logical slot cannot
be created in a transaction that has written anything (which a migration always has).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, computed_field
from sqlalchemy import Engine

from hartonomous.config.sections import CdcSettings
from hartonomous.db.tables import metadata
from hartonomous.errors import ConflictError
from hartonomous.messaging.broker import Connection

CAPTURED_FLAG = "cdc_captured"


def captured_tables() -> list[str]:
    """Tables whose metadata asks for change capture, in a stable order."""
    return sorted(name for name, table in metadata.tables.items() if table.info.get(CAPTURED_FLAG))


def _existing(connection: Connection, tables: list[str]) -> list[str]:
    rows = connection.execute(
        "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NOT NULL", (tables,)
    ).fetchall()
    return sorted(str(row[0]) for row in rows)


def published_tables(connection: Connection, publication: str) -> list[str] | None:
    """The publication's tables, or None when it does not exist."""
    exists = connection.execute(
        "SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)
    ).fetchone()
    if exists is None:
        return None
    rows = connection.execute(
        "SELECT CASE WHEN schemaname = 'public' THEN tablename "
        "ELSE schemaname || '.' || tablename END FROM pg_publication_tables WHERE pubname = %s",
        (publication,),
    ).fetchall()
    return sorted(str(row[0]) for row in rows)


def ensure_publication(connection: Connection, publication: str) -> list[str]:
    """Create the publication or bring its table list in line with the metadata."""
    wanted = _existing(connection, captured_tables())
    current = published_tables(connection, publication)
    tables = sql.SQL(", ").join(sql.Identifier(*name.split(".")) for name in wanted)
    name = sql.Identifier(publication)
    if current is None:
        if wanted:
            connection.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(name, tables))
        else:
            connection.execute(sql.SQL("CREATE PUBLICATION {}").format(name))
    elif current != wanted:
        if wanted:
            connection.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(name, tables))
        else:
            for table in current:
                connection.execute(
                    sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(
                        name, sql.Identifier(*table.split("."))
                    )
                )
    return wanted


class SlotInOtherDatabaseError(ConflictError):
    pass


def ensure_slot(connection: Connection, slot: str) -> bool:
    """Create the pgoutput slot when missing; True when it was created."""
    row = connection.execute(
        "SELECT database, plugin FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()
    database = connection.execute("SELECT current_database()").fetchone()
    if row is not None:
        if database is None or row[0] != database[0] or row[1] != "pgoutput":
            raise SlotInOtherDatabaseError(
                f"replication slot {slot!r} belongs to database {row[0]!r} (plugin {row[1]}); "
                "choose another [cdc] slot_name"
            )
        return False
    connection.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    return True


def drop_slot(connection: Connection, slot: str) -> None:
    connection.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        "WHERE slot_name = %s AND NOT active",
        (slot,),
    )


@dataclass(frozen=True)
class SlotHolder:
    """The session holding a slot's consumer lock (the running `up` or `ces-consumer`)."""

    pid: int
    application_name: str
    backend_start: datetime | None


def slot_holder(connection: Connection, slot: str) -> SlotHolder | None:
    """Who holds the advisory lock `hashtext('hartonomous_ces:' || slot)`, other than us."""
    key_row = connection.execute("SELECT hashtext('hartonomous_ces:' || %s)", (slot,)).fetchone()
    assert key_row is not None
    key = int(key_row[0])
    # A one-argument advisory lock on a bigint k shows as classid = k >> 32, objid = k & 2^32-1.
    row = connection.execute(
        "SELECT l.pid, coalesce(a.application_name, ''), a.backend_start FROM pg_locks l "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.classid::text::bigint = %s AND l.objid::text::bigint = %s "
        "AND l.pid <> pg_backend_pid() AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    ).fetchone()
    return None if row is None else SlotHolder(int(row[0]), str(row[1]), row[2])


class CdcStatus(BaseModel):
    """The replication slot, publication and checkpoint of the CES consumer (docs/cdc.md).

    A pydantic model so that the API documents it as it is (``lagging`` included).
    """

    model_config = ConfigDict(frozen=True)

    slot: str
    slot_exists: bool
    slot_active: bool
    publication: str
    publication_exists: bool
    published_tables: list[str]
    captured_tables: list[str]
    confirmed_flush_lsn: str | None
    lag_bytes: int | None
    # Seconds since the consumer last had every committed change enqueued (0 when the slot
    # has nothing left to read); None when unknown (no slot, or never caught up).
    lag_seconds: float | None
    lag_alert_bytes: int
    lag_alert_seconds: float
    checkpoint_lsn: str | None
    events_total: int
    dead_lettered_total: int
    truncations_total: int
    last_truncation: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @property
    def healthy(self) -> bool:
        return (
            self.slot_exists
            and self.publication_exists
            and self.published_tables == self.captured_tables
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lagging(self) -> bool:
        """The slot is behind by more than `[cdc] lag_alert_bytes` or `lag_alert_seconds`."""
        return (self.lag_bytes or 0) > self.lag_alert_bytes or (
            self.lag_seconds or 0.0
        ) > self.lag_alert_seconds

    def describe_lag(self) -> str:
        """One line: lag bytes and age, and what capture set aside or missed."""
        age = "-" if self.lag_seconds is None else f"{self.lag_seconds:.1f}s"
        text = (
            f"slot lag {self.lag_bytes if self.lag_bytes is not None else '-'} bytes, "
            f"age {age}"
            + (" (LAGGING)" if self.lagging else "")
            + f"; {self.dead_lettered_total} change(s) set aside as dead letters"
            + f", {self.truncations_total} TRUNCATE(s) not captured"
        )
        if self.last_truncation:
            text += (
                f" (last: {', '.join(self.last_truncation.get('tables', []))} "
                f"at {self.last_truncation.get('time')})"
            )
        return text


def uncaptured_changes(
    connection: Connection,
    slot: str,
    publication: str,
    *,
    upto_lsn: str | None = None,
    upto_nchanges: int | None = None,
) -> int | None:
    """How many row changes (pgoutput Insert, Update, Delete, Truncate messages of the
    ``publication``'s tables) ``slot`` holds, not consuming them: up to ``upto_lsn``, or
    decoding stops after the transaction that reaches ``upto_nchanges`` output rows (1: "is
    there any", decoding only up to the first such transaction). 0 without a slot; None when
    the slot is in use by a consumer. Needs the REPLICATION privilege."""
    try:
        with connection.transaction():  # a savepoint: a refused peek leaves the session usable
            row = connection.execute(
                "SELECT count(*) FILTER (WHERE get_byte(data, 0) IN (73, 85, 68, 84)) "
                "FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, %s, "
                "'proto_version', '1', 'publication_names', %s)",
                (slot, upto_lsn, upto_nchanges, publication),
            ).fetchone()
    except psycopg.errors.ObjectInUse:
        return None
    except psycopg.errors.UndefinedObject:
        return 0  # no slot (or publication): nothing was captured through it, nothing waits
    return 0 if row is None else int(row[0])


def cdc_status(connection: Connection, settings: CdcSettings) -> CdcStatus:
    """Slot lag (bytes of WAL not yet confirmed, and its age), publication and checkpoint."""
    slot = connection.execute(
        "SELECT active, confirmed_flush_lsn::text, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
        "FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()",
        (settings.slot_name,),
    ).fetchone()
    published = published_tables(connection, settings.publication_name)
    checkpoint = connection.execute(
        "SELECT last_lsn, events_total, dead_lettered_total, truncations_total, "
        "last_truncation, extract(epoch FROM now() - caught_up_at)::float8 "
        "FROM cdc_checkpoints WHERE consumer_name = %s",
        (settings.consumer_name,),
    ).fetchone()
    lag_bytes = None if slot is None or slot[2] is None else int(slot[2])
    lag_seconds: float | None = None
    if lag_bytes is not None and lag_bytes <= 0:
        lag_seconds = 0.0
    elif lag_bytes is not None and checkpoint is not None and checkpoint[5] is not None:
        lag_seconds = round(max(0.0, float(checkpoint[5])), 3)
    return CdcStatus(
        slot=settings.slot_name,
        slot_exists=slot is not None,
        slot_active=bool(slot[0]) if slot else False,
        publication=settings.publication_name,
        publication_exists=published is not None,
        published_tables=published or [],
        captured_tables=_existing(connection, captured_tables()),
        confirmed_flush_lsn=None if slot is None else slot[1],
        lag_bytes=lag_bytes,
        lag_seconds=lag_seconds,
        lag_alert_bytes=settings.lag_alert_bytes,
        lag_alert_seconds=settings.lag_alert_seconds,
        checkpoint_lsn=None if checkpoint is None else str(checkpoint[0]),
        events_total=0 if checkpoint is None else int(checkpoint[1]),
        dead_lettered_total=0 if checkpoint is None else int(checkpoint[2]),
        truncations_total=0 if checkpoint is None else int(checkpoint[3]),
        last_truncation=None if checkpoint is None else checkpoint[4],
    )


def smoke_check(engine: Engine, settings: CdcSettings) -> tuple[bool, bool, str]:
    """For `smoke`: (ok, lagging, one-line detail with slot lag and publication state)."""
    from hartonomous.messaging.broker import psycopg_connection

    with engine.connect() as connection:
        status = cdc_status(psycopg_connection(connection), settings)
    detail = (
        f"slot {status.slot} {'present' if status.slot_exists else 'missing'}"
        f", {status.describe_lag()}"
        f", publication {status.publication} "
        f"{'present' if status.publication_exists else 'missing'}"
        f" ({', '.join(status.published_tables) or 'no tables'})"
    )
    if status.publication_exists and status.published_tables != status.captured_tables:
        detail += f"; expected tables {', '.join(status.captured_tables)}"
    return status.healthy, status.lagging, detail
