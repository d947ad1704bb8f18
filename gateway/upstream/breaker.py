"""A circuit breaker per deployment: after `failures` failures within `window_s` it opens and the
deployment is skipped for `cooldown_s`; then one probe (half-open: only one request gets through,
across every replica) decides whether it closes again or stays open for another cooldown.

    permit = await breaker.allow("light")     # None: skip this deployment
    ... await breaker.success(permit) | await breaker.failure(permit) | await breaker.release(permit)

    closed ──N failures in window──► open ──cooldown over──► half-open (one probe)
       ▲                               ▲                          │
       └────────── probe succeeds ─────┼──── probe fails ─────────┘

State lives in Redis when configured, so every replica sees the same breaker: failures in a sorted set
(`{prefix}breaker:{name}:failures`, scored by time, expiring with the window), `{prefix}breaker:{name}:open`
holding the open-until time, and `{prefix}breaker:{name}:probe` (SET NX with a TTL) for the single probe.
Each replica re-reads the open-until key at most every `sync_s`, so a healthy deployment costs no Redis
round trip per request. When Redis fails, the breaker goes on with its in-process state: a Redis
outage never fails a request. Without Redis the in-process state is all there is.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Callable

from gateway.config import BreakerConfig

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


class RedisBreakerStore:
    """The breaker's state in Redis, shared by every replica using the same prefix."""

    def __init__(self, redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._failure = redis.register_script(_FAILURE)

    def _keys(self, name: str) -> list[str]:
        base = f"{self._prefix}breaker:{name}:"
        return [base + "failures", base + "open", base + "probe"]

    async def open_until(self, name: str, now: float) -> float:
        value = await self._redis.get(self._keys(name)[1])
        return float(value) if value else 0.0

    async def take_probe(self, name: str, now: float, ttl_s: float) -> bool:
        return bool(await self._redis.set(self._keys(name)[2], "1", nx=True, px=max(1, int(ttl_s * 1000))))

    async def failure(self, name: str, now: float, config: BreakerConfig, probe: bool) -> float:
        result = await self._failure(keys=self._keys(name), args=[
            repr(now), config.window_s, config.failures, config.cooldown_s, uuid.uuid4().hex, "1" if probe else "0"])
        return float(result)

    async def close(self, name: str) -> None:
        await self._redis.delete(*self._keys(name))

    async def release_probe(self, name: str) -> None:
        await self._redis.delete(self._keys(name)[2])


class CircuitBreaker:
    def __init__(self, config: BreakerConfig, *, redis=None, prefix: str = "gw:", metrics=None,
                 clock: Callable[[], float] = time.time, sync_s: float = 0.1) -> None:
        self.config = config
        self.clock = clock  # wall clock: open-until times are shared between machines
        self.sync_s = sync_s
        self.metrics = metrics
        self.local = MemoryBreakerStore()
        self.shared = RedisBreakerStore(redis, prefix) if redis is not None else None
        self._seen: dict[str, tuple[float, float]] = {}  # name → (read at, open until)

    async def _call(self, method: str, *args):
        """The shared store, or the local one when there is none or Redis fails."""
        if self.shared is not None:
            try:
                return await getattr(self.shared, method)(*args)
            except Exception as exc:  # Redis away: the breaker goes on in process
                log.warning("circuit breaker: Redis %s failed (%s); using local state", method, type(exc).__name__)
        return await getattr(self.local, method)(*args)

    def _note(self, name: str, now: float, open_until: float) -> None:
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
        if now - read_at >= self.sync_s or (open_until and open_until <= now):
            open_until = await self._call("open_until", name, now)
            self._note(name, now, open_until)
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

    async def release(self, permit: Permit) -> None:
        """The request ended without a verdict on the deployment (cancelled, or the caller's own error)."""
        if permit.probe and not permit.done:
            await self._call("release_probe", permit.deployment)
        permit.done = True
