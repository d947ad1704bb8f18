"""gateway/cache/store.py: MemoryStore and RedisStore behave alike; RedisStore against the real Redis
(db 15, a prefix of its own, deleted afterwards), shared between two "replicas", and failing open."""

from __future__ import annotations

import asyncio
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
    assert not a._writing and not a.pending


async def test_an_answer_stored_while_its_partition_is_first_read_is_in_that_mirror(redis_client):
    """The first lookup of a partition reads it whole from Redis; an answer stored meanwhile, whose write
    lands after that read, is in the mirror the lookup builds (not only in the next sync's, reload_s on)."""
    store = RedisStore(redis_client, redis_client.test_prefix, reload_s=60)
    await store.get("warm")  # the connection is open: the read below goes out at once
    first_read = asyncio.ensure_future(store.candidates("refund", "c1"))
    await asyncio.sleep(0)  # the partition's read is on its way...
    await store.put_later("k1", b"one", "refund", 60, row(1))  # ...before this write
    candidates = await first_read
    assert candidates is not None and list(candidates.payloads) == ["k1"]
    await store.drain()
    assert list((await store.candidates("refund", "c1")).payloads) == ["k1"]  # the same mirror (reload_s)


async def test_put_later_reports_a_failed_write_and_is_bounded(redis_client):
    dead = async_redis("redis://127.0.0.1:1/15")
    store = RedisStore(dead, redis_client.test_prefix, max_pending=2)
    errors: list[StoreUnavailable] = []
    for i in range(5):
        await store.put_later(f"k{i}", b"x", "refund", 60, row(i), on_error=errors.append)
        assert store.pending <= 2
    await store.drain()
    assert len(errors) == 5 and not store._writing
    await dead.aclose()


async def test_a_lookup_reads_the_partition_version_at_most_once_per_reload_s(redis_client):
    p = redis_client.test_prefix
    store = RedisStore(redis_client, p, reload_s=60)
    await store.put("k1", b"one", "refund", 60, row(1))
    syncs = []
    real_sync = store._sync_script

    def counting_sync(**kwargs):
        syncs.append(kwargs["keys"][0])
        return real_sync(**kwargs)

    store._sync_script = counting_sync
    for _ in range(5):
        assert len(await store.candidates("refund", "c1")) == 1
    for _ in range(5):
        assert await store.candidates("refund", "empty") is None
    assert len(syncs) == 2  # one round trip per partition, the empty one included


async def test_concurrent_lookups_share_one_sync_and_a_sync_reads_only_new_rows(redis_client):
    import asyncio

    p = redis_client.test_prefix
    a = RedisStore(redis_client, p, max_entries_per_intent=50, reload_s=0)
    b = RedisStore(redis_client, p, max_entries_per_intent=50, reload_s=0)
    for i in range(20):
        await a.put(f"k{i}", b"x", "refund", 60, row(i))
    replies = []
    real_sync = b._sync_script

    async def counting_sync(**kwargs):
        reply = await real_sync(**kwargs)
        replies.append(reply)
        return reply

    b._sync_script = counting_sync
    views = await asyncio.gather(*(b.candidates("refund", "c1") for _ in range(10)))
    assert len(replies) == 1 and all(len(view) == 20 for view in views)  # one full load for ten lookups
    await a.put("k20", b"x", "refund", 60, row(20))
    await a.put("k3", b"y", "refund", 60, row(3))  # stored again: logged again
    assert sorted((await b.candidates("refund", "c1")).payloads) == sorted(f"k{i}" for i in range(21))
    assert replies[-1][2] == 0 and len(replies[-1][3]) == 4  # incremental: the two rows written since
    await a.flush("refund")
    await a.put("k99", b"z", "refund", 60, row(99))  # the partition re-created: reloaded whole, old rows gone
    assert list((await b.candidates("refund", "c1")).payloads) == ["k99"]


