"""Canary traffic: a percentage of each alias's light traffic goes to its canary deployments, sticky per user.

The split is a pure function of a stable id (`x-session-id`, else the body's `user`, else the client key's
name) and the percentage: the same user stays on the same variant while the percentage holds, and raising
it only moves users from stable to canary, never back.

Percentages change at run time (admin API, `gateway canary set`) and live in Redis with a version
number; every replica re-reads them when the version moves, at most `refresh_s` apart, and keeps the last
known value while Redis is away. Without Redis they live in the process.

A canary that fails too often is rolled back automatically: when more than `rollback_error_rate` of its
last `rollback_window` requests failed over to the stable chain, the percentage drops to 0.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque

log = logging.getLogger("gateway.canary")

BUCKETS = 10_000


def bucket(stable_id: str, salt: str) -> int:
    digest = hashlib.blake2b(f"{salt}:{stable_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_canary(stable_id: str, percent: float, salt: str) -> bool:
    """True for `percent`% of ids, the same ids every time; raising `percent` keeps earlier ids in."""
    return percent > 0 and bucket(stable_id, salt) < percent * BUCKETS / 100


class CanaryState:
    """Current canary percentage per alias, shared through Redis when configured."""

    def __init__(self, initial: dict[str, float], redis=None, prefix: str = "gw:", refresh_s: float = 1.0,
                 metrics=None) -> None:
        self.percent = dict(initial)
        self.version = 0
        self._redis = redis
        self._key = f"{prefix}canary"
        self._refresh_s = refresh_s
        self._next_refresh = 0.0
        self._metrics = metrics
        self._outcomes: dict[str, deque[bool]] = {}
        self._publish_gauges()

    def get(self, alias: str) -> float:
        return self.percent.get(alias, 0.0)

    async def refresh(self, force: bool = False) -> None:
        """Pick up changes made by other replicas; cheap when nothing changed (one GET)."""
        now = time.monotonic()
        if self._redis is None or (not force and now < self._next_refresh):
            return
        self._next_refresh = now + self._refresh_s
        try:
            version = int(await self._redis.get(f"{self._key}:version") or 0)
            if version == self.version and not force:
                return
            stored = await self._redis.hgetall(self._key)
        except Exception as exc:  # keep the last known percentages
            log.warning("canary state unavailable in Redis, keeping the last known values: %s", exc)
            return
        for alias, value in stored.items():
            alias = alias.decode() if isinstance(alias, bytes) else alias
            if alias in self.percent:
                self.percent[alias] = float(value)
        self.version = version
        self._publish_gauges()

    async def set(self, alias: str, percent: float, reason: str = "admin") -> int:
        if alias not in self.percent:
            raise KeyError(alias)
        version = self.version + 1
        if self._redis is not None:  # shared first: a failure here changes nothing
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._key, alias, repr(float(percent)))
                pipe.incr(f"{self._key}:version")
                _, version = await pipe.execute()
        self.percent[alias], self.version = percent, version
        self._outcomes.pop(alias, None)
        log.warning("canary %s set to %.2f%% (%s, version %d)", alias, percent, reason, self.version)
        self._publish_gauges()
        return self.version

    async def observe(self, alias: str, failed: bool, window: int, max_error_rate: float) -> None:
        """Record one canary outcome; roll the canary back when it fails too often."""
        outcomes = self._outcomes.setdefault(alias, deque(maxlen=window))
        outcomes.append(failed)
        if len(outcomes) == window and sum(outcomes) / window > max_error_rate and self.get(alias) > 0:
            if self._metrics is not None:
                self._metrics.canary_rollbacks.labels(alias).inc()
            try:
                await self.set(alias, 0.0, reason=f"automatic rollback: {sum(outcomes)}/{window} failed")
            except Exception as exc:  # Redis away: at least this replica stops sending to the canary
                self.percent[alias] = 0.0
                log.error("canary rollback of %s not shared (Redis unavailable): %s", alias, exc)

    def _publish_gauges(self) -> None:
        if self._metrics is not None:
            for alias, percent in self.percent.items():
                self._metrics.canary_percent.labels(alias).set(percent)
