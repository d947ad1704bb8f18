"""Canary traffic: a percentage of each alias's light traffic goes to its canary deployments, sticky per user.

The split is a pure function of a stable id (`x-session-id`, else the body's `user`, else the client key's
name) and the percentage: the same user stays on the same variant while the percentage holds, and raising
it only moves users from stable to canary, never back.

Percentages change at run time (admin API, `gateway canary set`) and live in Redis with a version
number (`{prefix}{canary}:state`, a hash: `version` and `p:{alias}`); every replica re-reads them in the
background (`refresh`, every half second from the app), and keeps the last known value while Redis is
away. When Redis comes back without them (restarted empty) or with an older version, a replica writes back
what it knows, with its version: the highest version wins and every replica agrees again within a second.
Without Redis they live in the process.

A canary that fails too often is rolled back automatically: when more than `rollback_error_rate` of its
last `rollback_window` requests failed over to the stable chain, the percentage drops to 0. With Redis the
window is shared (`{prefix}{canary}:outcomes:{alias}`, a list every replica appends its outcomes to, in
batches, off the request's path), so the decision counts every replica's failures.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from typing import Any

from gateway.redisio import RedisUnavailable, RedisUse

log = logging.getLogger("gateway.canary")

BUCKETS = 10_000


def bucket(stable_id: str, salt: str) -> int:
    digest = hashlib.blake2b(f"{salt}:{stable_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_canary(stable_id: str, percent: float, salt: str) -> bool:
    """True for `percent`% of ids, the same ids every time; raising `percent` keeps earlier ids in."""
    return percent > 0 and bucket(stable_id, salt) < percent * BUCKETS / 100


_SEED = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if stored >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], 'p:' .. ARGV[i], ARGV[i + 1]) end
return 1
"""

_SET = """
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'p:' .. ARGV[1], ARGV[2])
return version
"""

_OBSERVE = """
local window, max_rate = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 4, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], -window, -1)
redis.call('EXPIRE', KEYS[1], 86400)
if redis.call('LLEN', KEYS[1]) < window then return {0, 0} end
local failed = 0
for _, outcome in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if outcome == '1' then failed = failed + 1 end
end
if failed / window > max_rate and tonumber(redis.call('HGET', KEYS[2], 'p:' .. ARGV[3]) or '0') > 0 then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'p:' .. ARGV[3], '0.0')
  return {failed, redis.call('HINCRBY', KEYS[2], 'version', 1)}
end
return {failed, 0}
"""


class CanaryState:
    """Current canary percentage per alias, shared through Redis when configured (a gateway.redisio use)."""

    def __init__(
        self, initial: dict[str, float], redis: RedisUse | None = None, refresh_s: float = 0.5, metrics=None
    ) -> None:
        self.percent = dict(initial)
        self.version = 0
        self._redis = redis
        self._refresh_s = refresh_s
        self._next_refresh = 0.0
        self._metrics = metrics
        self._outcomes: dict[str, deque[bool]] = {}  # without Redis (or while it is away): this replica's
        self._pending: dict[str, tuple[list[bool], int, float]] = {}  # alias → (outcomes, window, max rate)
        if redis is not None:
            self._state = f"{redis.prefix}{{canary}}:state"
            self._seed, self._set, self._observe = (redis.script(_SEED), redis.script(_SET), redis.script(_OBSERVE))
        self._publish_gauges()

    def get(self, alias: str) -> float:
        return self.percent.get(alias, 0.0)

    async def refresh(self, force: bool = False) -> None:
        """Pick up changes made by other replicas, write back what Redis lost, send pending outcomes."""
        now = time.monotonic()
        redis = self._redis
        if redis is None or (not force and now < self._next_refresh):
            return
        self._next_refresh = now + self._refresh_s
        try:
            await self._flush()
            stored = await redis.call("read", lambda: redis.client.hgetall(self._state))
            stored = {(k.decode() if isinstance(k, bytes) else k): v for k, v in stored.items()}
            version = int(stored.get("version", -1))
            if version < self.version or not stored:  # Redis restarted empty, or lost a change: re-seed it
                args = [self.version] + [x for alias, pct in self.percent.items() for x in (alias, repr(pct))]
                if await redis.call("seed", lambda: self._seed(keys=[self._state], args=args)):
                    log.warning("canary: Redis had lost the percentages; wrote back version %d", self.version)
                return
        except RedisUnavailable:  # keep the last known percentages (the use logs, throttled)
            return
        for alias in self.percent:
            value = stored.get(f"p:{alias}")
            if value is not None:
                self.percent[alias] = float(value)
        self.version = version
        self._publish_gauges()

    async def set(self, alias: str, percent: float, reason: str = "admin") -> int:
        """Raises RedisUnavailable (nothing changed) when the shared state cannot be written."""
        if alias not in self.percent:
            raise KeyError(alias)
        version = self.version + 1
        if self._redis is not None:  # shared first: a failure here changes nothing
            await self.refresh(force=True)  # never write on top of a version we have not seen
            version = int(
                await self._redis.call("set", lambda: self._set(keys=[self._state], args=[alias, repr(float(percent))]))
            )
        self.percent[alias], self.version = percent, version
        self._outcomes.pop(alias, None)
        self._pending.pop(alias, None)
        log.warning("canary %s set to %.2f%% (%s, version %d)", alias, percent, reason, self.version)
        self._publish_gauges()
        return self.version

    async def observe(self, alias: str, failed: bool, window: int, max_error_rate: float) -> None:
        """Record one canary outcome; roll the canary back when it fails too often (with Redis: counted
        across replicas, at the next refresh)."""
        outcomes = self._outcomes.setdefault(alias, deque(maxlen=window))
        outcomes.append(failed)
        if self._redis is not None and self._redis.healthy:
            pending = self._pending.setdefault(alias, ([], window, max_error_rate))
            pending[0].append(failed)
            if len(pending[0]) > 10 * window:
                del pending[0][:-window]
            return
        if len(outcomes) == window and sum(outcomes) / window > max_error_rate and self.get(alias) > 0:
            self._rolled_back(alias)
            try:
                await self.set(alias, 0.0, reason=f"automatic rollback: {sum(outcomes)}/{window} failed")
            except RedisUnavailable:  # at least this replica stops sending to the canary
                self.percent[alias] = 0.0
                self._publish_gauges()
                log.error("canary rollback of %s not shared (Redis unavailable)", alias)

    async def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        redis = self._redis
        if redis is None:
            return
        for alias, (outcomes, window, max_rate) in pending.items():
            args = [window, max_rate, alias, *("1" if failed else "0" for failed in outcomes)]
            keys = [f"{redis.prefix}{{canary}}:outcomes:{alias}", self._state]

            def observe(keys: list = keys, args: list = args) -> Any:
                return self._observe(keys=keys, args=args)

            failed, version = await redis.call("observe", observe)
            if version:
                self._rolled_back(alias)
                self.percent[alias], self.version = 0.0, int(version)
                self._outcomes.pop(alias, None)
                log.warning(
                    "canary %s rolled back to 0%% (%d of the last %d requests across replicas failed, version %d)",
                    alias,
                    failed,
                    window,
                    self.version,
                )
                self._publish_gauges()

    def _rolled_back(self, alias: str) -> None:
        if self._metrics is not None:
            self._metrics.canary_rollbacks.labels(alias).inc()

    def _publish_gauges(self) -> None:
        if self._metrics is not None:
            for alias, percent in self.percent.items():
                self._metrics.canary_percent.labels(alias).set(percent)
