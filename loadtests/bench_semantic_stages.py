"""CPU of each stage of the semantic lookup for a question never asked before, in process, no HTTP, no Redis.

    .venv/bin/python loadtests/bench_semantic_stages.py                          # this tree
    .venv/bin/python loadtests/bench_semantic_stages.py --gateway-dir /tmp/old   # another checkout, to alternate

A partition of `--stored` bench questions (bench_semantic_path.questions: each of another content), each asked
once first (as in the gateway, where a stored question was a miss whose analyses are memoised), then
`--asked` new ones: what the language part, the language detector, the static embedding and the verifier
(the partition's product, the vetoes on up to 8 neighbours, the features of those left) cost each on average.
`--sweep MB`: that many MB of memory are read between two questions (not timed), so each question starts with
the CPU caches as a server's other work leaves them (32: the whole L3 of these machines; 4: the L2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway-dir", default=str(HERE.parent))
    parser.add_argument("--stored", type=int, default=2000)
    parser.add_argument("--asked", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sweep", type=float, default=0.0, help="MB of memory read between two questions")
    args = parser.parse_args(argv)
    sys.path.insert(0, args.gateway_dir)
    sys.path.insert(0, str(HERE))
    from bench_semantic_path import questions

    from gateway.cache.language import LanguageDetector
    from gateway.cache.semantic import Candidates, language_part
    from gateway.cache.verifier import Verifier
    from gateway.static_embedding import default_model

    model, verifier, detector = default_model(), Verifier.load(), LanguageDetector.load()
    texts = questions(seed=args.seed, n=args.stored + args.asked)
    stored, asked = texts[: args.stored], texts[args.stored :]
    candidates = Candidates.from_rows([(text, model.embed(text), i) for i, text in enumerate(stored)])
    for text in stored:
        verifier.best(text, model.embed(text), candidates)

    import numpy as np

    sweep = np.ones(int(args.sweep * 2**20) // 4, dtype=np.float32) if args.sweep else None

    def stage(name, work, items):
        if sweep is None:
            started = time.process_time()
            out = [work(item) for item in items]
            spent = time.process_time() - started
        else:
            out, spent = [], 0.0
            for item in items:
                sweep.sum()
                started = time.process_time()
                out.append(work(item))
                spent += time.process_time() - started
        print(f"{name:15s} {spent / len(items) * 1e6:8.1f} µs", flush=True)
        return out

    parts = stage("language part", language_part, asked)
    stage("language", detector.detect, parts)
    vectors = stage("embedding", model.embed, asked)
    hits = stage("verifier", lambda pair: verifier.best(pair[0], pair[1], candidates), list(zip(asked, vectors)))
    print(f"hits {sum(hit is not None for hit in hits)} of {len(asked)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
