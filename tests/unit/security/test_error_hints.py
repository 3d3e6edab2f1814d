"""Tenant and principal errors: the message quotes ids with escapes; the command-line hint
(printed by the CLI only) names a command only for ids a command could create."""

from __future__ import annotations

from hartonomous.security.principals import PrincipalDisabledError, UnknownPrincipalError
from hartonomous.security.tenants import TenantDisabledError, UnknownTenantError


def test_a_creatable_id_gets_a_cli_hint_outside_the_message() -> None:
    missing = UnknownTenantError("ghost")
    assert str(missing) == "unknown tenant 'ghost'"
    assert missing.cli_hint == "create it with `hartonomous tenants create ghost`"
    disabled = TenantDisabledError("acme")
    assert str(disabled) == "tenant 'acme' is disabled"
    assert disabled.cli_hint == "`hartonomous tenants enable acme` re-enables it"
    principal = UnknownPrincipalError("acme", "bob")
    assert principal.cli_hint == "create it with `hartonomous principals create acme bob`"
    # The message is what an HTTP answer and a job's file rows carry: it names no command.
    stopped = PrincipalDisabledError("acme", "bob")
    assert str(stopped) == "principal 'bob' of tenant 'acme' is disabled"
    assert stopped.cli_hint == "`hartonomous principals enable acme bob` re-enables it"
    assert (disabled.code, stopped.code) == ("tenant-disabled", "principal-disabled")


def test_an_id_no_command_could_create_gets_no_hint_and_is_escaped() -> None:
    for error in (
        UnknownTenantError("no\x1b[31mpe"),
        UnknownTenantError("has space"),
        UnknownPrincipalError("acme", "x\ny"),
        UnknownPrincipalError("acme", "two words"),
        PrincipalDisabledError("acme", "two words"),
    ):
        assert error.cli_hint is None
        assert str(error).isprintable(), str(error)
    assert "\\x1b" in str(UnknownTenantError("no\x1b[31mpe"))
