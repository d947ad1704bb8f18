"""The breaker's state machine on a fake clock, in memory and in (real) Redis, and Redis failing."""

from __future__ import annotations

import pytest

from gateway.config import BreakerConfig
from gateway.metrics import Metrics
from gateway.redisio import RedisIO
from gateway.upstream.breaker import CircuitBreaker, RedisBreakerStore

CONFIG = BreakerConfig(failures=3, window_s=10, cooldown_s=5)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def fail(breaker: CircuitBreaker, name: str = "d", times: int = 1) -> None:
    for _ in range(times):
        permit = await breaker.allow(name)
        assert permit is not None
        await breaker.failure(permit)


@pytest.fixture
def shared(redis_io):
    return redis_io.use("breaker")


async def run_state_machine(make) -> None:
    clock = Clock()
    metrics = Metrics()
    breaker = make(clock, metrics)
    await fail(breaker, times=2)
    assert breaker.state("d") == "closed" and await breaker.allow("d") is not None
    clock.now += 11  # the first two failures leave the window
    await fail(breaker, times=2)
    assert breaker.state("d") == "closed"
    await fail(breaker)
    assert breaker.state("d") == "open"
    assert await breaker.allow("d") is None
    assert metrics.circuit_open.labels("d")._value.get() == 1
    clock.now += 4.9
    assert await breaker.allow("d") is None
    clock.now += 0.2  # cooldown over: one probe, and only one
    probe = await breaker.allow("d")
    assert probe is not None and probe.probe
    assert await breaker.allow("d") is None
    await breaker.failure(probe)  # the probe fails: open for another cooldown
    assert breaker.state("d") == "open" and await breaker.allow("d") is None
    clock.now += 5.1
    probe = await breaker.allow("d")
    assert probe.probe
    await breaker.success(probe)  # the probe succeeds: closed, counts start over
    assert breaker.state("d") == "closed"
    assert metrics.circuit_open.labels("d")._value.get() == 0
    await fail(breaker, times=2)
    assert breaker.state("d") == "closed" and await breaker.allow("d") is not None
    assert await breaker.allow("other") is not None


async def test_memory_state_machine():
    await run_state_machine(lambda clock, metrics: CircuitBreaker(CONFIG, clock=clock, metrics=metrics))


async def test_redis_state_machine(shared):
    await run_state_machine(
        lambda clock, metrics: CircuitBreaker(CONFIG, redis=shared, clock=clock, metrics=metrics, sync_s=0)
    )


async def test_released_probe_lets_another_through():
    clock = Clock()
    breaker = CircuitBreaker(CONFIG, clock=clock)
    await fail(breaker, times=3)
    clock.now += 6
    probe = await breaker.allow("d")
    await breaker.release(probe)  # cancelled: no verdict
    assert (await breaker.allow("d")).probe


async def test_replicas_share_one_breaker_through_redis(shared):
    clock = Clock()
    a = CircuitBreaker(CONFIG, redis=shared, clock=clock, sync_s=0)
    b = CircuitBreaker(CONFIG, redis=shared.io.use("other"), clock=clock, sync_s=0)
    await fail(a, times=2)
    await fail(b)  # the third failure, seen by another replica, opens it for both
    assert await a.allow("d") is None and await b.allow("d") is None
    clock.now += 6
    permits = [await a.allow("d"), await b.allow("d")]
    assert sum(p is not None for p in permits) == 1  # one probe across replicas
    probe = next(p for p in permits if p is not None)
    await (a if permits[0] else b).success(probe)
    assert await a.allow("d") is not None and await b.allow("d") is not None


async def test_redis_failure_falls_back_to_local_state():
    class Broken:
        def register_script(self, script):
            async def run(*args, **kwargs):
                raise ConnectionError("redis is down")

            return run

        async def get(self, *args, **kwargs):
            raise ConnectionError("redis is down")

        set = delete = get

    clock = Clock()
    breaker = CircuitBreaker(CONFIG, redis=RedisIO(Broken(), prefix="x:").use("breaker"), clock=clock, sync_s=0)
    await fail(breaker, times=3)
    assert await breaker.allow("d") is None
    clock.now += 6
    probe = await breaker.allow("d")
    await breaker.success(probe)
    assert breaker.state("d") == "closed"


async def test_hold_keeps_a_deployment_out_for_retry_after_on_every_replica(shared):
    clock = Clock()
    a = CircuitBreaker(CONFIG, redis=shared, clock=clock, sync_s=0)
    b = CircuitBreaker(CONFIG, redis=shared.io.use("other"), clock=clock, sync_s=0)
    await a.hold("d", 30)  # a 429 with Retry-After: 30, longer than the cooldown (5 s)
    assert await a.allow("d") is None and await b.allow("d") is None
    clock.now += 29
    assert await b.allow("d") is None
    clock.now += 1.5
    probe = await b.allow("d")
    assert probe is not None and probe.probe
    await b.success(probe)
    assert await a.allow("d") is not None


async def test_reseed_writes_back_open_circuits(shared):
    clock = Clock()
    a = CircuitBreaker(CONFIG, redis=shared, clock=clock, sync_s=0)
    await fail(a, times=3)
    await shared.client.delete(*RedisBreakerStore(shared)._keys("d"))  # Redis restarted empty
    b = CircuitBreaker(CONFIG, redis=shared.io.use("other"), clock=clock, sync_s=0)
    assert await b.allow("d") is not None
    await a.reseed()
    assert await b.allow("d") is None
