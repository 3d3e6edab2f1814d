"""Model file readers: safetensors, GGUF and ONNX, described without touching the database."""

from hartonomous.ingest.models.sniff import read_model, sniff_model_format
from hartonomous.ingest.models.types import (
    ModelDescription,
    ModelFormatError,
    TensorInfo,
)

__all__ = [
    "ModelDescription",
    "ModelFormatError",
    "TensorInfo",
    "read_model",
    "sniff_model_format",
]
