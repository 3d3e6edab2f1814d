"""JSON nested deeper than Python's parser follows (about 1,000 levels; `jsonb` takes about
16,300 levels of arrays) on the event path, on real PostgreSQL: a queued body becomes a
`malformed_event` dead letter naming the problem and the queue moves on; `deadletters show`
shows it; a captured row's value is set aside naming its column (docs/messaging.md)."""

from __future__ import annotations

import json

from tests.conftest import Cli
from tests.integration.sync.conftest import Source, drain

from hartonomous.config import Settings
from hartonomous.storable import TOO_DEEP

DEPTH = 5000
DEEP_DATA = "[" * DEPTH + "]" * DEPTH


def test_a_queued_body_nested_too_deep_is_dead_lettered_and_the_queue_moves_on(
    source: Source, cli: Cli
) -> None:
    """Before: the receive's jsonb loader raised RecursionError for the whole batch, on every
    attempt (the message's attempts never reached the poison limit: its batch never came
    back), so `sync --once` failed and nothing behind it was handled."""
    settings = Settings()
    broker = settings.message_broker
    source.tenant("acme", "alice")
    # A foreign producer's message, as anyone who may write the queue can insert it, ahead of
    # the CDC events of the tenant and principal.
    source.conn.execute(
        "INSERT INTO broker_messages (queue_name, conversation_id, message_type, body) "
        "VALUES (%s, 'deep', %s, jsonb_build_object('specversion', '1.0', 'id', 'deep-1', "
        "'source', '/foreign', 'type', 'foreign.event', 'data', %s::jsonb))",
        (broker.queue_name, broker.message_type_name, DEEP_DATA),
    )
    queued = source.capture() + 1

    outcome = drain(source, settings)

    assert outcome.dead_lettered == 1
    assert outcome.completed == queued - 1
    assert source.scalar("SELECT count(*) FROM broker_messages") == 0
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE label = 'Tenant'") == 1
    letter, reason, message, depth = source.conn.execute(
        "SELECT dead_letter_id, reason, exception_message, jsonb_path_query_first(body, "
        "'$.data.size()') FROM message_dead_letters"
    ).fetchone() or (0, "", "", None)
    assert reason == "malformed_event"
    assert TOO_DEEP in message
    assert depth is not None  # the body itself was moved, not a text of it

    shown = cli("--json", "deadletters", "show", str(letter))
    assert shown.exit_code == 0, shown.stderr
    body = json.loads(shown.stdout)["body"]
    assert isinstance(body, str)  # its JSON text: too deep for the parser
    assert json.loads(body.replace("[" * DEPTH + "]" * DEPTH, "null"))["id"] == "deep-1"


def test_a_captured_value_nested_too_deep_is_set_aside_naming_its_column(
    source: Source,
) -> None:
    """Before: the dead letter said only `maximum recursion depth exceeded while decoding a
    JSON array from a unicode string`, naming neither the column nor the limit."""
    source.tenant("acme", "alice")
    source.ingest("acme", 2, principal_id="alice")
    source.capture()
    assert drain(source, Settings()).dead_lettered == 0
    atom = source.scalar("SELECT atom_id FROM atoms ORDER BY atom_id LIMIT 1")
    source.conn.execute(
        "UPDATE atoms SET metadata = jsonb_build_object('deep', %s::jsonb) WHERE atom_id = %s",
        (DEEP_DATA, atom),
    )
    source.tenant("later")
    assert source.capture() >= 1  # the change after it flows
    message = source.scalar("SELECT exception_message FROM message_dead_letters")
    assert message == f"column metadata: {TOO_DEEP}"
    outcome = drain(source, Settings())
    assert outcome.dead_lettered == 0
    assert source.scalar("SELECT count(*) FROM graph_nodes WHERE node_id = 'tenant:later'") == 1
