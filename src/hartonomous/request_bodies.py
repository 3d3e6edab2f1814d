"""The one ``null`` rule of every JSON request body (docs/api.md, "Types").

``RequestBody`` is the base of every model the API takes as a JSON body (api/routes/, and the
service models it takes as bodies, services/billing.py):

- ``null`` for an optional member means the member is absent: its default applies, so
  ``{"label": null}`` is ``{}`` and ``{"k": null}`` searches for the default 10 results;
- ``null`` for a required member is refused like any other value of the wrong type: a 422
  naming the field (``body.tenant_id``);
- an unknown member is a 422 naming it (``extra="forbid"``).

The OpenAPI schema says so: every optional member admits ``null`` (``anyOf: [..., {"type":
"null"}]``). A ``null`` *whole* body is FastAPI's: what an absent body is for that route, its
default where the body is optional, a 422 naming ``body`` where it is required.
tests/integration/api/test_null_members.py walks every route's body from `/openapi.json`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["RequestBody"]


def _optional_members_nullable(schema: dict[str, Any]) -> None:
    """Write into a model's JSON schema that each optional member admits ``null``."""
    required = set(schema.get("required", ()))
    for name, member in schema.get("properties", {}).items():
        if name in required or _admits_null(member):
            continue
        # The annotations (title, description, default, examples) stay on the member; its
        # type moves into the first branch.
        annotations = {k: member.pop(k) for k in _ANNOTATIONS if k in member}
        if "anyOf" in member:
            member["anyOf"].append({"type": "null"})
        else:
            shape = dict(member)
            member.clear()
            member["anyOf"] = [shape, {"type": "null"}]
        member.update(annotations)


_ANNOTATIONS = ("title", "description", "default", "examples")


def _admits_null(member: dict[str, Any]) -> bool:
    return member.get("type") == "null" or any(
        branch.get("type") == "null" for branch in member.get("anyOf", ())
    )


class RequestBody(BaseModel):
    """A JSON request body under the module docstring's rule (subclass it; no other config
    is needed for the rule, and a subclass's ``model_config`` is merged with this one)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_optional_members_nullable)

    # The names of the optional members, per subclass (filled when the subclass is built).
    _optional: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._optional = frozenset(
            name for name, field in cls.model_fields.items() if not field.is_required()
        )

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        # Most bodies hold no null: one scan of the values, no copy.
        if isinstance(data, dict) and None in data.values():
            return {
                name: value
                for name, value in data.items()
                if value is not None or name not in cls._optional
            }
        return data
