"""Exceptions whose message is the whole story for an operator (no traceback).

Exit codes (README): 0 success, 1 the work failed, 2 the command line asked for something that
cannot run as given (a usage error: bad argument or option value, missing confirmation, bad
configuration).
"""

from __future__ import annotations


class CommandUsageError(ValueError):
    """An argument or option the command cannot run with (exit 2); the message says which."""


def usage_errors() -> tuple[type[Exception], ...]:
    """The user-facing errors that mean "usage error" (exit 2) rather than "failed" (exit 1)."""
    from hartonomous.config import ConfigError
    from hartonomous.embed.spaces import UnknownSpaceError
    from hartonomous.search.service import SearchError
    from hartonomous.search.similar import UnknownPolicyError
    from hartonomous.security.principals import InvalidPrincipalError
    from hartonomous.security.tenants import InvalidTenantError

    return (
        CommandUsageError,
        InvalidPrincipalError,
        ConfigError,
        InvalidTenantError,
        SearchError,
        UnknownPolicyError,
        UnknownSpaceError,
    )


def user_facing_errors() -> tuple[type[Exception], ...]:
    from hartonomous.atoms.holdings import HoldingNotFoundError
    from hartonomous.atoms.read import AtomNotFoundError, NotCompositeError
    from hartonomous.cdc.replication import SlotInOtherDatabaseError
    from hartonomous.cli.atoms_commands import AtomIdError
    from hartonomous.cli.broker_commands import BrokerCommandError
    from hartonomous.cli.db_commands import SeedSamplesFailedError, UnknownRevisionError
    from hartonomous.cli.main import CommandFailedError
    from hartonomous.cli.models_commands import ModelNotFoundError
    from hartonomous.cli.search_commands import EmbedCommandError
    from hartonomous.cli.sync_commands import GraphCommandError
    from hartonomous.cli.up_command import PortUnavailableError
    from hartonomous.config import ConfigError
    from hartonomous.db import (
        DatabaseUnavailableError,
        EmbeddedDatabaseError,
        SchemaNotCurrentError,
    )
    from hartonomous.embed.spaces import UnknownSpaceError
    from hartonomous.ops.instance import InstanceBusyError
    from hartonomous.ops.sample_content import SampleModelMissingError
    from hartonomous.search.service import SearchError
    from hartonomous.search.similar import UnknownPolicyError
    from hartonomous.security.principals import InvalidPrincipalError
    from hartonomous.security.tenants import TenantError
    from hartonomous.sync.worker import SyncStoppedError

    return (
        CommandUsageError,
        InvalidPrincipalError,
        EmbedCommandError,
        SearchError,
        UnknownPolicyError,
        UnknownSpaceError,
        AtomIdError,
        AtomNotFoundError,
        BrokerCommandError,
        HoldingNotFoundError,
        ModelNotFoundError,
        GraphCommandError,
        SyncStoppedError,
        NotCompositeError,
        TenantError,
        CommandFailedError,
        ConfigError,
        DatabaseUnavailableError,
        EmbeddedDatabaseError,
        SchemaNotCurrentError,
        InstanceBusyError,
        PortUnavailableError,
        SampleModelMissingError,
        SeedSamplesFailedError,
        SlotInOtherDatabaseError,
        UnknownRevisionError,
    )
