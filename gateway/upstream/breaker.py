"""A circuit breaker per deployment: after `failures` failures within `window_s` it opens and the
deployment is skipped for `cooldown_s`; then one probe (half-open: only one request gets through,
across every replica) decides whether it closes again or stays open for another cooldown.

    permit = await breaker.allow("light")     # None: skip this deployment
    ... await breaker.success(permit) | await breaker.failure(permit) | await breaker.release(permit)

    closed ──N failures in window──► open ──cooldown over──► half-open (one probe)
       ▲                               ▲                          │
       └────────── probe succeeds ─────┼──── probe fails ─────────┘

State lives in Redis when configured, so every replica sees the same breaker: failures in a sorted set
(`{prefix}breaker:{{name}}:failures`, scored by time, expiring with the window), `{prefix}breaker:{{name}}:open`
holding the open-until time, and `{prefix}breaker:{{name}}:probe` (SET NX with a TTL) for the single probe
(one hash tag per deployment: the script's keys share a slot on Redis Cluster). Each replica re-reads the
open-until key in the background, at most every `sync_s`, so a request never waits on Redis for it (only
the half-open probe asks Redis on the request's path). When Redis fails, the breaker goes on with its
in-process state: a Redis outage never fails a request. Without Redis the in-process state is all there is.
After Redis restarts empty (gateway.redisio notices), each replica writes back the circuits it knows open.

`hold(name, seconds)` opens a circuit for as long as the upstream asked (a 429's Retry-After): the
deployment is skipped until then, then probed like after a cooldown.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Callable

from gateway.config import BreakerConfig
from gateway.redisio import RedisUnavailable, RedisUse

__all__ = ["CircuitBreaker", "MemoryBreakerStore", "Permit", "RedisBreakerStore"]

log = logging.getLogger("gateway.breaker")


@dataclass(slots=True)
class Permit:
    """Leave to send one request to a deployment; `probe` when it is the half-open trial."""

    deployment: str
    probe: bool = False
    done: bool = False


class MemoryBreakerStore:
    """The breaker's state in this process (also the fallback of the Redis store)."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}
        self._open_until: dict[str, float] = {}
        self._probe_until: dict[str, float] = {}

    async def open_until(self, name: str, now: float) -> float:
        return self._open_until.get(name, 0.0)

    async def take_probe(self, name: str, now: float, ttl_s: float) -> bool:
        if self._probe_until.get(name, 0.0) > now:
            return False
        self._probe_until[name] = now + ttl_s
        return True

    async def failure(self, name: str, now: float, config: BreakerConfig, probe: bool) -> float:
        if probe:
            self._probe_until.pop(name, None)
            self._open_until[name] = now + config.cooldown_s
            return self._open_until[name]
        if self._open_until.get(name):
            return self._open_until[name]
        failures = self._failures.setdefault(name, deque())
        failures.append(now)
        while failures and failures[0] <= now - config.window_s:
            failures.popleft()
        if len(failures) >= config.failures:
            failures.clear()
            self._open_until[name] = now + config.cooldown_s
            return self._open_until[name]
        return 0.0

    async def hold(self, name: str, now: float, until: float) -> float:
        self._open_until[name] = max(self._open_until.get(name, 0.0), until)
        self._probe_until.pop(name, None)
        return self._open_until[name]

    async def close(self, name: str) -> None:
        self._open_until.pop(name, None)
        self._probe_until.pop(name, None)
        self._failures.pop(name, None)

    async def release_probe(self, name: str) -> None:
        self._probe_until.pop(name, None)


_FAILURE = """
local now, window, threshold, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local keep_ms = math.ceil((cooldown + window + 60) * 1000)
if ARGV[6] == '1' then
  redis.call('SET', KEYS[2], tostring(now + cooldown), 'PX', keep_ms)
  redis.call('DEL', KEYS[3])
  return tostring(now + cooldown)
end
local open = redis.call('GET', KEYS[2])
if open then return open end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
if redis.call('ZCARD', KEYS[1]) >= threshold then
  redis.call('SET', KEYS[2], tostring(now + cooldown), 'PX', keep_ms)
  redis.call('DEL', KEYS[1])
  return tostring(now + cooldown)
end
return '0'
"""


_HOLD = """
local open_until = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if open_until > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('DEL', KEYS[2])
  return ARGV[1]
end
return tostring(current)
"""


class RedisBreakerStore:
    """The breaker's state in Redis, shared by every replica using the same prefix."""

    def __init__(self, use: RedisUse) -> None:
        self.use = use
        self._redis = use.client
        self._prefix = use.prefix
        self._failure = use.script(_FAILURE)
        self._hold = use.script(_HOLD)

    def _keys(self, name: str) -> list[str]:
        base = f"{self._prefix}breaker:{{{name}}}:"
        return [base + "failures", base + "open", base + "probe"]

    async def open_until(self, name: str, now: float) -> float:
        value = await self.use.call("read", lambda: self._redis.get(self._keys(name)[1]))
        return float(value) if value else 0.0

    async def take_probe(self, name: str, now: float, ttl_s: float) -> bool:
        key = self._keys(name)[2]
        return bool(
            await self.use.call("probe", lambda: self._redis.set(key, "1", nx=True, px=max(1, int(ttl_s * 1000))))
        )

    async def failure(self, name: str, now: float, config: BreakerConfig, probe: bool) -> float:
        keys, args = (
            self._keys(name),
            [repr(now), config.window_s, config.failures, config.cooldown_s, uuid.uuid4().hex, "1" if probe else "0"],
        )
        return float(await self.use.call("failure", lambda: self._failure(keys=keys, args=args)))

    async def hold(self, name: str, now: float, until: float) -> float:
        keys, args = self._keys(name)[1:], [repr(until), max(1, int((until - now + 60) * 1000))]
        return float(await self.use.call("hold", lambda: self._hold(keys=keys, args=args)))

    async def close(self, name: str) -> None:
        await self.use.call("close", lambda: self._redis.delete(*self._keys(name)))

    async def release_probe(self, name: str) -> None:
        await self.use.call("release", lambda: self._redis.delete(self._keys(name)[2]))


