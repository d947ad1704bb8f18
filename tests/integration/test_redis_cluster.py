"""The gateway on a Redis Cluster: a local 3-master cluster started for these tests (tests/redis_servers.py),
every Redis-using component and a gateway over HTTP. Each script's keys share a hash tag, so no command
fails with CROSSSLOT whichever node holds a key.

The whole suite runs against a cluster too: GATEWAY_TEST_REDIS_URL=cluster make test.
"""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import openai
import pytest

from gateway.auth import hash_key
from gateway.cache.store import RedisStore, VectorRow
from gateway.config import BreakerConfig
from gateway.redisio import RedisIO, make_client
from gateway.routing.canary import CanaryState
from gateway.upstream.breaker import CircuitBreaker
from gateway.upstream.budget import RedisWindows
from tests.conftest import REDIS_URL, TEST_KEY, base_config, delete_prefix
from tests.redis_servers import LocalCluster


@pytest.fixture(scope="module")
def cluster_url():
    if REDIS_URL.startswith("redis+cluster://"):  # the suite already runs on one
        yield REDIS_URL
        return
    try:
        cluster = LocalCluster()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield cluster.url
    cluster.stop()


@pytest.fixture
async def io(cluster_url):
    prefix = f"gwtest:{uuid.uuid4().hex[:12]}:"
    client, kind = make_client(cluster_url, socket_timeout_s=2.0, pool_size=8)
    io = RedisIO(client, prefix=prefix, kind=kind, pool_size=8, timeout_s=1.0)
    await io.start()  # as the app does: the cluster's slots known, the pools open
    yield io
    await io.close()
    delete_prefix(prefix, cluster_url)


def _slots(io: RedisIO, keys: list[str]) -> set[int]:
    return {io.client.keyslot(key) for key in keys}


async def test_start_opens_the_pools_and_loads_scripts_on_every_master(io):
    windows = RedisWindows(io.use("budget"))
    await io.start()  # again, now that a script is registered
    assert io.replicas == 1
    nodes = io.client.get_primaries()
    assert len(nodes) == 3
    for node in nodes:  # loaded on each master: the first EVALSHA anywhere finds it
        assert (await io.client.execute_command("SCRIPT", "EXISTS", windows._take.sha, target_nodes=node)) == [1]


async def test_budget_windows_are_shared_and_atomic(io):
    one, two = RedisWindows(io.use("one")), RedisWindows(io.use("two"))
    assert len(_slots(io, one._keys("budget:light"))) == 1
    grants = await asyncio.gather(
        *[(one if i % 2 else two).take(f"budget:d{i % 3}", (10, None), (1, 0)) for i in range(60)]
    )
    assert sum(g.ok for g in grants) == 30  # 10 per window, three windows (spread over the masters)
    assert len(_slots(io, [one._keys(f"budget:d{i}")[0] for i in range(3)])) == 3


async def test_breaker_is_shared(io):
    config = BreakerConfig(failures=2, window_s=10, cooldown_s=30)
    a = CircuitBreaker(config, redis=io.use("a"), sync_s=0)
    b = CircuitBreaker(config, redis=io.use("b"), sync_s=0)
    for _ in range(2):
        await a.failure(await a.allow("light"))
    assert await b.allow("light") is None
    await b.hold("heavy", 30)
    assert await a.allow("heavy") is None


async def test_canary_changes_reseeds_and_rolls_back_across_replicas(io):
    one = CanaryState({"support": 0.0}, io.use("one"))
    two = CanaryState({"support": 0.0}, io.use("two"))
    version = await one.set("support", 30.0)
    await two.refresh(force=True)
    assert (two.get("support"), two.version) == (30.0, version)
    await io.client.delete(one._state)  # the node restarted empty
    await one.refresh(force=True)
    await two.refresh(force=True)
    assert (two.get("support"), two.version) == (30.0, version)
    for failed in (True, True, True, False):
        await one.observe("support", failed=failed, window=4, max_error_rate=0.5)
    await one.refresh(force=True)
    await two.refresh(force=True)
    assert one.get("support") == two.get("support") == 0.0


async def test_cache_store_puts_gets_and_flushes(io):
    store = RedisStore(io.use("cache"), io.prefix, max_entries_per_intent=3, reload_s=0)
    vector = np.ones(16, dtype=np.float32) / 4
    await store.put("k1", b"answer", "refund", 60, VectorRow("refund", "c", "How do I get a refund?", vector))
    assert await store.get("k1") == b"answer"
    assert list((await store.candidates("refund", "c")).payloads) == ["k1"]
    assert (await store.stats(["refund"]))["refund"]["entries"] == 1
    errors: list[Exception] = []
    for i in range(2, 6):  # queued together: one script call writes them all
        await store.put_later(f"k{i}", b"more", "refund", 60, None, on_error=errors.append)
    await store.drain()
    assert errors == []
    found = await asyncio.gather(*(store.get(f"k{i}") for i in range(1, 7)))  # one MGET, one slot
    assert found == [b"answer"] + [b"more"] * 4 + [None]
    assert await store.flush() == 5
    assert await store.get("k1") is None


def test_a_gateway_on_the_cluster_limits_caches_and_routes(start_gateway, light_mock, heavy_mock, cluster_url):
    prefix = f"gwtest:{uuid.uuid4().hex[:12]}:"
    keys = [{"name": "test", "sha256": hash_key(TEST_KEY), "rpm": 4, "allow_force_tier": True}]
    config = base_config(
        light_mock.url,
        heavy_mock.url,
        auth={"keys": keys},
        redis={"url": cluster_url, "prefix": prefix, "timeout_ms": 1000},
        cache={"redis_timeout_ms": 1000},
    )
    try:
        gw = start_gateway(config)
        client = openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0)
        ask = lambda: client.chat.completions.with_raw_response.create(  # noqa: E731
            model="gpt-3.5-turbo",
            temperature=0,
            user="u1",
            messages=[{"role": "user", "content": "How do I get a refund?"}],
        )
        assert ask().headers["x-gateway-cache"] == "miss"
        assert ask().headers["x-gateway-cache"] == "hit-exact"
        ask(), ask()
        with pytest.raises(openai.RateLimitError):
            ask()  # the fifth request of the minute: the key's rpm is 4, counted in the cluster
        errors = dict(gw.state.metrics.redis_errors.metric._metrics.items())
        assert not errors, errors
    finally:
        delete_prefix(prefix, cluster_url)
