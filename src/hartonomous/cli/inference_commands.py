"""`hartonomous infer TASK …`, `infer status`, `infer feedback` and `worker` (docs/inference.md)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import uuid
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from hartonomous.cli.context import CliContext, cli_context, shown
from hartonomous.cli.errors import CommandUsageError
from hartonomous.inference.tasks import InferenceStatus, InferenceTask
from hartonomous.services import open_platform

infer_app = typer.Typer(
    help="Inference: submit a task, follow it, rate it (docs/inference.md).",
    no_args_is_help=True,
)

_TASK_HELP = {
    InferenceTask.TEXT_EMBEDDING: "The text's vector (built-in text model).",
    InferenceTask.SEMANTIC_SEARCH: "The tenant's k atoms nearest the text.",
    InferenceTask.CLASSIFICATION: "The label of the text, by k-nearest labelled holdings.",
    InferenceTask.ONNX_RUN: "Run an ONNX model the platform holds on input tensors.",
}


DEFAULT_WAIT_SECONDS = 600.0


class InferCommandError(CommandUsageError):
    """An `infer` option that cannot be used as given."""


def _pairs(values: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise InferCommandError(f"{option} {value!r} must be NAME=VALUE")
        pairs.append((name, rest))
    return pairs


def _tensor_inputs(values: list[str]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """--input NAME=FILE.npy (sent as a file) or NAME=FILE.json (an inline tensor object)."""
    inline: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for name, file_name in _pairs(values, "--input"):
        path = Path(file_name)
        try:
            if path.suffix == ".npy":
                files[name] = path.read_bytes()
            elif path.suffix == ".json":
                inline[name] = json.loads(path.read_text(encoding="utf-8"))
            else:
                raise InferCommandError(f"--input {name}={file_name}: give a .npy or .json file")
        except OSError as exc:
            raise InferCommandError(f"--input {name}={file_name}: {exc.strerror}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise InferCommandError(f"--input {name}={file_name}: not JSON ({exc})") from None
    return inline, files


def _submit_task(task: InferenceTask) -> None:
    def command(
        ctx: typer.Context,
        *,
        tenant: Annotated[str, typer.Option("--tenant", help="Tenant the inference runs for")],
        model: Annotated[
            str | None, typer.Option("--model", help="Model atom id (onnx_run)")
        ] = None,
        text: Annotated[str | None, typer.Option("--text", help="The input text")] = None,
        inputs: Annotated[
            list[str] | None,
            typer.Option("--input", help="NAME=FILE.npy or NAME=FILE.json (onnx_run tensors)"),
        ] = None,
        k: Annotated[
            int | None, typer.Option("-k", "--k", help="Results / neighbours (search, classify)")
        ] = None,
        attributes: Annotated[
            list[str] | None,
            typer.Option("--attribute", help="k=v billing attribute (repeatable)"),
        ] = None,
        principal: Annotated[
            str | None, typer.Option(help="Principal recorded on the request")
        ] = None,
        wait: Annotated[bool, typer.Option("--wait", help="Wait for the outcome")] = False,
        timeout: Annotated[
            float, typer.Option("--timeout", min=0.1, help="Seconds --wait waits at most")
        ] = DEFAULT_WAIT_SECONDS,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    ) -> None:
        from hartonomous.services.inference import Submission, submit, submit_and_wait

        state = _state(ctx, as_json)
        given: dict[str, Any] = {}
        if text is not None:
            given["text"] = text
        if k is not None:
            given["k"] = k
        inline, files = _tensor_inputs(inputs or [])
        if inline:
            given["inputs"] = inline
        submission = Submission(
            tenant_id=tenant,
            task=task,
            input=given,
            model=model,
            principal_id=principal,
            attributes=dict(_pairs(attributes or [], "--attribute")),
            files=files,
        )
        with open_platform(state.settings()) as platform:
            if not wait:
                submitted = submit(platform, submission)
                state.emit(
                    {**asdict(submitted)},
                    f"inference {submitted.inference_id}: {submitted.status}"
                    + (f" (cache hit of {submitted.cached_from})" if submitted.cache_hit else ""),
                )
                return
            # Nothing is shown before the outcome (or the timeout), so the submission need not
            # be durable on its own (docs/inference.md, "Submitting").
            view = submit_and_wait(platform, submission, timeout_seconds=timeout)
        _emit_view(state, view, waited=timeout)

    command.__doc__ = _TASK_HELP[task]
    infer_app.command(task.value)(command)


for _task in InferenceTask:
    _submit_task(_task)


def _state(ctx: typer.Context, as_json: bool) -> CliContext:
    state = cli_context(ctx)
    if as_json:
        state.as_json = True
    return state


def _emit_view(state: CliContext, view: Any, *, waited: float | None = None) -> None:
    data = asdict(view)
    lines = [f"inference {view.inference_id}: {view.task} {view.status}"]
    if view.cache_hit:
        lines.append(f"cache hit of {view.cached_from}")
    if view.status == InferenceStatus.FAILED:
        lines.append(f"error: {shown(view.error)}")
    if view.output is not None:
        lines.append(_summary(view.output))
    if view.usage_units is not None:
        lines.append(f"units {view.usage_units}; {view.duration_ms:.1f} ms")
    lines += [
        f"  step {step.step_number} {step.operation} {step.duration_ms:.1f} ms"
        + (f" index {shown(step.index_used)}" if step.index_used else "")
        + (f" examined {step.rows_examined}" if step.rows_examined is not None else "")
        + (f" returned {step.rows_returned}" if step.rows_returned is not None else "")
        for step in view.steps
    ]
    if view.rating is not None:
        said = f": {shown(view.feedback)}" if view.feedback else ""
        lines.append(f"rating {view.rating}{said}")
    state.emit(data, "\n".join(lines))
    if view.status == InferenceStatus.FAILED:
        raise typer.Exit(1)
    if waited is not None and not view.terminal:
        # Never a silent success: a job nobody runs is said to be stuck, exit 1.
        sys.stderr.write(
            f"inference {view.inference_id} is still {view.status} after {waited:g} s: is an "
            "inference worker running (`hartonomous up` or `hartonomous worker`)?\n"
        )
        raise typer.Exit(1)


def _summary(output: dict[str, Any]) -> str:
    if "label" in output:
        return f"label {shown(output['label'])} (confidence {output['confidence']:.3f})"
    if "hits" in output:
        return (
            "\n".join(
                f"{hit['score'] if hit['score'] is None else round(hit['score'], 4)}  "
                f"{hit['atom_id']}  {shown((hit['text'] or hit['source'])[:80])}"
                for hit in output["hits"]
            )
            or "no hits"
        )
    if "vector" in output:
        return f"vector of {output['dimension']} floats ({output['token_count']} tokens)"
    return shown(json.dumps(output)[:400])


def _inference_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InferCommandError(f"{value!r} is not an inference id (a UUID)") from None


@infer_app.command("status")
def status(
    ctx: typer.Context,
    inference_id: Annotated[str, typer.Argument(help="The inference's id")],
    *,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the inference belongs to")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the outcome")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds --wait waits at most")
    ] = DEFAULT_WAIT_SECONDS,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """An inference's status, output, steps and rating."""
    from hartonomous.services.inference import get
    from hartonomous.services.inference import wait as wait_for

    state = _state(ctx, as_json)
    identifier = _inference_id(inference_id)
    with open_platform(state.settings(), read_only=True) as platform:
        if wait:
            view = wait_for(platform, tenant, identifier, timeout_seconds=timeout)
        else:
            view = get(platform, tenant, identifier)
    _emit_view(state, view, waited=timeout if wait else None)