def test_mirror_discard_is_constant_time_and_compacts_once():
    mirror = _Mirror()
    now = time.time()
    for i in range(10):
        mirror.add(f"k{i}", f"q{i}", unit(i), now + 60, limit=100)
    mirror.discard("k3")
    mirror.discard("missing")
    assert "k3" not in mirror and "k4" in mirror
    assert list(mirror.candidates(now).payloads) == [f"k{i}" for i in range(10) if i != 3]
    mirror.refresh("k5", "q5", unit(5), now + 120, limit=100)  # read back from Redis: keeps its place
    assert list(mirror.candidates(now).payloads)[4] == "k5"


async def test_concurrent_reads_go_as_one_mget_and_queued_writes_as_one_script_call(redis_client):
    import asyncio

    p = redis_client.test_prefix
    store = RedisStore(redis_client, p, reload_s=60)
    await store.put("k0", b"zero", "refund", 60, row(0))
    assert await store.get("k0") == b"zero"  # the first read opens the connection, alone
    sent = []
    for name in ("get", "mget", "evalsha"):
        real = getattr(redis_client, name)
        setattr(redis_client, name, lambda *a, _real=real, _name=name, **k: sent.append(_name) or _real(*a, **k))
    try:
        found = await asyncio.gather(*(store.get(f"k{i}") for i in range(10)))
        assert found == [b"zero"] + [None] * 9 and sent == ["mget"]
        sent.clear()
        for i in range(1, 21):
            await store.put_later(f"k{i}", f"blob{i}".encode(), "refund", 60, row(i))
        await store.drain()
        assert sent == ["evalsha"] and not store.pending
    finally:
        for name in ("get", "mget", "evalsha"):
            delattr(redis_client, name)
    other = RedisStore(redis_client, p, max_entries_per_intent=50, reload_s=60)
    assert [await other.get(f"k{i}") for i in (1, 20)] == [b"blob1", b"blob20"]
    assert len(await other.candidates("refund", "c1")) == 21


async def test_a_failed_mget_fails_every_read_of_the_batch_open():
    import asyncio

    dead = async_redis("redis://127.0.0.1:1/15")
    store = RedisStore(dead, "gwtest:dead:")
    store._connected = True  # as after a first read
    results = await asyncio.gather(*(store.get(f"k{i}") for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert store.circuit_open
    await dead.aclose()


async def test_a_new_mirror_reads_a_partition_written_before_the_change_log_existed(redis_client):
    """Partitions written by an older gateway have no change log: a replica's first sync reads them whole."""
    p = redis_client.test_prefix
    a = RedisStore(redis_client, p, reload_s=0)
    await a.put("k1", b"one", "refund", 60, row(1))
    await redis_client.delete(p + "{c}:l:refund:c1", p + "{c}:b:refund:c1")  # as the older layout left it
    b = RedisStore(redis_client, p, reload_s=0)
    assert list((await b.candidates("refund", "c1")).payloads) == ["k1"]


async def test_delete_removes_an_entry_exact_and_semantic(store):
    await store.put("k1", b"one", "refund", 60, row(1))
    await store.put("k2", b"two", "refund", 60, row(2))
    await store.delete("k1", "refund", "c1")
    assert await store.get("k1") is None and await store.get("k2") == b"two"
    assert list((await store.candidates("refund", "c1")).payloads) == ["k2"]


async def test_a_deleted_entry_is_gone_for_the_other_replica(redis_client):
    p = redis_client.test_prefix
    a = RedisStore(redis_client, p, max_entries_per_intent=10, reload_s=0)
    b = RedisStore(redis_client, p, max_entries_per_intent=10, reload_s=0)
    await a.put("k1", b"one", "refund", 60, row(1))
    assert list((await b.candidates("refund", "c1")).payloads) == ["k1"] and await b.get("k1") == b"one"
    await a.delete("k1", "refund", "c1")
    assert await b.get("k1") is None  # b's lookup then forgets the row (IntentCache.lookup_semantic)
    fresh = RedisStore(redis_client, p, max_entries_per_intent=10, reload_s=0)  # a replica started later
    assert await fresh.candidates("refund", "c1") is None
