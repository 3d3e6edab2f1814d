"""Ingested models (safetensors, GGUF, ONNX) a tenant holds, and their tensors.

A model is visible to a tenant that holds its file (or a file containing it), as any atom is
(`atoms.read.require_visible`); another tenant's model is "not found", never "forbidden".
Listings page with signed cursors (`services.pagination`): models by (created_at, model id),
tensors by their ordinal in the file. ``model_sharing`` says which of a model's tensors are
byte for byte in other models the tenant holds (one tensor atom, docs/admin-ui.md "Models").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, select, tuple_

from hartonomous.atoms.read import require_visible
from hartonomous.db.tables import holdings, model_tensors, models
from hartonomous.errors import InvalidCursorError, NotFoundError
from hartonomous.security.tenants import require_active_tenant
from hartonomous.services.pagination import Page, cursor_codec
from hartonomous.services.platform import Platform

__all__ = [
    "ModelDetails",
    "ModelNotFoundError",
    "ModelSharing",
    "ModelSummary",
    "SharedWith",
    "TensorInfo",
    "list_models",
    "list_tensors",
    "model_sharing",
    "show_model",
]

_MODELS_LISTING = "models"
_TENSORS_LISTING = "model-tensors"


class ModelNotFoundError(NotFoundError, LookupError):
    """The atom is visible to the tenant but is not a model."""


@dataclass(frozen=True)
class ModelSummary:
    """``model_id``: the model file's atom id (64 hex); ``dtypes``: tensors per dtype."""

    model_id: str
    format: str
    architecture: str | None
    parameter_count: int
    tensor_count: int
    dtypes: dict[str, int]


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: ``atom_id`` of its bytes (None when they are not one contiguous span of the
    file), ``byte_offset``/``byte_length`` in the file (bytes)."""

    name: str
    dtype: str
    shape: list[int]
    parameter_count: int
    atom_id: str | None
    byte_offset: int | None
    byte_length: int


@dataclass(frozen=True)
class ModelDetails(ModelSummary):
    """A model with the metadata read from its file and (some of) its tensors, in file order."""

    metadata: dict[str, Any]
    tensors: list[TensorInfo]


def list_models(
    platform: Platform, tenant_id: str, *, limit: int | None = None, cursor: str | None = None
) -> Page[ModelSummary]:
    """Models whose file ``tenant_id`` holds, oldest first; all of them without ``limit``.

    Raises ``UnknownTenantError``/``TenantDisabledError``, ``InvalidCursorError``.
    """
    codec = cursor_codec(platform.engine) if limit is not None else None
    held = select(holdings.c.atom_id).where(holdings.c.tenant_id == tenant_id)
    query = (
        select(models)
        .where(models.c.atom_id.in_(held))
        .order_by(models.c.created_at, models.c.atom_id)
    )
    if cursor is not None and codec is not None:
        created, atom = _model_position(
            codec.decode(_MODELS_LISTING, tenant_id, cursor, filters={})
        )
        query = query.where(tuple_(models.c.created_at, models.c.atom_id) > (created, atom))
    with platform.engine.connect() as connection:
        require_active_tenant(connection, tenant_id)
        rows = connection.execute(query if limit is None else query.limit(limit + 1)).all()
    if limit is None or codec is None or len(rows) <= limit:
        return Page([_summary(row) for row in rows], None)
    last = rows[limit - 1]
    position = [last.created_at.isoformat(), bytes(last.atom_id).hex()]
    return Page(
        [_summary(row) for row in rows[:limit]],
        codec.encode(_MODELS_LISTING, tenant_id, position, filters={}),
    )


def show_model(
    platform: Platform, tenant_id: str, model_id: bytes, *, tensors: int = -1
) -> ModelDetails:
    """The model and its first ``tensors`` tensors (-1: all).

    Raises ``AtomNotFoundError`` (not visible to the tenant), ``ModelNotFoundError`` (not a
    model), ``UnknownTenantError``/``TenantDisabledError``.
    """
    query = _tensors_query(model_id)
    if tensors >= 0:
        query = query.limit(tensors)
    with platform.engine.connect() as connection:
        row = _visible_model(connection, tenant_id, model_id)
        found = connection.execute(query).all()
    summary = _summary(row)
    return ModelDetails(**vars(summary), metadata=row.metadata, tensors=[_tensor(t) for t in found])


@dataclass(frozen=True)
class SharedWith:
    """Another model holding ``tensors`` of this model's tensors, ``shared_bytes`` of them."""

    model_id: str
    format: str
    architecture: str | None
    tensors: int
    shared_bytes: int


@dataclass(frozen=True)
class ModelSharing:
    """What a model shares with the other models the tenant holds: its tensors' bytes
    (``tensor_bytes``), the bytes of those also in at least one other model
    (``shared_bytes``), each such model (most bytes first), and per tensor ordinal how many
    other models hold it (absent: none)."""

    tensor_bytes: int
    shared_bytes: int
    models: list[SharedWith]
    tensors: dict[int, int]


