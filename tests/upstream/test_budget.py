"""Budget accounting: sliding windows (fake clock in memory, real Redis), priority reserves, settling
token estimates with real usage, and per-key limits."""

from __future__ import annotations

import pytest

from gateway.auth import ClientKey
from gateway.config import build_config
from gateway.context import settle_holds
from gateway.errors import RateLimited
from gateway.limits import KeyLimits
from gateway.redisio import RedisIO
from gateway.request import ChatRequest
from gateway.upstream.budget import MemoryWindows, RedisWindows, UpstreamBudget, estimate_tokens


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def config(**deployment):
    return build_config(
        {
            "auth": {"open": True},
            "deployments": {"d": {"base_url": "http://127.0.0.1:1", "model": "m", **deployment}},
            "models": {"m": {"deployments": ["d"]}},
            "resilience": {"batch_reserve": 0.3, "normal_reserve": 0.1},
            "intents_file": "intents.yaml",
        }
    )


@pytest.fixture
async def redis_windows(redis_io):
    yield RedisWindows(redis_io.use("budget")), redis_io.client


def test_estimate_tokens():
    body = {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}
    assert estimate_tokens(body) == 150
    assert estimate_tokens({**body, "n": 2}) == 200
    assert (
        estimate_tokens({"messages": [{"role": "user", "content": [{"type": "text", "text": "y" * 40}]}]}) == 10 + 256
    )
    assert estimate_tokens({"input": ["a" * 40, "b" * 40]}) == 20


async def test_window_caps_and_slides():
    clock = Clock()
    windows = MemoryWindows(clock=clock)
    for _ in range(5):
        assert (await windows.take("k", (5, None), (1, 0))).ok
        clock.now += 1
    refused = await windows.take("k", (5, None), (1, 0))
    assert not refused.ok and refused.wait_s == pytest.approx(56.0)  # the first second leaves the window
    clock.now += 55.9
    assert not (await windows.take("k", (5, None), (1, 0))).ok
    clock.now += 0.2
    assert (await windows.take("k", (5, None), (1, 0))).ok


async def test_tokens_cap_and_adjust():
    clock = Clock()
    windows = MemoryWindows(clock=clock)
    grant = await windows.take("k", (None, 1000), (1, 800))
    assert grant.ok
    assert not (await windows.take("k", (None, 1000), (1, 300))).ok
    await windows.adjust("k", grant.bucket, 100 - 800)  # the answer used 100 tokens, not 800
    assert (await windows.take("k", (None, 1000), (1, 300))).ok
    assert (await windows.take("k", (None, 1000), (1, 5000))).wait_s == -1  # never fits


async def test_priority_reserves():
    cfg = config(rpm=10)
    budget = UpstreamBudget(cfg, MemoryWindows(clock=Clock()))
    d = cfg.deployments["d"]
    assert [(await budget.acquire("d", d, "batch", 1)).ok for _ in range(8)] == [True] * 7 + [False]
    assert [(await budget.acquire("d", d, "normal", 1)).ok for _ in range(3)] == [True, True, False]
    assert [(await budget.acquire("d", d, "critical", 1)).ok for _ in range(2)] == [True, False]


async def test_batch_yields_to_the_critical_demand_the_budget_could_not_serve():
    """A static share alone, taken in arrival order, lets batch back in as soon as the window's total falls
    under its share; counted demand keeps batch out while critical asked more than the budget gave."""
    clock = Clock()
    cfg = config(rpm=10)
    budget = UpstreamBudget(cfg, MemoryWindows(clock=clock))
    d = cfg.deployments["d"]
    assert [(await budget.acquire("d", d, "batch", 1)).ok for _ in range(5)] == [True] * 5
    clock.now += 30
    # 10 critical ask, 5 fit (the others went elsewhere, or were refused): a demand of 10 this window
    assert [(await budget.acquire("d", d, "critical", 1)).ok for _ in range(10)] == [True] * 5 + [False] * 5
    clock.now += 31  # the batch requests of the first second leave the window: 5 of 10 used
    refused = await budget.acquire("d", d, "batch", 1)
    assert not refused.ok and 0 < refused.wait_s <= 30  # until the critical demand ages out
    assert not (await budget.acquire("d", d, "normal", 1)).ok  # normal yields to critical the same way
    assert [(await budget.acquire("d", d, "critical", 1)).ok for _ in range(6)] == [True] * 5 + [False]

    share_only = MemoryWindows(clock=clock)  # the same arrivals, a share of the cap and nothing else
    for _ in range(5):
        await share_only.take("d", (7, None), (1, 0))
    clock.now += 30
    for _ in range(10):
        await share_only.take("d", (10, None), (1, 0))
    clock.now += 31
    assert (await share_only.take("d", (7, None), (1, 0))).ok  # batch served ahead of critical


