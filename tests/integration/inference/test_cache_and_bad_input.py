"""Cache hits, refusals at submission (nothing written) and failures at run time (only the
row's error and a stream of Input and the error)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from sqlalchemy import Engine, text

from hartonomous.config import Settings
from hartonomous.db import head_revision
from hartonomous.inference.registry import TaskNotAvailableError, registered
from hartonomous.inference.tasks import (
    InferenceInputError,
    InferenceStatus,
    InferenceTask,
    TaskContext,
    TaskResult,
)
from hartonomous.ingest.pipeline import IngestRequest, ingest_paths
from hartonomous.provenance import SegmentKind
from hartonomous.security.tenants import (
    TenantDisabledError,
    UnknownTenantError,
    set_tenant_state,
)
from hartonomous.services import Platform
from hartonomous.services.inference import InferenceView, Submission, drain, get, submit

from .conftest import Ingest, counts, finished, stream_of
from .onnx_support import add_tenant, inline, write_mlp
from .onnx_support import ingest as ingest_files


def _embedding(text_value: object, **extra: object) -> Submission:
    return Submission(
        tenant_id="acme", task=InferenceTask.TEXT_EMBEDDING, input={"text": text_value, **extra}
    )


def test_an_identical_request_is_answered_from_the_earlier_result(
    platform: Platform, engine: Engine, ingest: Ingest
) -> None:
    ingest("acme", {"a.txt": "Apples grow on trees in the orchard."})
    request = Submission(
        tenant_id="acme",
        task=InferenceTask.SEMANTIC_SEARCH,
        input={"text": "fruit trees", "k": 2},
    )
    first = finished(platform, "acme", submit(platform, request).inference_id)
    assert first.status is InferenceStatus.COMPLETED

    again = submit(platform, request)
    assert again.cache_hit
    assert again.cached_from == first.inference_id
    assert again.status is InferenceStatus.COMPLETED
    assert drain(platform) == 0  # nothing was queued
    hit = get(platform, "acme", again.inference_id)
    assert hit.cache_hit
    assert hit.output == first.output
    assert hit.usage_units == 0
    (step,) = hit.steps
    assert (step.operation, step.cache_used) == ("cache_lookup", True)
    stream = stream_of(engine, hit)
    assert [s.kind for s in stream.segments] == [
        SegmentKind.Input,
        SegmentKind.Control,
        SegmentKind.Telemetry,
        SegmentKind.Output,
    ]
    assert b'"cache_hit":true' in stream.segments[1].payload
    with engine.connect() as connection:
        copied = connection.execute(
            text("SELECT count(*) FROM inference_atoms WHERE inference_id = :i"),
            {"i": again.inference_id},
        ).scalar_one()
    assert copied == 1  # the input text, as the earlier inference's

    # A different parameter, or another tenant, is another request.
    other_k = submit(
        platform,
        Submission(
            tenant_id="acme",
            task=InferenceTask.SEMANTIC_SEARCH,
            input={"text": "fruit trees", "k": 1},
        ),
    )
    assert not other_k.cache_hit
    other_tenant = submit(
        platform,
        Submission(
            tenant_id="globex",
            task=InferenceTask.SEMANTIC_SEARCH,
            input={"text": "fruit trees", "k": 2},
        ),
    )
    assert not other_tenant.cache_hit
    # The same text sent as the atom it is stored in is the same request.
    atom_hex = first.input["text"]["atom_id"]
    by_atom = submit(
        platform,
        Submission(
            tenant_id="acme",
            task=InferenceTask.SEMANTIC_SEARCH,
            input={"text": {"atom_id": atom_hex}, "k": 2},
        ),
    )
    assert by_atom.cache_hit
    assert by_atom.cached_from == first.inference_id


def test_a_failed_request_is_not_a_cache_entry(platform: Platform) -> None:
    request = _embedding("🙂🙂🙂")
    failed = finished(platform, "acme", submit(platform, request).inference_id)
    assert failed.status is InferenceStatus.FAILED
    assert not submit(platform, request).cache_hit


@pytest.mark.parametrize(
    ("submission", "message"),
    [
        (_embedding(5), "input 'text' must be a string or {'atom_id'"),
        (_embedding("hello", k=3), "text_embedding takes no input 'k'"),
        (_embedding("   "), "input 'text' is empty"),
        (_embedding("a\x00b"), "U+0000"),
        (
            Submission(
                tenant_id="acme", task=InferenceTask.SEMANTIC_SEARCH, input={"text": "x", "k": "5"}
            ),
            "input 'k' must be an integer in 1..",
        ),
        (
            Submission(
                tenant_id="acme", task=InferenceTask.CLASSIFICATION, input={"text": "x", "k": 0}
            ),
            "input 'k' must be an integer in 1..100, got 0",
        ),
        (
            Submission(tenant_id="acme", task=InferenceTask.CLASSIFICATION, input=["x"]),
            "input must be a JSON object, got an array",
        ),
        (_embedding({"atom_id": "ABC"}), "not a SHA-256 hex digest"),
        (
            Submission(
                tenant_id="acme",
                task=InferenceTask.TEXT_EMBEDDING,
                input={"text": "x"},
                model="00" * 32,
            ),
            "takes no model",
        ),
        (
            Submission(
                tenant_id="acme",
                task=InferenceTask.TEXT_EMBEDDING,
                input={"text": "x"},
                attributes={"bad name": "v"},
            ),
            "attribute name 'bad name'",
        ),
    ],
)
def test_wrong_field_types_are_refused_naming_the_field(
    platform: Platform, engine: Engine, submission: Submission, message: str
) -> None:
    before = counts(engine)
    with pytest.raises(InferenceInputError, match=re.escape(message)):
        submit(platform, submission)
    assert counts(engine) == before


@pytest.fixture
def small_inputs(engine: Engine, data_dir: Path) -> Platform:
    settings = Settings(data_dir=data_dir, inference={"max_input_bytes": 1024})
    return Platform(engine=engine, settings=settings, migrations_head=head_revision())


def test_inputs_over_the_limit_are_refused(
    small_inputs: Platform, platform: Platform, engine: Engine, ingest: Ingest
) -> None:
    before = counts(engine)
    with pytest.raises(
        InferenceInputError, match=r"1500 bytes, over \[inference\] max_input_bytes \(1024\)"
    ):
        submit(small_inputs, _embedding("x" * 1500))
    assert counts(engine) == before
    # A stored atom over the limit is refused the same way when named by id.
    (atom_hex,) = ingest("acme", {"long.txt": "word " * 400})
    before = counts(engine)
    with pytest.raises(InferenceInputError, match="2000 bytes, over"):
        submit(small_inputs, _embedding({"atom_id": atom_hex}))
    assert counts(engine) == before


def test_another_tenants_atom_is_not_found(
    platform: Platform, engine: Engine, ingest: Ingest
) -> None:
    (theirs,) = ingest("globex", {"secret.txt": "globex's private memo"})
    before = counts(engine)
    with pytest.raises(InferenceInputError, match=f"atom {theirs} not found") as refused:
        submit(platform, _embedding({"atom_id": theirs}))
    assert "forbidden" not in str(refused.value)
    unknown = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(InferenceInputError, match=f"atom {unknown} not found"):
        submit(platform, _embedding({"atom_id": unknown}))
    assert counts(engine) == before


def _echo(context: TaskContext) -> TaskResult:
    raise AssertionError("never run: submission refuses first")


@pytest.fixture
def onnx_stand_in() -> Iterator[None]:
    """A stand-in `onnx_run` so that submission's model checks can be reached."""
    with registered(InferenceTask.ONNX_RUN, _echo):
        yield


