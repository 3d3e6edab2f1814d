"""The access policy engine and the tenant rule (docs/security.md), as pure decisions.

Rules run in order; each abstains (None), allows or denies. An allow does not stop evaluation:
the first deny is the answer, and with no deny the answer is allow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import structlog

from hartonomous.config.sections import SecuritySettings

_log = structlog.get_logger(__name__)

# The operation key when neither an operation nor a message type is known. It is a literal
# deny-list entry, not a wildcard (as in the original): banning a whole tenant is
# `banned_tenants`.
NO_OPERATION_KEY = "*"


def _is_blank(text: str) -> bool:
    return not text.strip()


@dataclass(frozen=True)
class AccessPolicyContext:
    """Who is doing what; `attributes` carries extra facts rules may read."""

    tenant_id: str = ""
    principal_id: str = ""
    operation: str = ""
    message_type: str = ""
    attributes: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    # Whether the tenant and principal are active now (`tenants`/`principals.is_active`): the
    # caller looks them up; an unknown one counts as active (there is nothing to disable).
    tenant_active: bool = True
    principal_active: bool = True

    def __post_init__(self) -> None:
        # Read-only for rules, as the original exposed a read-only dictionary.
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))


@dataclass(frozen=True)
class AccessPolicyResult:
    is_allowed: bool
    policy: str | None = None
    reason: str | None = None

    @classmethod
    def allow(cls) -> AccessPolicyResult:
        return cls(is_allowed=True)

    @classmethod
    def deny(cls, policy: str, reason: str) -> AccessPolicyResult:
        return cls(is_allowed=False, policy=policy, reason=reason)


class AccessPolicyRule(Protocol):
    def evaluate(self, context: AccessPolicyContext) -> AccessPolicyResult | None:
        """A decision, or None to abstain."""


class AccessPolicyEngine:
    """Runs the rules in order and returns the first deny (logged as a warning), else allow."""

    def __init__(self, rules: Sequence[AccessPolicyRule]) -> None:
        self._rules = tuple(rules)
        # A rule that does not say otherwise may read `attributes` (class flag
        # `reads_attributes = False`: its verdict depends on the other fields only).
        self.reads_attributes = any(getattr(rule, "reads_attributes", True) for rule in rules)

    def evaluate(self, context: AccessPolicyContext) -> AccessPolicyResult:
        for rule in self._rules:
            result = rule.evaluate(context)
            if result is not None and not result.is_allowed:
                _log.warning(
                    "access denied by policy",
                    policy=result.policy,
                    reason=result.reason,
                    tenant_id=context.tenant_id,
                    principal_id=context.principal_id,
                    operation=context.operation,
                    message_type=context.message_type,
                )
                return result
        return AccessPolicyResult.allow()

    @classmethod
    def from_settings(cls, security: SecuritySettings) -> AccessPolicyEngine:
        """The engine the sync worker runs: the tenant rule only, as in the original."""
        return cls([TenantAccessRule(security)])


def operation_key(context: AccessPolicyContext) -> str:
    """The deny-list key: the operation, else the message type, else `NO_OPERATION_KEY`."""
    if not _is_blank(context.operation):
        return context.operation
    if not _is_blank(context.message_type):
        return context.message_type
    return NO_OPERATION_KEY


class TenantAccessRule:
    """Banned tenants, banned principals, disabled ones, and per-tenant operation deny lists.

    Every comparison ignores case: tenants, principals, and the deny list's tenants and
    operations. (The original's deny-list operations were case-sensitive only when bound from
    configuration, an accident of its options binder; one rule is simpler to operate.)
    Tenants listed twice in different case have their operations merged. The rule is built
    from a settings snapshot; reloading settings means building a new rule.
    """

    # Its verdict depends on tenant, principal, operation, message type and activity only.
    reads_attributes = False

    def __init__(self, security: SecuritySettings) -> None:
        self._banned_tenants = frozenset(t.casefold() for t in security.banned_tenants)
        self._banned_principals = frozenset(p.casefold() for p in security.banned_principals)
        deny: dict[str, set[str]] = {}
        for tenant, operations in security.tenant_operation_deny_list.items():
            deny.setdefault(tenant.casefold(), set()).update(op.casefold() for op in operations)
        self._denied_operations = {tenant: frozenset(ops) for tenant, ops in deny.items()}

    def evaluate(self, context: AccessPolicyContext) -> AccessPolicyResult | None:
        tenant, principal = context.tenant_id, context.principal_id
        if _is_blank(tenant) and _is_blank(principal):
            return None
        banned = self._banned_or_disabled(context)
        if banned is not None:
            return banned
        if not _is_blank(tenant):
            denied = self._denied_operations.get(tenant.casefold(), frozenset())
            key = operation_key(context)
            if key.casefold() in denied:
                return AccessPolicyResult.deny(
                    "tenant-operation-ban",
                    f"Operation {key} is not permitted for tenant {tenant}.",
                )
        return None

    def _banned_or_disabled(self, context: AccessPolicyContext) -> AccessPolicyResult | None:
        tenant, principal = context.tenant_id, context.principal_id
        if not _is_blank(tenant) and tenant.casefold() in self._banned_tenants:
            return AccessPolicyResult.deny("tenant-ban", f"Tenant {tenant} is banned.")
        if not _is_blank(principal) and principal.casefold() in self._banned_principals:
            return AccessPolicyResult.deny("principal-ban", f"Principal {principal} is banned.")
        # Disabled (`tenants disable`, `principals disable`) is refused as banned is, while it
        # lasts: the database says so, not the settings snapshot.
        if not _is_blank(tenant) and not context.tenant_active:
            return AccessPolicyResult.deny("tenant-disabled", f"Tenant {tenant} is disabled.")
        if not _is_blank(principal) and not context.principal_active:
            return AccessPolicyResult.deny(
                "principal-disabled", f"Principal {principal} of tenant {tenant} is disabled."
            )
        return None
