"""Access policy engine and tenant rule (digest §5), with the original's pinned cases."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from hartonomous.config.sections import SecuritySettings
from hartonomous.security.policy import (
    AccessPolicyContext,
    AccessPolicyEngine,
    AccessPolicyResult,
    TenantAccessRule,
)


class FixedRule:
    def __init__(self, result: AccessPolicyResult | None) -> None:
        self.result = result
        self.calls = 0

    def evaluate(self, context: AccessPolicyContext) -> AccessPolicyResult | None:
        self.calls += 1
        return self.result


CONTEXT = AccessPolicyContext(tenant_id="tenant-a", principal_id="principal-1", operation="ingest")


def test_pinned_engine_returns_the_first_deny_and_logs_it() -> None:
    later = FixedRule(AccessPolicyResult.deny("later-policy", "also failed"))
    engine = AccessPolicyEngine(
        [FixedRule(None), FixedRule(AccessPolicyResult.deny("test-policy", "failed")), later]
    )
    with capture_logs() as logs:
        result = engine.evaluate(CONTEXT)
    assert not result.is_allowed
    assert (result.policy, result.reason) == ("test-policy", "failed")
    assert later.calls == 0
    assert [entry["log_level"] for entry in logs] == ["warning"]
    assert logs[0]["event"] == "access denied by policy"
    assert logs[0]["policy"] == "test-policy"
    assert logs[0]["tenant_id"] == "tenant-a"


def test_pinned_engine_allows_when_no_rule_denies_without_logging() -> None:
    engine = AccessPolicyEngine([FixedRule(None), FixedRule(AccessPolicyResult.allow())])
    with capture_logs() as logs:
        result = engine.evaluate(AccessPolicyContext(tenant_id="tenant-a"))
    assert result == AccessPolicyResult.allow()
    assert logs == []


def test_an_allow_does_not_stop_evaluation() -> None:
    engine = AccessPolicyEngine(
        [FixedRule(AccessPolicyResult.allow()), FixedRule(AccessPolicyResult.deny("p", "r"))]
    )
    assert engine.evaluate(CONTEXT) == AccessPolicyResult.deny("p", "r")


def test_no_rules_allow() -> None:
    assert AccessPolicyEngine([]).evaluate(CONTEXT).is_allowed


def rule(**settings: object) -> TenantAccessRule:
    return TenantAccessRule(SecuritySettings.model_validate(settings))


def test_pinned_tenant_and_principal_bans() -> None:
    bans = rule(banned_tenants=["tenant-a"], banned_principals=["principal-x"])
    assert bans.evaluate(AccessPolicyContext(tenant_id="tenant-a")) == AccessPolicyResult.deny(
        "tenant-ban", "Tenant tenant-a is banned."
    )
    assert bans.evaluate(AccessPolicyContext(principal_id="principal-x")) == (
        AccessPolicyResult.deny("principal-ban", "Principal principal-x is banned.")
    )


def test_pinned_deny_list_by_operation_then_message_type() -> None:
    deny = rule(tenant_operation_deny_list={"tenant-a": ["ingest", "analytics"]})
    by_operation = deny.evaluate(AccessPolicyContext(tenant_id="tenant-a", operation="ingest"))
    assert by_operation == AccessPolicyResult.deny(
        "tenant-operation-ban", "Operation ingest is not permitted for tenant tenant-a."
    )
    by_message_type = deny.evaluate(
        AccessPolicyContext(tenant_id="tenant-a", operation="", message_type="analytics")
    )
    assert by_message_type == AccessPolicyResult.deny(
        "tenant-operation-ban", "Operation analytics is not permitted for tenant tenant-a."
    )


def test_the_operation_wins_over_the_message_type() -> None:
    deny = rule(tenant_operation_deny_list={"tenant-a": ["analytics"]})
    context = AccessPolicyContext(
        tenant_id="tenant-a", operation="search", message_type="analytics"
    )
    assert deny.evaluate(context) is None


def test_star_is_the_key_only_when_operation_and_message_type_are_blank() -> None:
    deny = rule(tenant_operation_deny_list={"tenant-a": ["*"]})
    assert deny.evaluate(AccessPolicyContext(tenant_id="tenant-a", operation=" ")) == (
        AccessPolicyResult.deny(
            "tenant-operation-ban", "Operation * is not permitted for tenant tenant-a."
        )
    )
    # Not a wildcard: a named operation is not denied by "*".
    assert deny.evaluate(AccessPolicyContext(tenant_id="tenant-a", operation="ingest")) is None


def test_every_comparison_ignores_case() -> None:
    bans = rule(
        banned_tenants=["Tenant-B"],
        banned_principals=["Principal-X"],
        tenant_operation_deny_list={"TENANT-A": ["Ingest"], "tenant-a": ["search"]},
    )
    assert bans.evaluate(AccessPolicyContext(tenant_id="tenant-b")) == AccessPolicyResult.deny(
        "tenant-ban", "Tenant tenant-b is banned."
    )
    assert bans.evaluate(AccessPolicyContext(principal_id="PRINCIPAL-x")) == (
        AccessPolicyResult.deny("principal-ban", "Principal PRINCIPAL-x is banned.")
    )
    for operation in ("INGEST", "Search"):
        result = bans.evaluate(AccessPolicyContext(tenant_id="Tenant-A", operation=operation))
        assert result is not None
        assert result.policy == "tenant-operation-ban"


def test_tenant_ban_is_checked_before_principal_ban_and_deny_list() -> None:
    bans = rule(
        banned_tenants=["t"],
        banned_principals=["p"],
        tenant_operation_deny_list={"t": ["op"]},
    )
    result = bans.evaluate(AccessPolicyContext(tenant_id="t", principal_id="p", operation="op"))
    assert result is not None
    assert result.policy == "tenant-ban"


@pytest.mark.parametrize(
    "context",
    [
        AccessPolicyContext(),
        AccessPolicyContext(tenant_id="  ", principal_id="", operation="ingest"),
        AccessPolicyContext(tenant_id="tenant-c", principal_id="principal-y", operation="ingest"),
    ],
)
def test_the_rule_abstains_otherwise(context: AccessPolicyContext) -> None:
    bans = rule(
        banned_tenants=["tenant-a", "  "],
        banned_principals=["principal-x"],
        tenant_operation_deny_list={"tenant-a": ["ingest"]},
    )
    assert bans.evaluate(context) is None


def test_engine_from_settings_runs_the_tenant_rule() -> None:
    engine = AccessPolicyEngine.from_settings(SecuritySettings(banned_tenants=["tenant-a"]))
    with capture_logs():
        assert engine.evaluate(AccessPolicyContext(tenant_id="tenant-a")).policy == "tenant-ban"
    assert engine.evaluate(AccessPolicyContext(tenant_id="tenant-b")).is_allowed


def test_context_attributes_are_read_only() -> None:
    source: dict[str, object] = {"k": "v"}
    context = AccessPolicyContext(tenant_id="t", attributes=source)
    source["k"] = "changed"
    assert context.attributes["k"] == "v"
    with pytest.raises(TypeError):
        context.attributes["k"] = "x"  # type: ignore[index]


def test_a_disabled_tenant_or_principal_is_denied_as_a_banned_one_is() -> None:
    rules = rule(tenant_operation_deny_list={"t": ["op"]})
    tenant_off = rules.evaluate(
        AccessPolicyContext(tenant_id="t", principal_id="p", operation="op", tenant_active=False)
    )
    assert tenant_off == AccessPolicyResult.deny("tenant-disabled", "Tenant t is disabled.")
    principal_off = rules.evaluate(
        AccessPolicyContext(tenant_id="t", principal_id="p", principal_active=False)
    )
    assert principal_off == AccessPolicyResult.deny(
        "principal-disabled", "Principal p of tenant t is disabled."
    )
    # A ban names itself first; an active party is left to the other checks.
    banned = rule(banned_tenants=["t"]).evaluate(
        AccessPolicyContext(tenant_id="t", tenant_active=False)
    )
    assert banned is not None
    assert banned.policy == "tenant-ban"
    assert rule().evaluate(AccessPolicyContext(tenant_id="t", principal_id="p")) is None