def _ingest_model(engine: Engine, tenant: str) -> str:
    model = Path(onnxruntime.__file__).parent / "datasets" / "sigmoid.onnx"
    outcome = ingest_paths(engine, IngestRequest(tenant_id=tenant), [model])
    (stored,) = outcome.files
    assert stored.status == "ingested", stored
    return str(stored.atom_id)


def test_unknown_and_other_tenants_models_are_not_found(
    platform: Platform, engine: Engine, onnx_stand_in: None
) -> None:
    theirs = _ingest_model(engine, "globex")
    tensor = {"x": {"dtype": "float32", "shape": [1], "data": [0.5]}}
    before = counts(engine)
    for model in (theirs, "ab" * 32):
        with pytest.raises(InferenceInputError, match=f"model {model} not found"):
            submit(
                platform,
                Submission(
                    tenant_id="acme",
                    task=InferenceTask.ONNX_RUN,
                    input={"inputs": tensor},
                    model=model,
                ),
            )
    assert counts(engine) == before
    with pytest.raises(InferenceInputError, match="onnx_run needs a model"):
        submit(
            platform,
            Submission(tenant_id="acme", task=InferenceTask.ONNX_RUN, input={"inputs": tensor}),
        )
    with pytest.raises(InferenceInputError, match="data holds NaN"):
        submit(
            platform,
            Submission(
                tenant_id="acme",
                task=InferenceTask.ONNX_RUN,
                input={"inputs": {"x": {"dtype": "float32", "shape": [1], "data": [float("nan")]}}},
                model=theirs,
            ),
        )


