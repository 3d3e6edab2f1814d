"""Which code runs each task: ``InferenceTask`` → ``Task`` (docs/inference.md, "Tasks").

A task missing here cannot be submitted: ``task_for`` raises ``TaskNotAvailableError`` ("not
available") at submission, and a worker that meets one fails the job with that reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hartonomous.errors import UsageError
from hartonomous.inference.onnx_run import run_onnx
from hartonomous.inference.tasks import InferenceTask, Task
from hartonomous.inference.text_tasks import classify, embed_text, search_semantically

__all__ = ["TASKS", "TaskNotAvailableError", "registered", "task_for"]


class TaskNotAvailableError(UsageError):
    """The task is known but this installation has no implementation of it."""

    code = "inference-task-not-available"
    title = "Inference task not available"


TASKS: dict[InferenceTask, Task] = {
    InferenceTask.TEXT_EMBEDDING: embed_text,
    InferenceTask.SEMANTIC_SEARCH: search_semantically,
    InferenceTask.CLASSIFICATION: classify,
    InferenceTask.ONNX_RUN: run_onnx,
}


def task_for(task: InferenceTask) -> Task:
    """The implementation of ``task``; ``TaskNotAvailableError`` when there is none."""
    implementation = TASKS.get(task)
    if implementation is None:
        raise TaskNotAvailableError(f"inference task {task} is not available in this installation")
    return implementation


@contextmanager
def registered(task: InferenceTask, implementation: Task | None) -> Iterator[None]:
    """Run the block with ``task`` implemented by ``implementation`` (None: not available),
    then restore the registry (for tests and embedding applications)."""
    missing = object()
    previous = TASKS.get(task, missing)
    if implementation is None:
        TASKS.pop(task, None)
    else:
        TASKS[task] = implementation
    try:
        yield
    finally:
        if previous is missing:
            TASKS.pop(task, None)
        else:
            TASKS[task] = previous  # type: ignore[assignment]
