"""The dispatcher's order of decisions with a fake transport, fake sleep and in-memory state."""

from __future__ import annotations

import pytest

from gateway.config import build_config
from gateway.errors import RateLimited, UpstreamStatus, UpstreamTimeout
from gateway.metrics import Metrics
from gateway.request import ChatRequest
from gateway.upstream.breaker import CircuitBreaker
from gateway.upstream.budget import MemoryWindows, UpstreamBudget
from gateway.upstream.client import UpstreamAnswer
from gateway.upstream.dispatcher import Dispatcher


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeTransport:
    """Answers per deployment URL from a script: an exception to raise, or 200."""

    def __init__(self, script: dict[str, list]) -> None:
        self.script = script
        self.calls: list[str] = []

    async def post(self, url, body, headers, timeouts):
        name = url.split("//")[1].split(".")[0]
        self.calls.append(name)
        todo = self.script.get(name, [])
        outcome = todo.pop(0) if todo else None
        if isinstance(outcome, Exception):
            raise outcome
        return UpstreamAnswer(200, {}, b'{"ok": true}')


def make(script, *, rpm=None, deadline_s=120.0, attempts=2):
    deployments = {
        name: {"base_url": f"http://{name}.test", "model": name, "rpm": rpm.get(name) if rpm else None}
        for name in ("light", "base", "heavy")
    }
    config = build_config(
        {
            "auth": {"open": True},
            "deployments": deployments,
            "intents_file": "intents.yaml",
            "models": {"m": {"deployments": ["light"], "fallbacks": ["base"], "heavy": ["heavy"]}},
            "resilience": {
                "retry": {"attempts": attempts, "base_s": 0.01, "deadline_s": deadline_s},
                "breaker": {"failures": 2, "window_s": 60, "cooldown_s": 30},
            },
        }
    )
    clock = Clock()
    transport = FakeTransport(script)
    metrics = Metrics()
    dispatcher = Dispatcher(
        config,
        transport,
        metrics,
        sleep=clock.sleep,
        breaker=CircuitBreaker(config.resilience.breaker, clock=clock, metrics=metrics),
        budget=UpstreamBudget(config, MemoryWindows(clock=clock)),
    )
    dispatcher.policy.sleep = clock.sleep
    return dispatcher, transport, clock, config


def request(priority="normal", tier="light") -> ChatRequest:
    req = ChatRequest(body={"model": "m", "messages": [{"role": "user", "content": "hi"}]}, alias="m", headers={})
    req.priority, req.tier = priority, tier
    return req


async def test_retries_then_falls_back_in_chain_order():
    dispatcher, transport, clock, config = make(
        {"light": [UpstreamStatus(500, b"")] * 2, "base": [UpstreamTimeout("slow")]}
    )
    req = request()
    await dispatcher.complete(req, config.chain("m", "light"))
    assert transport.calls == ["light", "light", "base", "base"] and req.served_by == "base"
    assert dispatcher.metrics.fallbacks.labels("light", "base")._value.get() == 1
    assert dispatcher.metrics.retries.labels("light", "5xx")._value.get() == 1


async def test_other_4xx_goes_straight_back():
    dispatcher, transport, clock, config = make({"light": [UpstreamStatus(400, b"")]})
    with pytest.raises(UpstreamStatus):
        await dispatcher.complete(request(), config.chain("m", "light"))
    assert transport.calls == ["light"]


async def test_open_circuit_is_skipped():
    dispatcher, transport, clock, config = make({"light": [UpstreamStatus(503, b"")] * 2}, attempts=1)
    for _ in range(3):
        req = request()
        await dispatcher.complete(req, config.chain("m", "light"))
        assert req.served_by == "base"
    assert transport.calls == ["light", "base", "light", "base", "base"]


async def test_batch_of_the_light_tier_stays_off_heavy():
    # 503: the deployments' fault (two identical 500s would make it the request's, test_hostile.py)
    dispatcher, transport, clock, config = make(
        {"light": [UpstreamStatus(503, b"")] * 9, "base": [UpstreamStatus(503, b"")] * 9}, attempts=1
    )
    with pytest.raises(UpstreamStatus):
        await dispatcher.complete(request("batch"), config.chain("m", "light"))
    assert "heavy" not in transport.calls
    req = request("critical")
    await dispatcher.complete(req, config.chain("m", "light"))
    assert req.served_by == "heavy"