def model_sharing(platform: Platform, tenant_id: str, model_id: bytes) -> ModelSharing:
    """Which of the model's tensors are in other models the tenant holds (the same tensor atom:
    the same bytes, found by content address), and how many bytes that is.

    A tensor shared counts its ``byte_length`` once however many models share it; tensors
    whose bytes are not one atom (some ONNX layouts) share nothing. Raises as ``show_model``.
    """
    mine = (
        select(model_tensors.c.ordinal, model_tensors.c.tensor_atom_id, model_tensors.c.byte_length)
        .where(model_tensors.c.model_atom_id == model_id)
        .cte("mine")
    )
    held = select(holdings.c.atom_id).where(holdings.c.tenant_id == tenant_id)
    other = model_tensors.alias("other")
    pairs = (
        select(mine.c.ordinal, mine.c.byte_length, other.c.model_atom_id)
        .distinct()
        .join(other, other.c.tensor_atom_id == mine.c.tensor_atom_id)
        .where(other.c.model_atom_id != model_id, other.c.model_atom_id.in_(held))
        .cte("pairs")
    )
    by_model = (
        select(
            models,
            func.count().label("shared_tensors"),
            func.sum(pairs.c.byte_length).label("shared_bytes"),
        )
        .join(pairs, pairs.c.model_atom_id == models.c.atom_id)
        .group_by(models.c.atom_id)
        .order_by(func.sum(pairs.c.byte_length).desc(), models.c.atom_id)
    )
    by_tensor = select(pairs.c.ordinal, pairs.c.byte_length, func.count().label("models")).group_by(
        pairs.c.ordinal, pairs.c.byte_length
    )
    with platform.engine.connect() as connection:
        _visible_model(connection, tenant_id, model_id)
        total = connection.execute(
            select(func.coalesce(func.sum(mine.c.byte_length), 0))
        ).scalar_one()
        sharing = connection.execute(by_model).all()
        tensors = connection.execute(by_tensor).all()
    return ModelSharing(
        tensor_bytes=int(total),
        shared_bytes=sum(int(row.byte_length) for row in tensors),
        models=[
            SharedWith(
                model_id=bytes(row.atom_id).hex(),
                format=row.format,
                architecture=row.architecture,
                tensors=row.shared_tensors,
                shared_bytes=int(row.shared_bytes),
            )
            for row in sharing
        ],
        tensors={row.ordinal: row.models for row in tensors},
    )


def list_tensors(
    platform: Platform, tenant_id: str, model_id: bytes, *, limit: int, cursor: str | None = None
) -> Page[TensorInfo]:
    """The model's tensors in file order, ``limit`` at a time.

    Raises as ``show_model``, and ``InvalidCursorError``.
    """
    codec = cursor_codec(platform.engine)
    filters = {"model_id": model_id.hex()}
    query = _tensors_query(model_id)
    if cursor is not None:
        after = _ordinal(codec.decode(_TENSORS_LISTING, tenant_id, cursor, filters=filters))
        query = query.where(model_tensors.c.ordinal > after)
    with platform.engine.connect() as connection:
        _visible_model(connection, tenant_id, model_id)
        rows = connection.execute(query.limit(limit + 1)).all()
    if len(rows) <= limit:
        return Page([_tensor(row) for row in rows], None)
    return Page(
        [_tensor(row) for row in rows[:limit]],
        codec.encode(_TENSORS_LISTING, tenant_id, [rows[limit - 1].ordinal], filters=filters),
    )


def _visible_model(connection: Connection, tenant_id: str, model_id: bytes) -> Any:
    require_active_tenant(connection, tenant_id)
    require_visible(connection, tenant_id, model_id)
    row = connection.execute(select(models).where(models.c.atom_id == model_id)).one_or_none()
    if row is None:
        raise ModelNotFoundError(f"atom {model_id.hex()} is not a model")
    return row


def _tensors_query(model_id: bytes) -> Select[Any]:
    return (
        select(model_tensors)
        .where(model_tensors.c.model_atom_id == model_id)
        .order_by(model_tensors.c.ordinal)
    )


def _summary(row: Any) -> ModelSummary:
    return ModelSummary(
        model_id=bytes(row.atom_id).hex(),
        format=row.format,
        architecture=row.architecture,
        parameter_count=row.parameter_count,
        tensor_count=row.tensor_count,
        dtypes=row.dtypes,
    )


def _tensor(row: Any) -> TensorInfo:
    return TensorInfo(
        name=row.name,
        dtype=row.dtype,
        shape=list(row.shape),
        parameter_count=row.parameter_count,
        atom_id=bytes(row.tensor_atom_id).hex() if row.tensor_atom_id else None,
        byte_offset=row.byte_offset,
        byte_length=row.byte_length,
    )


def _model_position(position: Sequence[Any]) -> tuple[datetime, bytes]:
    # The signature vouches for the content; the shape is checked all the same.
    try:
        created, atom = position
        return datetime.fromisoformat(created), bytes.fromhex(atom)
    except (TypeError, ValueError):
        raise InvalidCursorError("cursor holds no model position") from None


def _ordinal(position: Sequence[Any]) -> int:
    if len(position) != 1 or not isinstance(position[0], int):
        raise InvalidCursorError("cursor holds no tensor position")
    return position[0]
