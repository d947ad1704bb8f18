"""The canary split (pure) and the shared percentage state (real Redis, its own prefix)."""

import pytest

from gateway.redisio import RedisIO, RedisUnavailable
from gateway.routing.canary import CanaryState, in_canary
from tests.conftest import async_redis


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


async def test_a_change_on_one_replica_reaches_another(redis_io):
    one = CanaryState({"support": 0.0}, redis_io.use("canary"))
    two = CanaryState({"support": 0.0}, redis_io.use("other"))
    version = await one.set("support", 25.0)
    assert two.get("support") == 0.0
    await two.refresh(force=True)
    assert two.get("support") == 25.0 and two.version == version


async def test_redis_away_keeps_the_last_known_value(redis_io):
    await CanaryState({"support": 0.0}, redis_io.use("canary")).set("support", 40.0)
    state = CanaryState({"support": 0.0}, redis_io.use("other"))
    await state.refresh(force=True)
    dead = async_redis("redis://127.0.0.1:1/0")
    state._redis = RedisIO(dead, prefix=redis_io.prefix, timeout_s=0.5).use("canary")
    await state.refresh(force=True)
    assert state.get("support") == 40.0
    with pytest.raises(RedisUnavailable):
        await state.set("support", 5.0)  # not stored anywhere: nothing changes
    assert state.get("support") == 40.0
    await dead.aclose()


async def test_replicas_agree_again_after_redis_restarts_empty(redis_io):
    """Redis loses the percentages: running replicas write back theirs with its version, and a replica
    started after the loss adopts it instead of its config's value."""
    one = CanaryState({"support": 0.0}, redis_io.use("one"))
    two = CanaryState({"support": 0.0}, redis_io.use("two"))
    await one.set("support", 10.0)
    version = await one.set("support", 20.0)
    await two.refresh(force=True)
    await redis_io.client.delete(one._state)  # restarted empty
    late = CanaryState({"support": 0.0}, redis_io.use("late"))  # config says 0
    await late.refresh(force=True)  # seeds version 0 with its config: it knows nothing newer
    for state in (one, two, late):  # the next refreshes (every half second in the app)
        await state.refresh(force=True)
    for state in (one, two, late):
        await state.refresh(force=True)
        assert (state.get("support"), state.version) == (20.0, version)


async def test_rollback_counts_failures_across_replicas(redis_io):
    """Each replica sees a failure rate under the threshold; together they are over it: rolled back."""
    one = CanaryState({"support": 50.0}, redis_io.use("one"))
    two = CanaryState({"support": 50.0}, redis_io.use("two"))
    await one.set("support", 50.0)
    for i in range(5):  # one: 2 of 5 failed; two: 3 of 5 failed; together 5 of 10 > 40%
        await one.observe("support", failed=i < 2, window=10, max_error_rate=0.4)
        await two.observe("support", failed=i < 3, window=10, max_error_rate=0.4)
    await one.refresh(force=True)
    assert one.get("support") == 50.0  # 5 outcomes so far: the window is not full
    await two.refresh(force=True)
    assert two.get("support") == 0.0
    await one.refresh(force=True)
    assert one.get("support") == 0.0


async def test_rollback_after_too_many_failures():
    state = CanaryState({"support": 50.0})
    for _ in range(9):
        await state.observe("support", failed=False, window=10, max_error_rate=0.3)
    assert state.get("support") == 50.0
    for _ in range(4):
        await state.observe("support", failed=True, window=10, max_error_rate=0.3)
    assert state.get("support") == 0.0
