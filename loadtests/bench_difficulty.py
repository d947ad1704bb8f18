"""Decision time of the difficulty scorer, against an older commit's scorer in the same run.

    python loadtests/bench_difficulty.py [FILE.jsonl ...] [--repeat 20] [--reference REV] [--words 10-40]

`score()` is timed alone (features + dot products), features-only (no vector) and with the request's vector
(the static embedding the gateway computes anyway, once per request, shared with intents and the cache; its
own time is printed apart). CPU time per decision is the figure to quote on a loaded machine (preemption
does not inflate it); wall-clock percentiles come from single calls. With --reference, the scorer of that
commit (its gateway/routing/{difficulty,features,form}.py and weights, taken with `git show`) is timed on the
same prompts in alternating rounds, and the ratio printed. Cold: the first pass, every word new to the
scorer's per-word memo; warm: later passes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from gateway.embeddings import Embedder
from gateway.routing.difficulty import DifficultyScorer, DifficultySettings, last_user_text
from gateway.routing.train import read_rows, row_messages

DEFAULT_FILES = ("data/routing/prompts_test.jsonl", "data/routing/adversarial_test.jsonl")
_OLD_FILES = ("difficulty.py", "features.py", "form.py", "scan.py", "difficulty_model.json")  # those it has


def reference_scorer(rev: str, tmp: Path) -> Any:
    """The scorer of commit `rev`, imported as package `reference_routing` from a temporary copy."""
    package = tmp / "reference_routing"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in _OLD_FILES:
        shown = subprocess.run(["git", "show", f"{rev}:gateway/routing/{name}"], capture_output=True, text=True)
        if shown.returncode != 0:  # not there yet at that commit (scan.py)
            continue
        text = shown.stdout
        if name.endswith(".py"):
            text = text.replace("gateway.routing.", "reference_routing.")
        (package / name).write_text(text)
    sys.path.insert(0, str(tmp))
    module = importlib.import_module("reference_routing.difficulty")
    return module.DifficultyScorer.load(module.DifficultySettings(model_path=str(package / "difficulty_model.json")))


def ms(samples: list[float]) -> str:
    a = np.asarray(samples) * 1000
    return f"p50 {np.percentile(a, 50):.3f} ms  p95 {np.percentile(a, 95):.3f} ms  p99 {np.percentile(a, 99):.3f} ms"


def cpu_per_call(score: Any, conversations: list[list[dict[str, Any]]], vectors: list[Any], repeat: int) -> float:
    t0 = time.process_time()
    for _ in range(repeat):
        for messages, vector in zip(conversations, vectors):
            score(messages, vector)
    return (time.process_time() - t0) / (repeat * len(conversations))


def wall_samples(score: Any, conversations: list[list[dict[str, Any]]], vectors: list[Any]) -> list[float]:
    out = []
    for messages, vector in zip(conversations, vectors):
        t0 = time.perf_counter()
        score(messages, vector)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("files", nargs="*", default=list(DEFAULT_FILES))
    parser.add_argument("--repeat", type=int, default=20, help="passes over the prompts per timing")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (new, reference)")
    parser.add_argument("--reference", help="git revision whose scorer to compare with")
    parser.add_argument("--words", default="10-40", help="keep prompts of this many words (a-b; 'all')")
    args = parser.parse_args()

    rows = [row for path in args.files for row in read_rows(path)]
    if args.words != "all":
        low, high = (int(v) for v in args.words.split("-"))
        rows = [r for r in rows if low <= len(last_user_text(row_messages(r)).split()) <= high]
    conversations = [row_messages(r) for r in rows]
    texts = [last_user_text(m) for m in conversations]
    embedder = Embedder.load(model="static")
    vectors: list[Any] = [None] * len(rows)
    embed_times: list[float] = []
    if embedder.available:
        for i, text in enumerate(texts):
            t0 = time.perf_counter()
            vectors[i] = embedder.encode([text])[0]
            embed_times.append(time.perf_counter() - t0)
    none = [None] * len(rows)
    new = DifficultyScorer.load(DifficultySettings())
    print(
        f"{len(rows)} prompts of {args.words} words from {', '.join(args.files)}, "
        f"mean {np.mean([len(t.split()) for t in texts]):.0f} words; {args.repeat} passes x {args.rounds} rounds"
    )
    cold = cpu_per_call(new.score, conversations, none, 1)
    print(f"new scorer, cold (first pass, every word new to the memo): {cold * 1e6:.1f} µs CPU per decision")

    with tempfile.TemporaryDirectory() as tmp:
        old = reference_scorer(args.reference, Path(tmp)) if args.reference else None
        results: dict[str, list[float]] = {}
        walls: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for label, scorer in (("new", new), ("reference", old)):
                if scorer is None:
                    continue
                for kind, vecs in (("features only", none), ("with static vector", vectors)):
                    if kind != "features only" and not embedder.available:
                        continue
                    key = f"{label}, {kind}"
                    results.setdefault(key, []).append(cpu_per_call(scorer.score, conversations, vecs, args.repeat))
                    walls.setdefault(key, []).extend(wall_samples(scorer.score, conversations, vecs))
        for key, values in results.items():
            print(f"{key:34s} CPU mean {np.median(values) * 1e6:7.1f} µs (median of rounds)  wall {ms(walls[key])}")
        if old is not None:
            for kind in ("features only", "with static vector"):
                if f"new, {kind}" in results:
                    ratio = np.median(results[f"new, {kind}"]) / np.median(results[f"reference, {kind}"])
                    print(f"new / reference ({kind}): x{ratio:.2f}")
    if embed_times:
        print(f"static embedding (not part of the decision; computed once per request): {ms(embed_times)}")


if __name__ == "__main__":
    main()
