"""Inference: jobs that run a task (embedding, search, classification, an ONNX model) on a
tenant's data, each with its steps, its input and output atoms and an AtomicStream
(docs/inference.md). Application code calls it through ``hartonomous.services.inference``."""