async def test_budget_spent_critical_waits_batch_is_shed():
    dispatcher, transport, clock, config = make({}, rpm={"light": 2, "base": 1, "heavy": 1})
    chain = config.chain("m", "light")
    for _ in range(4):  # the whole chain's budget
        await dispatcher.complete(request("critical"), chain)
    with pytest.raises(RateLimited) as shed:
        await dispatcher.complete(request("batch"), chain)
    assert 0 < shed.value.retry_after_s <= 61 and clock.slept == [0.2]  # its hold, no wait for the window
    clock.slept.clear()
    req = request("critical")
    await dispatcher.complete(req, chain)  # waits for the window to free, within its deadline
    assert len(clock.slept) == 1 and 59 <= clock.slept[0] <= 61 and req.served_by == "light"


async def test_budget_wait_past_the_deadline_is_shed_at_once():
    dispatcher, transport, clock, config = make({}, rpm={"light": 1, "base": 1, "heavy": 1}, deadline_s=5)
    chain = config.chain("m", "light")
    for _ in range(3):
        await dispatcher.complete(request("critical"), chain)
    with pytest.raises(RateLimited):
        await dispatcher.complete(request("critical"), chain)
    assert clock.slept == []


async def test_critical_spent_on_its_route_goes_to_another_provider_of_the_model():
    """Two routes of one upstream model, each on a provider of its own: critical moves on to the other
    provider once its own route's budget is spent; normal and batch do not, and an error does not."""

    def two_routes(script):
        deployments = {name: {"base_url": f"http://{name}.test", "model": "same", "rpm": 2} for name in ("one", "two")}
        deployments["other"] = {"base_url": "http://other.test", "model": "different", "rpm": 10}
        config = build_config(
            {
                "auth": {"open": True},
                "deployments": deployments,
                "intents_file": "intents.yaml",
                "models": {name: {"deployments": [name]} for name in deployments},
                "resilience": {"batch_reserve": 0, "normal_reserve": 0, "retry": {"attempts": 1, "deadline_s": 5}},
            }
        )
        clock, transport, metrics = Clock(), FakeTransport(script), Metrics()
        dispatcher = Dispatcher(
            config,
            transport,
            metrics,
            sleep=clock.sleep,
            breaker=CircuitBreaker(config.resilience.breaker, clock=clock, metrics=metrics),
            budget=UpstreamBudget(config, MemoryWindows(clock=clock)),
        )
        return dispatcher, transport, config.chain("one", "light")

    dispatcher, transport, chain = two_routes({})
    for priority in ("critical", "normal"):
        await dispatcher.complete(request(priority), chain)
    for priority in ("normal", "batch"):
        with pytest.raises(RateLimited):
            await dispatcher.complete(request(priority), chain)
    served = request("critical")
    await dispatcher.complete(served, chain)
    assert served.served_by == "two" and transport.calls == ["one", "one", "two"]
    assert dispatcher.metrics.fallbacks.labels("one", "two")._value.get() == 1

    dispatcher, transport, chain = two_routes({"one": [UpstreamStatus(503, b"")]})
    with pytest.raises(UpstreamStatus):
        await dispatcher.complete(request("critical"), chain)
    assert transport.calls == ["one"]


async def test_batch_holds_back_so_that_a_bursts_critical_requests_go_first():
    """Batch first, two critical a moment later, a budget of 2: critical gets both (without the hold the
    batch request took one and a critical request was refused)."""
    import asyncio

    config = build_config(
        {
            "auth": {"open": True},
            "deployments": {"one": {"base_url": "http://one.test", "model": "m", "rpm": 2}},
            "intents_file": "intents.yaml",
            "models": {"m": {"deployments": ["one"]}},
            "resilience": {"batch_reserve": 0, "normal_reserve": 0, "retry": {"deadline_s": 5}},
        }
    )
    clock, metrics = Clock(), Metrics()

    async def sleep(seconds: float) -> None:  # fake time, but the other requests run meanwhile
        await clock.sleep(seconds)
        await asyncio.sleep(0)

    dispatcher = Dispatcher(
        config,
        FakeTransport({}),
        metrics,
        sleep=sleep,
        breaker=CircuitBreaker(config.resilience.breaker, clock=clock, metrics=metrics),
        budget=UpstreamBudget(config, MemoryWindows(clock=clock)),
    )
    chain = config.chain("m", "light")
    outcomes = await asyncio.gather(
        *(dispatcher.complete(request(p), chain) for p in ("batch", "critical", "critical")), return_exceptions=True
    )
    assert isinstance(outcomes[0], RateLimited) and not any(isinstance(o, Exception) for o in outcomes[1:])
