"""`broker status`: depth, age, in-flight, orphaned claims, throughput, dead letters, long
conversations."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from hartonomous.messaging.broker import Broker, Connection

# A spike: more dead letters in the last hour than this many times the hourly average of the
# 24 hours before, and at least SPIKE_MINIMUM (a handful on a quiet system is not a spike).
SPIKE_FACTOR = 3
SPIKE_MINIMUM = 10
LONG_CONVERSATIONS_SHOWN = 20


def broker_status(connection: Connection, broker: Broker) -> dict[str, Any]:
    lifetime = broker.settings.conversation_lifetime_seconds
    params = {"queue": broker.queue_name, "lifetime": lifetime}
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            """
            SELECT
              count(*) AS depth,
              coalesce(extract(epoch FROM now() - min(enqueued_at)), 0)::float8
                AS oldest_age_seconds,
              count(*) FILTER (WHERE locked_by IS NOT NULL AND locked_until >= now()
                               AND locked_by IN (SELECT pid FROM pg_stat_activity))
                AS in_flight,
              count(*) FILTER (WHERE available_at > now()) AS delayed
            FROM broker_messages WHERE queue_name = %(queue)s
            """,
            params,
        )
        queue = cursor.fetchone() or {}
        # Claims whose session is gone or whose lease lapsed: the next receive takes them back.
        cursor.execute(
            """
            SELECT locked_by AS pid, count(*) AS messages,
                   bool_or(locked_by NOT IN (SELECT pid FROM pg_stat_activity
                                             WHERE pid IS NOT NULL)) AS consumer_gone,
                   extract(epoch FROM now() - min(received_at))::float8 AS claimed_seconds
            FROM broker_messages
            WHERE queue_name = %(queue)s AND locked_by IS NOT NULL
              AND (locked_until < now()
                   OR locked_by NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL))
            GROUP BY locked_by ORDER BY locked_by
            """,
            params,
        )
        orphans = cursor.fetchall()
        cursor.execute(
            """
            SELECT coalesce(sum(completed), 0)::bigint AS completed,
                   coalesce(sum(dead_lettered), 0)::bigint AS dead_lettered
            FROM broker_throughput
            WHERE queue_name = %(queue)s AND bucket >= now() - interval '60 seconds'
            """,
            params,
        )
        minute = cursor.fetchone() or {}
        cursor.execute(
            """
            SELECT count(*) FILTER (WHERE replayed_at IS NULL) AS pending,
                   count(*) AS total,
                   count(*) FILTER (WHERE created_at >= now() - interval '1 hour') AS last_hour,
                   count(*) FILTER (WHERE created_at < now() - interval '1 hour'
                                    AND created_at >= now() - interval '25 hours') AS day_before
            FROM message_dead_letters WHERE queue_name = %(queue)s
            """,
            params,
        )
        dead = cursor.fetchone() or {}
        cursor.execute(
            """
            SELECT conversation_id, count(*) AS messages,
                   extract(epoch FROM now() - min(enqueued_at))::float8 AS age_seconds,
                   bool_or(locked_by IS NOT NULL) AS in_flight
            FROM broker_messages
            WHERE queue_name = %(queue)s AND conversation_id IS NOT NULL
            GROUP BY conversation_id
            HAVING min(enqueued_at) < now() - make_interval(secs => %(lifetime)s)
            ORDER BY min(enqueued_at) LIMIT """
            + str(LONG_CONVERSATIONS_SHOWN),
            params,
        )
        long_running = cursor.fetchall()
    hourly_average = float(dead.get("day_before", 0)) / 24
    last_hour = int(dead.get("last_hour", 0))
    return {
        "queue": broker.queue_name,
        "depth": int(queue.get("depth", 0)),
        "oldest_age_seconds": round(float(queue.get("oldest_age_seconds", 0.0)), 3),
        "in_flight": int(queue.get("in_flight", 0)),
        "delayed": int(queue.get("delayed", 0)),
        "orphaned_claims": sum(int(row["messages"]) for row in orphans),
        "orphaned_by": [
            {
                "pid": int(row["pid"]),
                "messages": int(row["messages"]),
                "state": "consumer gone" if row["consumer_gone"] else "lease lapsed",
                "claimed_seconds": round(float(row["claimed_seconds"] or 0.0), 3),
            }
            for row in orphans
        ],
        "throughput_last_minute": {
            "completed": int(minute.get("completed", 0)),
            "dead_lettered": int(minute.get("dead_lettered", 0)),
            "completed_per_second": round(int(minute.get("completed", 0)) / 60, 3),
        },
        "dead_letters": int(dead.get("pending", 0)),
        "dead_letters_total": int(dead.get("total", 0)),
        "dead_letters_last_hour": last_hour,
        "dead_letter_spike": last_hour >= SPIKE_MINIMUM
        and last_hour > SPIKE_FACTOR * hourly_average,
        "conversation_lifetime_seconds": broker.settings.conversation_lifetime_seconds,
        "long_running_conversations": [
            {
                "conversation_id": row["conversation_id"],
                "messages": int(row["messages"]),
                "age_seconds": round(float(row["age_seconds"]), 3),
                "in_flight": bool(row["in_flight"]),
            }
            for row in long_running
        ],
    }


def throughput_by_minute(
    connection: Connection, broker: Broker, minutes: int
) -> list[dict[str, Any]]:
    """Messages completed and dead-lettered per minute (UTC) over the last ``minutes`` minutes,
    oldest first, the current minute last, minutes without any as zeros; from
    ``broker_throughput`` (kept ``[cdc] retention_minutes``, a day by default)."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            """
            SELECT m.minute,
                   coalesce(sum(t.completed), 0)::bigint AS completed,
                   coalesce(sum(t.dead_lettered), 0)::bigint AS dead_lettered
            FROM generate_series(date_trunc('minute', now()) - make_interval(mins => %(n)s - 1),
                                 date_trunc('minute', now()), interval '1 minute') AS m(minute)
            LEFT JOIN broker_throughput t
              ON t.queue_name = %(queue)s
             AND t.bucket >= m.minute AND t.bucket < m.minute + interval '1 minute'
            GROUP BY m.minute ORDER BY m.minute
            """,
            {"queue": broker.queue_name, "n": minutes},
        )
        return [dict(row) for row in cursor.fetchall()]
