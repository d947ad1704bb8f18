"""A pool of questions sent through a running gateway, the way the issue measured the cache: each question once, in
a seeded shuffle, with the `openai` SDK; every hit's answer scored by the question it answers.

    gateway demo --port 8095 &                                    # a fresh cache: the demo's in-memory one
    .venv/bin/python scripts/pool_over_http.py data/cache/pool_fresh33.jsonl --port 8095

The upstream must echo the question at the start of its answer, as the demo's mock does ("Mock answer to:
<question, its first 60 characters> ..."): a hit is right when the question it echoes belongs to the asking
question's (group, lang). A pool with a `shop` column is sent one shop at a time (`--shop`, default the
first), since the demo's cache is one shared cache. Prints the counts, then `precision P recall R` as
`gateway cache eval` defines them (recall: right hits / (right hits + misses whose key was already asked)),
then each wrong hit.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

ECHO = "Mock answer to: "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pool")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shop", help="the shop to send (pools with a shop column); default: the first")
    parser.add_argument("--model", default="gpt-3.5-turbo")
    args = parser.parse_args(argv)
    from openai import OpenAI

    rows = [json.loads(line) for line in Path(args.pool).read_text(encoding="utf-8").splitlines() if line.strip()]
    shops = sorted({row["shop"] for row in rows if "shop" in row})
    if shops:
        shop = args.shop or shops[0]
        rows = [row for row in rows if row.get("shop") == shop]
    random.Random(args.seed).shuffle(rows)
    keys = [(row["text"], (row["group"], row["lang"])) for row in rows]
    client = OpenAI(base_url=f"http://127.0.0.1:{args.port}/v1", api_key="pool", max_retries=2)
    asked: set[tuple[str, str]] = set()
    counts: Counter[str] = Counter()
    wrong = []
    for text, key in keys:
        raw = client.chat.completions.with_raw_response.create(
            model=args.model, messages=[{"role": "user", "content": text}], user="pool"
        )
        result = raw.headers.get("x-gateway-cache", "")
        if result.startswith("hit"):
            answer = raw.parse().choices[0].message.content or ""
            echoed = answer.split(ECHO, 1)[-1].split(" lorem ipsum")[0].rstrip(".")
            sources = {k for t, k in keys if t.startswith(echoed)}
            if sources == {key}:
                counts[f"{result} right"] += 1
            else:
                counts[f"{result} wrong"] += 1
                wrong.append((text, echoed))
        else:
            counts["miss, key asked before" if key in asked else "miss, key new"] += 1
        asked.add(key)
    right = sum(n for name, n in counts.items() if name.endswith("right"))
    false = sum(n for name, n in counts.items() if name.endswith("wrong"))
    missed = counts["miss, key asked before"]
    print(dict(counts))
    precision = right / (right + false) if right + false else 1.0
    recall = right / (right + missed) if right + missed else 0.0
    print(f"precision {precision:.3f} recall {recall:.3f}")
    for text, echoed in wrong:
        print(f"  wrong: {text!r} got the answer to {echoed!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
