"""Text embedding speed: sentences/s at batch 32 and single-sentence latency.

Run with ``python benchmarks/embed.py``. It uses the 200 fixture sentences (the ones the
sentence-transformers reference was measured on) and compares with that reference: torch on CPU,
86 sentences/s at batch 32 and 28 ms per single sentence on a 2-core machine of this kind.
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime

from hartonomous.embed import MiniLMTextEmbedder

SENTENCES = Path(__file__).parents[1] / "tests" / "data" / "minilm" / "sentences.json"
REFERENCE_SENTENCES_PER_S = 86.0
REFERENCE_SINGLE_MS = 28.0
TARGET_THROUGHPUT_RATIO = 2.0
TARGET_SINGLE_MS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repetitions", type=int, default=5, help="timed passes over the set")
    parser.add_argument("--singles", type=int, default=200, help="single-sentence calls timed")
    args = parser.parse_args()

    sentences: list[str] = json.loads(SENTENCES.read_text(encoding="utf-8"))
    embedder = MiniLMTextEmbedder()
    started = time.perf_counter()
    embedder.load()
    load_s = time.perf_counter() - started
    embedder.embed(sentences, batch_size=args.batch_size)  # warm-up: first calls allocate

    rates = []
    for _ in range(args.repetitions):
        started = time.perf_counter()
        embedder.embed(sentences, batch_size=args.batch_size)
        rates.append(len(sentences) / (time.perf_counter() - started))

    latencies_ms = []
    for index in range(args.singles):
        sentence = [sentences[index % len(sentences)]]
        started = time.perf_counter()
        embedder.embed(sentence)
        latencies_ms.append((time.perf_counter() - started) * 1000.0)
    p50, p95 = np.percentile(latencies_ms, [50, 95])

    rate = statistics.median(rates)
    print(f"cpus: {os.cpu_count()}  onnxruntime {onnxruntime.__version__}")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"model load: {load_s:.2f} s")
    print(
        f"throughput, batch {args.batch_size}, {len(sentences)} sentences x {args.repetitions}: "
        f"{rate:.0f} sentences/s median ({min(rates):.0f}-{max(rates):.0f})"
    )
    print(f"single sentence, {args.singles} calls: p50 {p50:.2f} ms, p95 {p95:.2f} ms")
    print(
        f"reference (sentence-transformers, torch CPU): {REFERENCE_SENTENCES_PER_S:.0f} "
        f"sentences/s, {REFERENCE_SINGLE_MS:.0f} ms single"
    )
    print(
        f"ratios: throughput x{rate / REFERENCE_SENTENCES_PER_S:.1f} "
        f"(target x{TARGET_THROUGHPUT_RATIO:.0f}), "
        f"single sentence x{REFERENCE_SINGLE_MS / p50:.1f} faster at p50 "
        f"(target p50 <= {TARGET_SINGLE_MS:.0f} ms)"
    )


if __name__ == "__main__":
    main()
