"""Priorities as an admission order, over real HTTP with the openai SDK: three providers of one model with
budgets of 60/20/20 rpm, each behind a route of its own (`chat-a`, `chat-b`, `chat-c`), two gateways sharing
them through Redis, 100 mixed requests at once (67 critical, 10 normal, 23 batch, spread over the routes).

Before (a static share taken in arrival order, no way out of a spent route): 12 of 67 critical got 429 while
13 batch were served. Now a critical request refused by its route's budget goes on to the providers of the
same model on other routes, and batch and normal yield to it (gateway.upstream.budget)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import openai
import pytest

from gateway.mock_upstream import MockServerThread, MockSettings
from tests.conftest import REDIS_URL, TEST_KEY, base_config

BUDGETS = {"a": 60, "b": 20, "c": 20}


@pytest.fixture
def providers():
    # each enforces its rpm like a provider does (sliding 60 s, every request over it counted)
    mocks = {name: MockServerThread(MockSettings(served_model="m", rpm_limit=rpm)) for name, rpm in BUDGETS.items()}
    for mock in mocks.values():
        mock.start()
    yield mocks
    for mock in mocks.values():
        mock.stop()


def scenario_config(providers, redis_prefix: str):
    deployments = {
        name: {"base_url": mock.url, "model": "m", "rpm": BUDGETS[name], "timeout": {"connect": 2, "read": 10}}
        for name, mock in providers.items()
    }
    return base_config(
        providers["a"].url,
        providers["a"].url,
        deployments=deployments,
        models={f"chat-{name}": {"deployments": [name]} for name in BUDGETS},
        # a loaded test machine must not push budget calls into the local fail-open share: this test is
        # about the admission order of the shared budget
        redis={"url": REDIS_URL, "prefix": redis_prefix, "timeout_ms": 3000},
        resilience={"retry": {"deadline_s": 20}},
        cache={"enabled": False},
        embedding={"enabled": False},
    )


def mixed_requests(seed: int = 11) -> list[tuple[str, str]]:
    """(route, priority) for 100 requests: routes in turn, priorities shuffled."""
    priorities = ["critical"] * 67 + ["normal"] * 10 + ["batch"] * 23
    random.Random(seed).shuffle(priorities)
    return [(f"chat-{'abc'[i % 3]}", priority) for i, priority in enumerate(priorities)]


async def run_scenario(clients: list[openai.AsyncOpenAI], seed: int = 11) -> Counter:
    outcomes: Counter = Counter()

    async def one(i: int, model: str, priority: str) -> None:
        try:
            await clients[i % len(clients)].chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"q {i}"}],
                extra_headers={"x-gateway-priority": priority},
            )
            outcomes[priority, 200] += 1
        except openai.RateLimitError as exc:
            assert exc.response.headers.get("retry-after")
            outcomes[priority, 429] += 1

    await asyncio.gather(*(one(i, model, priority) for i, (model, priority) in enumerate(mixed_requests(seed))))
    return outcomes


async def test_no_critical_refused_while_a_route_has_room(start_gateway, providers, redis_prefix):
    config = scenario_config(providers, redis_prefix)
    gateways = [start_gateway(config), start_gateway(config)]
    clients = [openai.AsyncOpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=30) for gw in gateways]
    try:
        outcomes = await run_scenario(clients)
    finally:
        for client in clients:
            await client.close()
    calls = {name: mock.stats()["chat_requests"] for name, mock in providers.items()}
    print(f"\npriorities 60/20/20 rpm, 100 mixed: {sorted(outcomes.items())}; provider calls {calls}")
    assert outcomes["critical", 429] == 0 and outcomes["critical", 200] == 67
    assert all(mock.stats()["rpm_exceeded"] == 0 for mock in providers.values())  # never over a provider's rpm
    assert all(calls[name] <= rpm for name, rpm in BUDGETS.items())
    # routes b and c get 33 or 34 requests each for 20 rpm: someone is refused, and it is batch and normal
    assert outcomes["batch", 429] + outcomes["normal", 429] > 0
    assert sum(outcomes.values()) == 100
