"""Exceptions whose message is the whole story for an operator (no traceback)."""

from __future__ import annotations


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
    from hartonomous.ingest.pipeline import UnknownTenantError
    from hartonomous.ops.instance import InstanceBusyError
    from hartonomous.ops.sample_content import SampleModelMissingError
    from hartonomous.search.service import SearchError
    from hartonomous.search.similar import UnknownPolicyError
    from hartonomous.sync.worker import SyncStoppedError

    return (
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
        UnknownTenantError,
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