async def test_the_lua_script_admits_as_the_memory_windows_do(redis_io):
    """One mixed sequence (well within a window: no bucket ages out) gives the same grants in both."""
    cfg = config(rpm=20, tpm=5000)
    d = cfg.deployments["d"]
    sequence = [("batch", 50)] * 6 + [("critical", 300), ("normal", 200), ("batch", 50)] * 6 + [("critical", 400)] * 6
    grants = {}
    for name, windows in (("memory", MemoryWindows()), ("redis", RedisWindows(redis_io.use("budget")))):
        budget = UpstreamBudget(cfg, windows)
        grants[name] = [(await budget.acquire("d", d, p, tokens)).ok for p, tokens in sequence]
    assert grants["redis"] == grants["memory"]
    assert grants["memory"].count(False) > 0 and grants["memory"].count(True) > 0


async def test_settle_corrects_the_token_estimate():
    cfg = config(tpm=1000)
    windows = MemoryWindows(clock=Clock())
    budget = UpstreamBudget(cfg, windows)
    d = cfg.deployments["d"]
    req = ChatRequest(body={}, alias="m", headers={})
    grant = await budget.acquire("d", d, "critical", 600)
    budget.hold(req, "d", d, grant, 600)
    assert windows.used("budget:d") == (1, 600)
    await settle_holds(req.holds, {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50}, "d")
    assert windows.used("budget:d") == (1, 50)


async def test_settling_gives_back_what_nobody_used():
    """A failed attempt's hold, and every hold of a request nobody served, are given back."""
    cfg = config(tpm=1000)
    windows = MemoryWindows(clock=Clock())
    budget = UpstreamBudget(cfg, windows)
    d = cfg.deployments["d"]
    req = ChatRequest(body={}, alias="m", headers={})
    for _ in range(2):  # a failed attempt, then a retry that served
        budget.hold(req, "d", d, await budget.acquire("d", d, "critical", 300), 300)
    assert windows.used("budget:d") == (2, 600)
    await settle_holds(req.holds, {"total_tokens": 40}, "d")
    assert windows.used("budget:d") == (2, 40)

    failed = ChatRequest(body={}, alias="m", headers={})
    budget.hold(failed, "d", d, await budget.acquire("d", d, "critical", 300), 300)
    await settle_holds(failed.holds, None, None)
    assert windows.used("budget:d") == (3, 40)

    cut = ChatRequest(body={}, alias="m", headers={})  # served, usage unknown (the client left a stream)
    budget.hold(cut, "d", d, await budget.acquire("d", d, "critical", 300), 300)
    await settle_holds(cut.holds, None, "d")
    assert windows.used("budget:d") == (4, 340)


async def test_redis_windows_are_shared_and_atomic(redis_windows):
    import asyncio

    windows, client = redis_windows
    other = RedisWindows(windows.use.io.use("other"))
    grants = await asyncio.gather(*[(windows if i % 2 else other).take("k", (25, 10_000), (1, 100)) for i in range(60)])
    assert sum(g.ok for g in grants) == 25
    refused = next(g for g in grants if not g.ok)
    assert 0 < refused.wait_s <= 61
    ok = next(g for g in grants if g.ok)
    await windows.adjust("k", ok.bucket, -50)
    total = sum(int(v) for v in (await client.hgetall(windows._keys("k")[1])).values())
    assert total == 25 * 100 - 50


class Broken:
    """A Redis client whose every command fails."""

    def register_script(self, script):
        async def run(*args, **kwargs):
            raise ConnectionError("down")

        return run

    async def get(self, *args, **kwargs):
        raise ConnectionError("down")

    set = delete = zadd = get


async def test_redis_failure_counts_a_local_share():
    """Redis away: each replica keeps to limit / live replicas, in process (never unlimited)."""
    io = RedisIO(Broken(), prefix="x:")
    windows = RedisWindows(io.use("budget"))
    assert [(await windows.take("k", (4, None), (1, 0))).ok for _ in range(5)] == [True] * 4 + [False]
    io.replicas = 2
    assert not (await windows.take("k2", (4, None), (3, 0))).ok  # 3 > 4 / 2
    assert [(await windows.take("k3", (4, None), (1, 0))).ok for _ in range(3)] == [True, True, False]


def chat(key: ClientKey, content: str = "hello", **body) -> ChatRequest:
    return ChatRequest(
        body={"model": "m", "messages": [{"role": "user", "content": content}], **body}, alias="m", headers={}, key=key
    )


async def test_key_limits_rpm_and_tpm():
    limits = KeyLimits(MemoryWindows(clock=Clock()))
    key = ClientKey("k", rpm=2)
    await limits.admit(chat(key))
    await limits.admit(chat(key))
    with pytest.raises(RateLimited) as info:
        await limits.admit(chat(key))
    assert info.value.status == 429 and int(info.value.headers["retry-after"]) >= 1
    await limits.admit(chat(ClientKey("unlimited")))

    key = ClientKey("t", tpm=300)
    req = chat(key, max_tokens=200)
    await limits.admit(req)  # 201 estimated
    with pytest.raises(RateLimited):
        await limits.admit(chat(key, max_tokens=200))
    await settle_holds(req.holds, {"total_tokens": 20}, "somewhere")
    await limits.admit(chat(key, max_tokens=200))
    with pytest.raises(RateLimited, match="larger than"):
        await limits.admit(chat(key, max_tokens=1000))
