"""The priority scenario of issue 11, several rounds: three providers of one model at 60/20/20 rpm, one route
each, two gateways sharing one Redis, 100 mixed requests at once per round (67 critical, 10 normal, 23 batch,
a new shuffle each round, a new Redis prefix and fresh providers each round).

    .venv/bin/python loadtests/bench_priorities.py [--rounds 5]

Prints, per priority, requests served and refused over all rounds, and the provider calls over their rpm
(must be 0). Figures go to loadtests/README.md. Needs Redis on 127.0.0.1:6379 (db 15).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections import Counter

import openai

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateway.embeddings import Embedder
from gateway.mock_upstream import MockServerThread, MockSettings
from tests.conftest import TEST_KEY, GatewayServer, delete_prefix
from tests.integration import test_priorities as scenario


async def one_round(seed: int, embedder: Embedder) -> tuple[Counter, int]:
    mocks = {
        name: MockServerThread(MockSettings(served_model="m", rpm_limit=rpm)) for name, rpm in scenario.BUDGETS.items()
    }
    for mock in mocks.values():
        mock.start()
    prefix = f"gwbench:{uuid.uuid4().hex[:12]}:"
    config = scenario.scenario_config(mocks, prefix)
    gateways = [GatewayServer(config, embedder=embedder).__enter__() for _ in range(2)]
    clients = [openai.AsyncOpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=30) for gw in gateways]
    try:
        outcomes = await scenario.run_scenario(clients, seed=seed)
        over = sum(mock.stats()["rpm_exceeded"] for mock in mocks.values())
    finally:
        for client in clients:
            await client.close()
        for gw in gateways:
            gw.__exit__(None, None, None)
        for mock in mocks.values():
            mock.stop()
        delete_prefix(prefix)
    return outcomes, over


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    embedder = Embedder.load(model="static")
    total: Counter = Counter()
    over = 0
    for seed in range(args.rounds):
        outcomes, round_over = await one_round(seed, embedder)
        total.update(outcomes)
        over += round_over
        print(f"round {seed}: {dict(sorted(outcomes.items()))}, over rpm {round_over}", flush=True)
    print(f"\n{args.rounds} rounds of 100 (60/20/20 rpm, one route each, two gateways):")
    for priority in ("critical", "normal", "batch"):
        served, refused = total[priority, 200], total[priority, 429]
        print(f"  {priority:8s} served {served:4d}  refused {refused:4d}  ({refused / max(1, served + refused):.0%})")
    print(f"  provider calls over their rpm: {over}")


if __name__ == "__main__":
    asyncio.run(main())
