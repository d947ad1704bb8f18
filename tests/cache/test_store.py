"""gateway/cache/store.py: MemoryStore and RedisStore behave alike; RedisStore against the real Redis
(db 15, a prefix of its own, deleted afterwards), shared between two "replicas", and failing open."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from gateway.cache.store import MemoryStore, RedisStore, StoreUnavailable, VectorRow, _Mirror
from tests.conftest import async_redis


def unit(seed: int, dim: int = 32) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
async def redis_client():
    client = async_redis()
    prefix = f"gwtest:{uuid.uuid4().hex[:12]}:"
    client.test_prefix = prefix
    yield client
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def store(request, redis_client):
    if request.param == "memory":
        yield MemoryStore(max_entries_per_intent=3)
    else:
        yield RedisStore(redis_client, redis_client.test_prefix, max_entries_per_intent=3, reload_s=0)


def row(i: int, intent: str = "refund", ctx: str = "c1") -> VectorRow:
    return VectorRow(intent, ctx, f"question {i}", unit(i))


async def test_put_get_and_partition(store):
    assert await store.get("k1") is None
    await store.put("k1", b"blob1", "refund", 60, row(1))
    await store.put("k2", b"blob2", "refund", 60, None)  # exact only
    assert await store.get("k1") == b"blob1" and await store.get("k2") == b"blob2"
    candidates = await store.candidates("refund", "c1")
    assert list(candidates.payloads) == ["k1"] and list(candidates.texts) == ["question 1"]
    assert np.allclose(candidates.vectors[0], unit(1), atol=2e-3)  # stored as float16
    assert await store.candidates("refund", "other-ctx") is None
    assert await store.candidates("order_status", "c1") is None


async def test_partition_is_bounded_oldest_evicted(store):
    for i in range(5):
        await store.put(f"k{i}", b"x", "refund", 60, row(i))
    candidates = await store.candidates("refund", "c1")
    assert sorted(candidates.payloads) == ["k2", "k3", "k4"]


async def test_restoring_a_key_does_not_duplicate_it(store):
    await store.put("k1", b"a", "refund", 60, row(1))
    await store.put("k1", b"b", "refund", 60, row(1))
    assert list((await store.candidates("refund", "c1")).payloads) == ["k1"]
    assert await store.get("k1") == b"b"


async def test_entries_expire(store):
    await store.put("k1", b"x", "refund", 1, row(1))
    deadline = time.monotonic() + 5
    while await store.get("k1") is not None and time.monotonic() < deadline:
        await _tick()
    assert await store.get("k1") is None
    assert await store.candidates("refund", "c1") is None


async def _tick():
    import asyncio

    await asyncio.sleep(0.05)


async def test_stats_and_flush(store):
    await store.put("k1", b"x", "refund", 60, row(1))
    await store.put("k2", b"x", "refund", 60, None)
    await store.put("k3", b"x", "invoice", 60, row(3, "invoice"))
    await store.count({"refund": {"hits_exact": 2, "misses": 1, "saved_tokens": 70, "saved_usd": 0.25}})
    stats = await store.stats(["refund", "invoice", "other"])
    assert stats["refund"]["entries"] == 2 and stats["refund"]["vectors"] == 1
    assert stats["refund"]["hits_exact"] == 2 and stats["refund"]["stores"] == 2
    assert stats["refund"]["saved_usd"] == pytest.approx(0.25)
    assert stats["other"]["entries"] == 0
    assert await store.flush("refund") == 2
    assert await store.get("k1") is None and await store.get("k3") == b"x"
    assert await store.candidates("refund", "c1") is None
    assert (await store.stats(["refund"]))["refund"]["entries"] == 0
    assert await store.flush() >= 1
    assert await store.get("k3") is None


async def test_two_replicas_share_entries_and_mirrors_follow_the_version(redis_client):
    p = redis_client.test_prefix
    a = RedisStore(redis_client, p, max_entries_per_intent=10, reload_s=0)
    b = RedisStore(redis_client, p, max_entries_per_intent=10, reload_s=0)
    await a.put("k1", b"one", "refund", 60, row(1))
    assert await b.get("k1") == b"one"
    assert list((await b.candidates("refund", "c1")).payloads) == ["k1"]
    await a.put("k2", b"two", "refund", 60, row(2))
    assert sorted((await b.candidates("refund", "c1")).payloads) == ["k1", "k2"]  # version changed: reloaded
    await a.flush("refund")
    assert await b.candidates("refund", "c1") is None


async def test_reloads_are_rate_limited_but_own_stores_show_at_once(redis_client):
    p = redis_client.test_prefix
    a = RedisStore(redis_client, p, reload_s=60)
    b = RedisStore(redis_client, p, reload_s=60)
    await a.put("k1", b"one", "refund", 60, row(1))
    assert len(await a.candidates("refund", "c1")) == 1
    assert len(await b.candidates("refund", "c1")) == 1  # first load
    await a.put("k2", b"two", "refund", 60, row(2))
    assert len(await a.candidates("refund", "c1")) == 2  # its own store
    assert len(await b.candidates("refund", "c1")) == 1  # not before reload_s
    assert await b.get("k2") == b"two"  # exact entries are always fresh


async def test_flush_all_keeps_other_prefixes(redis_client):
    p = redis_client.test_prefix
    other = p + "neighbour:"
    mine, theirs = RedisStore(redis_client, p), RedisStore(redis_client, other)
    await theirs.put("k", b"x", "refund", 60, None)
    await mine.put("k", b"y", "refund", 60, None)
    await mine.flush()
    assert await theirs.get("k") == b"x"


async def test_dead_redis_fails_open_fast_and_backs_off():
    dead = async_redis("redis://127.0.0.1:1/0")
    store = RedisStore(dead, "gwtest:dead:", backoff_s=60)
    with pytest.raises(StoreUnavailable):
        await store.get("k")
    assert store.circuit_open
    attempts = []
    store._put = lambda **kwargs: attempts.append(kwargs)
    for _ in range(100):
        with pytest.raises(StoreUnavailable, match="circuit open"):
            await store.put("k", b"x", "refund", 60, row(1))
    assert attempts == []  # no connection attempts while open (was timed: < 50 ms; failed on a busy machine)
    await dead.aclose()


async def test_circuit_closes_after_the_backoff(redis_client):
    store = RedisStore(redis_client, redis_client.test_prefix, backoff_s=0.01)
    store._open_until = time.monotonic() + 0.01
    store._failures = 1
    deadline = time.monotonic() + 2
    while store.circuit_open and time.monotonic() < deadline:
        await _tick()
    assert await store.get("k") is None and not store.circuit_open and store._failures == 0


def test_mirror_compacts_and_drops_expired():
    mirror = _Mirror()
    now = time.time()
    for i in range(40):
        mirror.add(f"k{i}", f"q{i}", unit(i), now + (0.0 if i == 39 else 60), limit=10)
    view = mirror.candidates(now + 1)
    assert list(view.payloads) == [f"k{i}" for i in range(30, 39)]
    assert view.vectors.shape == (9, 32)


async def test_put_later_answers_at_once_and_writes_in_the_background(redis_client):
    p = redis_client.test_prefix
    a = RedisStore(redis_client, p, reload_s=60)
    b = RedisStore(redis_client, p, reload_s=60)
    assert await a.candidates("refund", "c1") is None  # a's mirror of the partition: empty
    await a.put_later("k1", b"one", "refund", 60, row(1))
    assert await a.get("k1") == b"one"  # its own write, still in flight or done
    assert list((await a.candidates("refund", "c1")).payloads) == ["k1"]
    await a.drain()
    assert await b.get("k1") == b"one"  # written to Redis for the other replicas
    assert list((await b.candidates("refund", "c1")).payloads) == ["k1"]
    assert not a._writing and not a._writes


async def test_put_later_reports_a_failed_write_and_is_bounded(redis_client):
    dead = async_redis("redis://127.0.0.1:1/15")
    store = RedisStore(dead, redis_client.test_prefix, max_pending=2)
    errors: list[StoreUnavailable] = []
    for i in range(5):
        await store.put_later(f"k{i}", b"x", "refund", 60, row(i), on_error=errors.append)
        assert len(store._writes) <= 2
    await store.drain()
    assert len(errors) == 5 and not store._writing
    await dead.aclose()


async def test_a_lookup_reads_the_partition_version_at_most_once_per_reload_s(redis_client):
    p = redis_client.test_prefix
    store = RedisStore(redis_client, p, reload_s=60)
    await store.put("k1", b"one", "refund", 60, row(1))
    reads = []
    real_get = redis_client.get

    async def counting_get(key):
        reads.append(key)
        return await real_get(key)

    redis_client.get = counting_get
    try:
        for _ in range(5):
            assert len(await store.candidates("refund", "c1")) == 1
        for _ in range(5):
            assert await store.candidates("refund", "empty") is None
    finally:
        del redis_client.get
    assert len(reads) == 2  # one version read per partition, the empty one included