class CircuitBreaker:
    def __init__(
        self,
        config: BreakerConfig,
        *,
        redis: RedisUse | None = None,
        metrics=None,
        clock: Callable[[], float] = time.time,
        sync_s: float = 0.1,
    ) -> None:
        self.config = config
        self.clock = clock  # wall clock: open-until times are shared between machines
        self.sync_s = sync_s
        self.metrics = metrics
        self.local = MemoryBreakerStore()
        self.shared = RedisBreakerStore(redis) if redis is not None else None
        self._seen: dict[str, tuple[float, float]] = {}  # name → (read at, open until)
        self._reading: dict[str, asyncio.Task] = {}  # background re-reads of the shared state
        self._notes: dict[str, int] = {}  # how many times each view changed: a late re-read does not undo one

    async def _call(self, method: str, *args):
        """The shared store, or the local one when there is none or Redis fails (gateway.redisio logs it)."""
        if self.shared is not None:
            try:
                return await getattr(self.shared, method)(*args)
            except RedisUnavailable:  # the breaker goes on in process
                pass
        return await getattr(self.local, method)(*args)

    async def _reread(self, name: str) -> None:
        try:
            now, notes = self.clock(), self._notes.get(name, 0)
            open_until = await self._call("open_until", name, now)
            if self._notes.get(name, 0) == notes:  # nothing newer was learnt meanwhile (a failure, a probe)
                self._note(name, now, open_until)
        finally:
            self._reading.pop(name, None)

    async def reseed(self) -> None:
        """Redis lost its state (restarted empty): write back the circuits this replica knows open."""
        now = self.clock()
        for name, (_, open_until) in list(self._seen.items()):
            if open_until > now and self.shared is not None:
                try:
                    await self.shared.hold(name, now, open_until)
                except RedisUnavailable:
                    return

    def _note(self, name: str, now: float, open_until: float) -> None:
        self._notes[name] = self._notes.get(name, 0) + 1
        before = self._seen.get(name, (0.0, 0.0))[1]
        self._seen[name] = (now, open_until)
        if bool(before) != bool(open_until):
            if not open_until:
                log.warning("circuit breaker: %s closed", name)
            if self.metrics is not None:
                self.metrics.circuit_open.labels(name).set(1 if open_until > now else 0)

    def is_open(self, name: str) -> bool:
        """This replica's latest view, without I/O: open (or half-open) right now."""
        return self._seen.get(name, (0.0, 0.0))[1] > 0.0

    def open_for_s(self, name: str) -> float:
        """Seconds until the next probe of an open circuit (this replica's view), 0 when closed."""
        return max(0.0, self._seen.get(name, (0.0, 0.0))[1] - self.clock())

    def state(self, name: str) -> str:
        open_until = self._seen.get(name, (0.0, 0.0))[1]
        if not open_until:
            return "closed"
        return "open" if open_until > self.clock() else "half-open"

    async def refresh(self, name: str) -> str:
        """Re-read the shared state of `name` (the metrics' gauges, even for a deployment nobody calls)."""
        now = self.clock()
        self._note(name, now, await self._call("open_until", name, now))
        return self.state(name)

    async def allow(self, name: str, probe_ttl_s: float = 30.0) -> Permit | None:
        now = self.clock()
        read_at, open_until = self._seen.get(name, (0.0, 0.0))
        if not read_at or self.sync_s <= 0 or (open_until and open_until <= now):
            open_until = await self._call("open_until", name, now)
            self._note(name, now, open_until)
        elif now - read_at >= self.sync_s and name not in self._reading and self.shared is not None:
            self._seen[name] = (now, open_until)  # one re-read at a time
            self._reading[name] = asyncio.get_running_loop().create_task(self._reread(name))
        if not open_until:
            return Permit(name)
        if open_until > now:
            return None
        if await self._call("take_probe", name, now, probe_ttl_s):
            return Permit(name, probe=True)
        return None

    async def success(self, permit: Permit) -> None:
        if permit.probe and not permit.done:
            await self._call("close", permit.deployment)
            self._note(permit.deployment, self.clock(), 0.0)
        permit.done = True

    async def failure(self, permit: Permit) -> None:
        now = self.clock()
        open_until = await self._call("failure", permit.deployment, now, self.config, permit.probe and not permit.done)
        permit.done = True
        if open_until:
            if not self.is_open(permit.deployment):
                log.warning("circuit breaker: %s opened for %.1fs", permit.deployment, open_until - now)
            self._note(permit.deployment, now, open_until)

    async def hold(self, name: str, seconds: float) -> None:
        """The upstream asked for `seconds` of quiet (Retry-After): skip `name` until then, on every replica."""
        now = self.clock()
        open_until = await self._call("hold", name, now, now + seconds)
        if not self.is_open(name):
            log.warning("circuit breaker: %s held open for %.1fs (Retry-After)", name, open_until - now)
        self._note(name, now, open_until)

    async def release(self, permit: Permit) -> None:
        """The request ended without a verdict on the deployment (cancelled, or the caller's own error)."""
        if permit.probe and not permit.done:
            await self._call("release_probe", permit.deployment)
        permit.done = True