def test_a_task_without_an_implementation_is_not_available(
    platform: Platform, engine: Engine
) -> None:
    before = counts(engine)
    with (
        registered(InferenceTask.ONNX_RUN, None),
        pytest.raises(TaskNotAvailableError, match="inference task onnx_run is not available"),
    ):
        submit(
            platform,
            Submission(tenant_id="acme", task=InferenceTask.ONNX_RUN, input={}, model="ab" * 32),
        )
    assert counts(engine) == before


def test_an_unknown_tenant_is_refused(platform: Platform, engine: Engine) -> None:
    before = counts(engine)
    with pytest.raises(UnknownTenantError):
        submit(
            platform,
            Submission(tenant_id="nobody", task=InferenceTask.TEXT_EMBEDDING, input={"text": "x"}),
        )
    assert counts(engine) == before


def test_unknown_and_disabled_tenants_are_refused_whichever_way_the_request_is_stored(
    platform: Platform, engine: Engine, onnx_stand_in: None
) -> None:
    """A request with inline tensors only is checked and queued by one statement; one that
    stores inputs (a text) or names atoms in a transaction: both refuse alike, writing
    nothing."""
    model = _ingest_model(engine, add_tenant(engine, "initech"))
    with engine.begin() as connection:
        set_tenant_state(connection, "initech", "disabled")
    inline_only = Submission(
        tenant_id="initech",
        task=InferenceTask.ONNX_RUN,
        input={"inputs": {"x": {"dtype": "float32", "shape": [1], "data": [0.5]}}},
        model=model,
    )
    stored = Submission(tenant_id="initech", task=InferenceTask.TEXT_EMBEDDING, input={"text": "x"})
    before = counts(engine)
    for submission in (inline_only, stored):
        with pytest.raises(TenantDisabledError, match="tenant 'initech' is disabled"):
            submit(platform, submission)
        with pytest.raises(UnknownTenantError, match="unknown tenant 'nobody'"):
            submit(platform, replace(submission, tenant_id="nobody"))
    assert counts(engine) == before


def test_a_failure_at_run_time_writes_only_the_error_and_a_stream_of_input_and_error(
    platform: Platform, engine: Engine
) -> None:
    for submission, reason in (
        (_embedding("🙂🙂🙂"), "characters the text model does not know"),
        (
            Submission(
                tenant_id="acme", task=InferenceTask.CLASSIFICATION, input={"text": "hello"}
            ),
            "tenant 'acme' has no labelled text to classify by",
        ),
    ):
        submitted = submit(platform, submission)
        before = counts(engine)
        view = finished(platform, "acme", submitted.inference_id)
        assert view.status is InferenceStatus.FAILED
        assert view.error is not None
        assert reason in view.error
        assert view.output is None
        assert view.usage_units is None
        assert view.steps == []
        after = counts(engine)
        # One stream more, nothing else: no steps, no atoms, no output holdings.
        assert after == {**before, "generation_streams": before["generation_streams"] + 1}
        stream = stream_of(engine, view)
        assert [s.kind for s in stream.segments] == [SegmentKind.Input, SegmentKind.Control]
        assert reason.encode() in stream.segments[1].payload


def test_an_unknown_inference_is_not_found(platform: Platform) -> None:
    from hartonomous.services.inference import InferenceNotFoundError

    with pytest.raises(InferenceNotFoundError):
        get(platform, "acme", uuid.uuid4())


def test_a_model_with_external_weights_is_never_answered_from_the_cache(
    platform: Platform, tmp_path: Path
) -> None:
    """Its weights are found among the tenant's holdings when the job runs: after the folder
    is ingested again with new weights, the same request must meet the new weights."""
    tenant = add_tenant(platform.engine, "acme")
    first = write_mlp(tmp_path / "v1", seed=1)
    model = ingest_files(platform.engine, tenant, first.parent)["mlp.onnx"]
    request = {"inputs": {"x": inline(np.ones((1, 8), dtype=np.float32))}}

    def outcome() -> InferenceView:
        submitted = submit(
            platform, Submission(tenant, InferenceTask.ONNX_RUN, request, model=model)
        )
        assert not submitted.cache_hit
        view = finished(platform, tenant, submitted.inference_id)
        assert view.status == "completed", view.error
        return view

    before = outcome()
    second = write_mlp(tmp_path / "v2", seed=2)  # the same graph: the same model atom
    assert ingest_files(platform.engine, tenant, second.parent)["mlp.onnx"] == model
    after = outcome()
    assert after.output is not None
    assert before.output is not None
    assert after.output["outputs"] != before.output["outputs"]
