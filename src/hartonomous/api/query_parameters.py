"""Unknown query parameters are refused (400 naming them), as unknown JSON members are (422).

A misspelt ``?limt=5`` would otherwise be ignored and the caller served a default it did not
ask for. Applied to every route as an app-wide dependency (api/app.py).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from hartonomous.errors import UsageError

__all__ = ["refuse_unknown_query_parameters"]


async def refuse_unknown_query_parameters(request: Request) -> None:
    """Raise ``UsageError`` (400) when the query names a parameter the route does not take."""
    route = request.scope.get("route")
    # The raw query string first: parsing an empty one into QueryParams costs every request.
    if not isinstance(route, APIRoute) or not request.scope.get("query_string"):
        return
    if not request.query_params:
        return
    known = _query_names(route.dependant)
    unknown = sorted(name for name in request.query_params if name not in known)
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        takes = ", ".join(sorted(known)) or "none"
        raise UsageError(f"unknown query parameter {shown} (this route takes: {takes})")


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameter names a route and its dependencies take (a pydantic model declared
    as ``Query()`` contributes its fields)."""
    names: set[str] = set()
    for param in dependant.query_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names.update(field.alias or name for name, field in model.model_fields.items())
        else:
            names.add(param.alias)
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
