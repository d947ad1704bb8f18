"""The canary split (pure) and the shared percentage state (real Redis, its own prefix)."""

import uuid

import pytest
import redis
import redis.asyncio as aioredis

from gateway.routing.canary import CanaryState, in_canary


def test_split_matches_the_percentage_and_is_sticky():
    users = [f"user-{i}" for i in range(20_000)]
    chosen = [u for u in users if in_canary(u, 10, salt="support")]
    assert 0.09 < len(chosen) / len(users) < 0.11
    assert chosen == [u for u in users if in_canary(u, 10, salt="support")]  # same users every time


def test_raising_the_percentage_only_adds_users():
    users = [f"user-{i}" for i in range(5_000)]
    at_10 = {u for u in users if in_canary(u, 10, salt="support")}
    at_30 = {u for u in users if in_canary(u, 30, salt="support")}
    assert at_10 < at_30
    assert not any(in_canary(u, 0, salt="support") for u in users)
    assert all(in_canary(u, 100, salt="support") for u in users)


def test_aliases_split_independently():
    users = [f"user-{i}" for i in range(5_000)]
    a = {u for u in users if in_canary(u, 50, salt="support")}
    b = {u for u in users if in_canary(u, 50, salt="gpt-3.5-turbo")}
    assert a != b


@pytest.fixture
async def redis_client():
    client = aioredis.from_url("redis://127.0.0.1:6379/15")
    prefix = f"gwtest:{uuid.uuid4().hex}:"
    yield client, prefix
    keys = [k async for k in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_a_change_on_one_replica_reaches_another(redis_client):
    client, prefix = redis_client
    one = CanaryState({"support": 0.0}, client, prefix)
    two = CanaryState({"support": 0.0}, client, prefix)
    version = await one.set("support", 25.0)
    assert two.get("support") == 0.0
    await two.refresh(force=True)
    assert two.get("support") == 25.0 and two.version == version


async def test_redis_away_keeps_the_last_known_value(redis_client):
    client, prefix = redis_client
    await CanaryState({"support": 0.0}, client, prefix).set("support", 40.0)
    state = CanaryState({"support": 0.0}, client, prefix)
    await state.refresh(force=True)
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.05, socket_timeout=0.05)
    state._redis = dead
    await state.refresh(force=True)
    assert state.get("support") == 40.0
    with pytest.raises(redis.exceptions.RedisError):
        await state.set("support", 5.0)  # not stored anywhere: nothing changes
    assert state.get("support") == 40.0
    await dead.aclose()


async def test_rollback_after_too_many_failures():
    state = CanaryState({"support": 50.0})
    for _ in range(9):
        await state.observe("support", failed=False, window=10, max_error_rate=0.3)
    assert state.get("support") == 50.0
    for _ in range(4):
        await state.observe("support", failed=True, window=10, max_error_rate=0.3)
    assert state.get("support") == 0.0
