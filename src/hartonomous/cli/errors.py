"""Exceptions whose message is the whole story for an operator (no traceback)."""

from __future__ import annotations


def user_facing_errors() -> tuple[type[Exception], ...]:
    from hartonomous.cdc.replication import SlotInOtherDatabaseError
    from hartonomous.cli.broker_commands import BrokerCommandError
    from hartonomous.cli.db_commands import UnknownRevisionError
    from hartonomous.cli.main import CommandFailedError
    from hartonomous.cli.up_command import PortUnavailableError
    from hartonomous.config import ConfigError
    from hartonomous.db import DatabaseUnavailableError, EmbeddedDatabaseError
    from hartonomous.ops.instance import InstanceBusyError

    return (
        BrokerCommandError,
        CommandFailedError,
        ConfigError,
        DatabaseUnavailableError,
        EmbeddedDatabaseError,
        InstanceBusyError,
        PortUnavailableError,
        SlotInOtherDatabaseError,
        UnknownRevisionError,
    )