@infer_app.command("feedback")
def give_feedback(
    ctx: typer.Context,
    inference_id: Annotated[str, typer.Argument(help="The inference's id")],
    *,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the inference belongs to")],
    rating: Annotated[int, typer.Option("--rating", help="0 (worst) to 5 (best)")],
    text: Annotated[str | None, typer.Option("--text", help="Feedback text")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Rate a completed inference (a later rating replaces it)."""
    from hartonomous.services.inference import feedback

    state = _state(ctx, as_json)
    identifier = _inference_id(inference_id)
    with open_platform(state.settings()) as platform:
        view = feedback(platform, tenant, identifier, rating, text)
    _emit_view(state, view)


def worker(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run the open jobs now, then exit")] = False,
) -> None:
    """Run the inference job worker alone (`up` runs one too)."""
    from hartonomous.services.inference import drain, run_worker

    state = cli_context(ctx)
    with open_platform(state.settings()) as platform:
        if once:
            ran = drain(platform)
            state.emit({"ran": ran}, f"ran {ran} inference job(s)")
            return
        stop = threading.Event()

        def request_stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        def started(claimed_by: str) -> None:
            state.emit(
                {"running": True, "worker": claimed_by}, f"inference worker {claimed_by} running"
            )

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, request_stop)
        run_worker(platform, stop, started)
