"""Re-arming change capture on a restored cluster (docs/operations.md, "Restore").

A base backup carries no replication slot, and the restored broker may hold messages that a
worker had claimed at the restore point. Re-arming recreates the publication and the CES
consumer's slot, moves the consumer's checkpoint to the slot's start (the restored state) and
returns claimed messages to the queue, and clears the source's heartbeat rows (its instances
do not run here: left, they read as `running` with a growing age), so the first `up` on the
restored cluster captures every later change once. Changes committed between the checkpoint
and the restore point were never captured: `graph catch-up` (run by the restore) re-emits
what they left missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from hartonomous.cdc.replication import drop_slot, ensure_publication, ensure_slot
from hartonomous.config.sections import CdcSettings

Connection = psycopg.Connection[Any]


@dataclass(frozen=True)
class Rearmed:
    slot_lsn: str
    # The checkpoint the restored cluster had: changes after it, up to the restore point,
    # were not captured before the backup was taken.
    previous_checkpoint_lsn: str | None
    published_tables: list[str]
    messages_returned: int
    # The source's service instances' heartbeat rows, removed.
    heartbeats_cleared: int = 0


def rearm(connection: Connection, cdc: CdcSettings) -> Rearmed:
    """Recreate publication and slot, move the checkpoint, return claimed messages.

    ``connection`` is an autocommit session as the owner on the restored, promoted cluster.
    """
    tables = ensure_publication(connection, cdc.publication_name)
    # A slot copied some other way would point into the old timeline's WAL.
    drop_slot(connection, cdc.slot_name)
    ensure_slot(connection, cdc.slot_name)
    row = connection.execute(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
        (cdc.slot_name,),
    ).fetchone()
    assert row is not None
    slot_lsn = str(row[0])
    with connection.transaction():
        previous = connection.execute(
            "SELECT last_lsn FROM cdc_checkpoints WHERE consumer_name = %s FOR UPDATE",
            (cdc.consumer_name,),
        ).fetchone()
        connection.execute(
            "INSERT INTO cdc_checkpoints (consumer_name, slot_name, last_lsn) "
            "VALUES (%s, %s, %s) ON CONFLICT (consumer_name) DO UPDATE SET "
            "slot_name = excluded.slot_name, last_lsn = excluded.last_lsn, "
            "next_change_index = 0, caught_up_at = NULL, updated_at = now()",
            (cdc.consumer_name, cdc.slot_name, slot_lsn),
        )
        # A claim at the restore point belongs to a worker of the old cluster: not a failed
        # delivery, so the attempt it counted is given back.
        returned = connection.execute(
            "UPDATE broker_messages SET locked_by = NULL, locked_until = NULL, "
            "received_at = NULL, available_at = least(available_at, now()), "
            "attempts = greatest(attempts - 1, 0) "
            "WHERE locked_by IS NOT NULL OR locked_until IS NOT NULL"
        ).rowcount
        # No instance of the source runs on the restored cluster; `up` writes its own rows.
        cleared = connection.execute("DELETE FROM service_heartbeats").rowcount
    return Rearmed(
        slot_lsn=slot_lsn,
        previous_checkpoint_lsn=None if previous is None else str(previous[0]),
        published_tables=tables,
        messages_returned=returned,
        heartbeats_cleared=cleared,
    )
