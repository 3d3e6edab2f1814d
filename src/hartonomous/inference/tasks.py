"""What a task is given and what it answers: the contract between the job worker and each task
(docs/inference.md).

The worker claims a request, builds a ``TaskContext`` and calls the task; the task returns a
``TaskResult`` or raises ``InferenceInputError`` (the request cannot run: its reason is the
job's error). The worker, not the task, writes everything: steps, input and output atoms, the
AtomicStream and the completed row, in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from sqlalchemy import Engine

from hartonomous.config import Settings
from hartonomous.errors import UsageError
from hartonomous.json_types import JsonValue

__all__ = [
    "InferenceInputError",
    "InferenceStatus",
    "InferenceTask",
    "InputAtom",
    "OutputFile",
    "StepRecord",
    "Task",
    "TaskContext",
    "TaskRequest",
    "TaskResult",
]


class InferenceTask(StrEnum):
    """The tasks an inference request can name (`inference_requests.task`)."""

    TEXT_EMBEDDING = "text_embedding"
    SEMANTIC_SEARCH = "semantic_search"
    CLASSIFICATION = "classification"
    ONNX_RUN = "onnx_run"


class InferenceStatus(StrEnum):
    """`pending → in_progress → completed | failed` (`inference_requests.status`)."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class InferenceInputError(UsageError):
    """The request cannot run as given (unknown model, wrong tensor name, shape or dtype,
    a model format that cannot run, a size over a limit); the message names the mismatch."""

    code = "inference-input-invalid"


@dataclass(frozen=True)
class StepRecord:
    """One `inference_steps` row: an operation the task performed, with its cost."""

    operation: str
    duration_ms: float
    model_atom_id: bytes | None = None
    query_text: str | None = None
    index_used: str | None = None
    rows_examined: int | None = None
    rows_returned: int | None = None
    cache_used: bool = False
    detail: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True)
class InputAtom:
    """An atom the task read (visible to the request's tenant): a USED_INPUT edge."""

    name: str
    atom_id: bytes


@dataclass(frozen=True)
class OutputFile:
    """Bytes the task produced; the worker stores them as an atom held by the tenant
    (a PRODUCED edge). ``media_type`` e.g. ``application/x-npy``."""

    name: str
    data: bytes
    media_type: str


@dataclass(frozen=True)
class TaskRequest:
    """A claimed request as stored: ``input`` is the submitted JSON (tensors inline or as
    atom references)."""

    tenant_id: str
    principal_id: str | None
    inference_id: uuid.UUID
    task: InferenceTask
    model_atom_id: bytes | None
    input: Mapping[str, JsonValue]


@dataclass(frozen=True)
class TaskContext:
    """What a task may use: the engine its tenant's work runs on and the settings."""

    engine: Engine
    settings: Settings
    request: TaskRequest


@dataclass(frozen=True)
class TaskResult:
    """A task's answer. ``output`` is the JSON stored in `inference_requests.output`;
    ``usage_units`` what the inference is billed for (tokens/1000 for text, seconds for
    `onnx_run`); ``embedding`` fills the stream's Embedding segment."""

    output: Mapping[str, JsonValue]
    usage_units: Decimal
    confidence: float | None = None
    embedding: Sequence[float] | None = None
    input_atoms: Sequence[InputAtom] = ()
    output_files: Sequence[OutputFile] = ()
    steps: Sequence[StepRecord] = ()


class Task(Protocol):
    """A task: run the request, or raise ``InferenceInputError`` naming what is wrong."""

    def __call__(self, context: TaskContext) -> TaskResult: ...
