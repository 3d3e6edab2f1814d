"""Access-policy verdicts of one claimed batch: one per (tenant, principal, operation, message
type, tenant and principal activity), when the engine's rules read nothing else
(`AccessPolicyEngine.reads_attributes`); otherwise one per event, as the engine is called.

A batch's events mostly share a few such keys (a service's usage events, an ingestion job's
holdings), so the worker evaluates (and logs a denial) once per key and batch, not per event.
"""

from __future__ import annotations

from collections.abc import Mapping

from hartonomous.security.policy import (
    AccessPolicyContext,
    AccessPolicyEngine,
    AccessPolicyResult,
)

_Key = tuple[str, str, str, str, bool, bool]


class BatchVerdicts:
    """The policy's verdicts for one batch (a new instance per batch: settings and activity
    may change between batches)."""

    def __init__(self, policy: AccessPolicyEngine) -> None:
        self._policy = policy
        self._verdicts: dict[_Key, AccessPolicyResult] = {}

    def evaluate(
        self,
        *,
        tenant_id: str,
        principal_id: str,
        operation: str,
        message_type: str,
        attributes: Mapping[str, object],
        tenant_active: bool = True,
        principal_active: bool = True,
    ) -> AccessPolicyResult:
        """The engine's verdict for this context (`AccessPolicyContext`'s fields)."""
        key: _Key | None = None
        if not self._policy.reads_attributes:
            key = (
                tenant_id,
                principal_id,
                operation,
                message_type,
                tenant_active,
                principal_active,
            )
            known = self._verdicts.get(key)
            if known is not None:
                return known
        verdict = self._policy.evaluate(
            AccessPolicyContext(
                tenant_id=tenant_id,
                principal_id=principal_id,
                operation=operation,
                message_type=message_type,
                attributes=attributes,
                tenant_active=tenant_active,
                principal_active=principal_active,
            )
        )
        if key is not None:
            self._verdicts[key] = verdict
        return verdict
