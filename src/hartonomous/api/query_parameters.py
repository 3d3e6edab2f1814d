"""Unknown query parameters are refused (400 naming them), as unknown JSON members are (422);
so is a single-valued parameter given twice.

A misspelt ``?limt=5`` would otherwise be ignored and the caller served a default it did not
ask for. Applied to every route as an app-wide dependency (api/app.py).
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from hartonomous.errors import UsageError

__all__ = ["refuse_unknown_query_parameters"]


async def refuse_unknown_query_parameters(request: Request) -> None:
    """Raise ``UsageError`` (400) when the query names a parameter the route does not take, or
    gives a single-valued one more than once (``?limit=5&limit=7``: which one was meant?)."""
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
    for name in request.query_params:
        given = len(request.query_params.getlist(name))
        if given > 1 and not known[name]:
            raise UsageError(f"query parameter {name!r} is given {given} times: give it once")


def _query_names(dependant: Dependant) -> dict[str, bool]:
    """The query parameter names a route and its dependencies take (a pydantic model declared
    as ``Query()`` contributes its fields), each with whether it may repeat (a list)."""
    names: dict[str, bool] = {}
    for param in dependant.query_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names.update(
                {
                    field.alias or name: _repeatable(field.annotation)
                    for name, field in model.model_fields.items()
                }
            )
        else:
            names[param.alias] = _repeatable(model)
    for sub in dependant.dependencies:
        names.update(_query_names(sub))
    return names


def _repeatable(annotation: Any) -> bool:
    """Whether a parameter of this type takes several values (``list[str] | None``)."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return any(_repeatable(member) for member in get_args(annotation))
    return origin in (list, tuple, set, frozenset)
