"""One access-policy verdict per key and batch, unless a rule reads the event's attributes."""

from __future__ import annotations

from hartonomous.config.sections import SecuritySettings
from hartonomous.security.policy import (
    AccessPolicyContext,
    AccessPolicyEngine,
    AccessPolicyResult,
    TenantAccessRule,
)
from hartonomous.sync.verdicts import BatchVerdicts


class Counting:
    """A rule that counts its evaluations; denies `tenant-x`; may read attributes."""

    def __init__(self, *, reads_attributes: bool) -> None:
        self.reads_attributes = reads_attributes
        self.calls = 0

    def evaluate(self, context: AccessPolicyContext) -> AccessPolicyResult | None:
        self.calls += 1
        if context.tenant_id == "tenant-x":
            return AccessPolicyResult.deny("test", "tenant-x is refused")
        if context.attributes.get("flag") == "deny":
            return AccessPolicyResult.deny("flag", "flagged")
        return None


def ask(verdicts: BatchVerdicts, tenant: str, *, flag: str = "", active: bool = True) -> bool:
    return verdicts.evaluate(
        tenant_id=tenant,
        principal_id="p",
        operation="op",
        message_type="type",
        attributes={"flag": flag},
        principal_active=active,
    ).is_allowed


def test_a_rule_of_the_fields_only_is_asked_once_per_key_and_batch() -> None:
    rule = Counting(reads_attributes=False)
    verdicts = BatchVerdicts(AccessPolicyEngine([rule]))
    assert [ask(verdicts, t) for t in ("a", "a", "tenant-x", "a", "tenant-x")] == [
        True,
        True,
        False,
        True,
        False,
    ]
    assert rule.calls == 2
    # Activity is part of the key: a disabled principal is another question.
    ask(verdicts, "a", active=False)
    assert rule.calls == 3
    # A new batch asks again (settings and activity may have changed).
    ask(BatchVerdicts(AccessPolicyEngine([rule])), "a")
    assert rule.calls == 4


def test_a_rule_that_may_read_attributes_is_asked_per_event() -> None:
    rule = Counting(reads_attributes=True)
    verdicts = BatchVerdicts(AccessPolicyEngine([rule]))
    assert [ask(verdicts, "a"), ask(verdicts, "a", flag="deny"), ask(verdicts, "a")] == [
        True,
        False,
        True,
    ]
    assert rule.calls == 3


def test_the_sync_workers_engine_reads_the_fields_only() -> None:
    engine = AccessPolicyEngine.from_settings(SecuritySettings())
    assert not engine.reads_attributes
    assert not TenantAccessRule.reads_attributes
