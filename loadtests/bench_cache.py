"""Benchmark of the intent cache, inside the gateway (python loadtests/bench_cache.py [--redis URL] [-n N]).

Prints, for the store given (the real Redis by default, `--redis ""` for the in-memory store):
  1. an exact hit through the whole pipeline, in process (auth → key → GET → render → metrics): p50/p95/p99,
     and the gateway's own x-gateway-overhead-ms over real HTTP; asserts p50 < 1 ms in process
  2. the added cost of a semantic lookup on an exact miss: embedding (a text never seen, so not memoised)
     + intent detection + partition search with guards + the answer's GET, p50/p95, with the partition
     pre-filled with --partition entries
  3. the number of embeddings computed during exact hits: asserted 0
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np
import uvicorn

from gateway.app import create_app
from gateway.cache import keys
from gateway.cache.store import VectorRow
from gateway.config import build_config
from gateway.embeddings import Embedder
from gateway.mock_upstream import MockServerThread, MockSettings
from gateway.request import ChatRequest

QUESTIONS = [
    "How can I get my money back?",
    "When will I get reimbursed?",
    "How long does a refund take?",
    "Can I get a refund on a damaged item?",
    "Is the refund made to my card?",
]
OPENERS = [
    "",
    "Hello, ",
    "Hi, ",
    "Please, ",
    "Quick question: ",
    "Good morning, ",
    "Hey, ",
    "Sorry to bother, ",
    "Excuse me, ",
    "Dear support, ",
    "Bonjour, ",
    "Hello again, ",
]
CLOSERS = ["", " Thanks.", " Thank you!", " Cheers.", " Regards.", " Thanks a lot.", " Many thanks.", " Merci."]


def percentiles(values: list[float]) -> str:
    q = np.percentile(values, [50, 95, 99])
    return f"p50 {q[0]:.3f} ms  p95 {q[1]:.3f} ms  p99 {q[2]:.3f} ms  (n={len(values)})"


def make_config(upstream: str, redis_url: str, prefix: str):
    return build_config(
        {
            "auth": {"open": True},
            "redis": {"url": redis_url or None, "prefix": prefix, "timeout_ms": 50},
            "deployments": {"light": {"base_url": upstream, "model": "gpt-3.5-turbo"}},
            "models": {"gpt-3.5-turbo": {"deployments": ["light"]}},
            "pricing_file": "pricing.yaml",
            "intents_file": "intents.yaml",
        }
    )


def request(text: str, **headers: str) -> ChatRequest:
    body = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": text}]}
    return ChatRequest(body=body, alias="gpt-3.5-turbo", headers=dict(headers))


async def in_process(config, embedder: Embedder, n: int, partition: int) -> dict:
    app = create_app(config, embedder=embedder)
    async with app.router.lifespan_context(app):
        state = app.state
        pipeline, cache = state.pipeline, state.cache
        embeds = {"n": 0}
        real_embed = embedder.embed

        async def counting_embed(text):
            embeds["n"] += 1
            return await real_embed(text)

        embedder.embed = counting_embed
        try:
            # a stored answer, then exact hits
            first_req = request("How do I get a refund?")
            first = await pipeline.chat(first_req)
            assert first_req.cache_result == "miss", first_req.cache_result
            for _ in range(50):  # warm up
                await pipeline.chat(request("How do I get a refund?"))
            embeds["n"] = 0
            exact, header = [], []
            for _ in range(n):
                req = request("How do I get a refund?")
                t0 = time.perf_counter()
                await pipeline.chat(req)
                exact.append((time.perf_counter() - t0) * 1000)
                header.append(req.overhead() * 1000)  # what x-gateway-overhead-ms says
                assert req.cache_result == "hit-exact"
            embeddings_on_hits = embeds["n"]

            # fill the refund partition, then semantic lookups of never-seen texts
            context = keys.context_key(request("x"))
            rng = np.random.default_rng(0)
            for i in range(partition):
                v = rng.standard_normal(embedder.encode(["x"]).shape[1]).astype(np.float32)
                await cache.backend.put(
                    f"bench{i}",
                    first.body,
                    "refund",
                    600,
                    VectorRow("refund", context, f"filler question {i}", v / np.linalg.norm(v)),
                )
            texts = [o + q + c for o, q, c in itertools.product(OPENERS, QUESTIONS, CLOSERS)]
            rng.shuffle(texts)
            semantic, outcomes = [], {}
            for text in texts[:n]:
                req = request(text)
                await cache.lookup_exact(req)  # a miss: not timed, it is the exact path
                t0 = time.perf_counter()
                req.vector = await embedder.embed(req.last_user_text)
                req.intent = pipeline.intents.detect(req.last_user_text, req.vector, None)
                await cache.lookup_semantic(req)
                semantic.append((time.perf_counter() - t0) * 1000)
                outcomes[req.cache_result] = outcomes.get(req.cache_result, 0) + 1
            search = []
            for text in texts[:n]:  # the same, embedding memoised: the lookup alone
                req = request(text)
                await cache.lookup_exact(req)
                req.vector = await embedder.embed(req.last_user_text)
                req.intent = "refund"
                t0 = time.perf_counter()
                await cache.lookup_semantic(req)
                search.append((time.perf_counter() - t0) * 1000)
        finally:
            embedder.embed = real_embed
            await cache.flush()
    return {
        "exact": exact,
        "header": header,
        "embeddings_on_hits": embeddings_on_hits,
        "semantic": semantic,
        "search": search,
        "outcomes": outcomes,
    }


def over_http(config, embedder: Embedder, n: int) -> list[float]:
    app = create_app(config, embedder=embedder)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/v1/chat/completions"
    body = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "What are your opening hours?"}]}
    overhead = []
    try:
        with httpx.Client() as client:
            client.post(url, json=body)
            for _ in range(n):
                response = client.post(url, json=body)
                assert response.headers["x-gateway-cache"] == "hit-exact"
                overhead.append(float(response.headers["x-gateway-overhead-ms"]))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return overhead


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15", help='"" for the in-memory store')
    parser.add_argument("-n", type=int, default=400)
    parser.add_argument("--partition", type=int, default=1000, help="entries in the searched partition")
    args = parser.parse_args()

    embedder = Embedder.load()
    if not embedder.available:
        print("the embedding model is unavailable: no semantic figures", file=sys.stderr)
        return 2
    prefix = f"gwbench:{uuid.uuid4().hex[:8]}:"
    with MockServerThread(MockSettings()) as mock:
        config = make_config(mock.url, args.redis, prefix)
        store = "RedisStore " + args.redis if args.redis else "MemoryStore"
        result = asyncio.run(in_process(config, embedder, args.n, args.partition))
        http = over_http(config, embedder, args.n)
        if args.redis:
            import redis

            client = redis.Redis.from_url(args.redis)
            stale = list(client.scan_iter(match=prefix + "*"))
            if stale:
                client.delete(*stale)

    print(f"store: {store}; semantic partition: {args.partition} entries; one embedding model: {embedder.name}")
    print(f"exact hit, whole pipeline in process:       {percentiles(result['exact'])}")
    print(f"exact hit, x-gateway-overhead-ms in process: {percentiles(result['header'])}")
    print(f"exact hit, x-gateway-overhead-ms over HTTP:  {percentiles(http)}")
    print(
        f"semantic lookup on an exact miss (embedding + intent + search + guards + GET): "
        f"{percentiles(result['semantic'])}  outcomes {result['outcomes']}"
    )
    print(f"semantic lookup alone (embedding memoised):  {percentiles(result['search'])}")
    print(f"embeddings computed during {len(result['exact'])} exact hits: {result['embeddings_on_hits']}")
    ok = statistics.median(result["exact"]) < 1.0 and result["embeddings_on_hits"] == 0
    print("OK: exact hit p50 < 1 ms, no embedding on exact hits" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
