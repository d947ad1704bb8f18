"""Requests and tokens per minute, counted over a sliding window: the upstream budgets of the deployments
(Deployment.rpm/tpm, the provider's quota) and the per-key limits of gateway.limits both use it.

    windows = make_windows(io.use("budget"))                    # RedisWindows, or MemoryWindows alone
    grant = await windows.take("budget:light", caps=(rpm, tpm), costs=(1, tokens))
    grant.ok, grant.wait_s, grant.bucket                         # wait_s: until enough of the window frees
    await windows.adjust("budget:light", grant.bucket, real_tokens - tokens)

The window is 60 one-second buckets plus the current one; a request counts in the bucket of its second,
and every bucket that overlaps the last minute counts, so the total over any 60 seconds never goes above
the cap (at the price of up to a second of unused quota). In Redis one Lua script reads, trims, checks and
adds atomically, on Redis's own clock, so every replica sharing the prefix draws on one budget. When
Redis fails or is slower than redis.timeout_ms the counters go on in process, each replica keeping to its
share of the limit (limit / live replicas, gateway.redisio): served, never unlimited. The two keys of a
window share a hash tag, so the script runs on Redis Cluster too.

Tokens are estimated before the call (characters / 4 + max_tokens) and corrected with the real usage
afterwards (`UpstreamBudget.hold` holds the estimate on the request; the pipeline settles it when the
request ends, gateway.context.settle_holds).

Priorities are an admission order, not only a reserve (issue 11). A request of a lower priority is admitted
only when both hold:
- the window's total stays under its share of the cap: batch keeps off the last `batch_reserve`, normal off
  the last `normal_reserve` (room for traffic nobody has seen yet); critical may use all of it;
- its own and lower priorities' admitted requests, plus the *demand* of the higher priorities (every request
  of theirs that asked this budget in the window, served or refused), stay under the whole cap: batch gets
  what critical and normal asked less, normal what critical asked less; a critical request refused here
  (and served by another provider, gateway.upstream.dispatcher) still counts as this budget's demand.
A static share alone was taken in arrival order: with budgets of 20 rpm, batch requests that came first
kept taking their 70% while critical requests behind them were refused. Each window counts per priority
(in `{prefix}win:{{key}}:p`, in the same script) the demand of critical and normal and the admissions of
normal and batch, in 10 s buckets (PRIORITY_BUCKETS). Token estimates in these counters are not settled to
the real usage (the totals are): they only make lower priorities yield a little more. Within one burst,
batch waits a moment before it asks (the dispatcher's `batch_hold_ms`), so the demand it yields to is there.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from gateway.config import Deployment, GatewayConfig
from gateway.redisio import RedisUnavailable, RedisUse

if TYPE_CHECKING:
    from gateway.context import RequestContext as ChatRequest

__all__ = ["RANKS", "Grant", "MemoryWindows", "RedisWindows", "UpstreamBudget", "estimate_tokens", "make_windows"]

log = logging.getLogger("gateway.budget")

DEFAULT_COMPLETION_TOKENS = 256  # assumed answer length when the request sets no max_tokens
WINDOW_S = 60
RANKS = {"critical": 0, "normal": 1, "batch": 2}
# The per-priority counters use buckets this many times longer than the totals': six 10 s buckets, the last
# 50 to 60 s. Measured on the local Redis, every counter set: ~110 us of Redis time a take (~60 us without
# priorities; with 1 s buckets, 61 x 4 counters x 2 dimensions, ~430 us).
PRIORITY_BUCKETS = 10
# Per-priority counters of a window, per bucket: [critical demand, normal demand, normal admitted, batch
# admitted]. A request of rank r weighs, against the whole cap, the demand of the ranks above it and the
# admissions of its own rank and below: these slots.
_PRESSURE_SLOTS = {1: (0, 2, 3), 2: (0, 1, 3)}


@dataclass(frozen=True, slots=True)
class Grant:
    ok: bool
    bucket: int = 0  # the bucket the costs went to (for adjust)
    wait_s: float = 0.0  # when refused: seconds until it would fit; -1 when it never can (cost > cap)


OPEN = Grant(True)


def estimate_tokens(body: dict[str, Any]) -> int:
    """Prompt characters / 4, plus the answer's allowance (max_tokens, else a default), times n."""
    chars = 0
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(
                    len(p.get("text", "")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
    inputs = body.get("input")
    if isinstance(inputs, str):
        chars += len(inputs)
    elif isinstance(inputs, list):
        chars += sum(len(i) for i in inputs if isinstance(i, str))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    completion = limit if isinstance(limit, int) else (0 if "input" in body else DEFAULT_COMPLETION_TOKENS)
    choices = body.get("n")
    n = choices if isinstance(choices, int) else 1
    return max(1, chars // 4) + completion * n


def _wait(buckets: dict[int, int], used: float, cost: float, cap: float, now: float, n: int, bucket_s: float) -> float:
    """Seconds until the oldest buckets age out enough for `cost` to fit under `cap`."""
    if cost > cap:
        return -1.0
    need, freed = used + cost - cap, 0
    for bucket in sorted(buckets):
        freed += buckets[bucket]
        if freed >= need:
            return max(0.0, (bucket + n) * bucket_s - now)
    return -1.0


class MemoryWindows:
    """Sliding windows in this process; `clock` is injectable for tests."""

    def __init__(
        self, *, window_s: float = WINDOW_S, bucket_s: float = 1.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.bucket_s = bucket_s
        self.n = math.ceil(window_s / bucket_s) + 1
        self.pbucket_s = bucket_s * PRIORITY_BUCKETS
        self.pn = math.ceil(window_s / self.pbucket_s)
        self.clock = clock
        self._counts: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
        # per key and dimension: bucket -> [critical demand, normal demand, normal admitted, batch admitted]
        self._ranked: dict[str, tuple[dict[int, list[int]], dict[int, list[int]]]] = {}

    async def take(
        self,
        key: str,
        caps: tuple[float | None, float | None],
        costs: tuple[int, int],
        rank: int | None = None,
        share: float = 1.0,
    ) -> Grant:
        """Count `costs` when they fit. `rank` (RANKS; None: no priorities, the key limits) and `share` (of
        each cap the window's total may reach for this rank) make it the admission order of the docstring."""
        now = self.clock()
        current = int(now // self.bucket_s)
        oldest = current - self.n
        pcurrent = int(now // self.pbucket_s)
        windows = self._counts.setdefault(key, ({}, {}))
        ranked = self._ranked.setdefault(key, ({}, {})) if rank is not None else None
        wait, ok = 0.0, True
        for i, (buckets, cap, cost) in enumerate(zip(windows, caps, costs)):
            for bucket in [b for b in buckets if b <= oldest]:
                del buckets[bucket]
            if ranked is not None:
                for bucket in [b for b in ranked[i] if b <= pcurrent - self.pn]:
                    del ranked[i][bucket]
            if cap is None:
                continue
            checks = [(buckets, cap * share, self.n, self.bucket_s)]
            if ranked is not None and rank:
                slots = _PRESSURE_SLOTS[rank]
                pressure = {b: sum(c[s] for s in slots) for b, c in ranked[i].items()}
                checks.append((pressure, cap, self.pn, self.pbucket_s))
            for counts, limit, n, bucket_s in checks:
                used = sum(counts.values())
                if used + cost > limit:
                    ok = False
                    w = _wait(counts, used, cost, limit, now, n, bucket_s)
                    wait = -1.0 if (w < 0 or wait < 0) else max(wait, w)
        if ranked is not None and rank is not None and rank < 2:  # demand: counted whether served or not
            for i, cost in enumerate(costs):
                if cost:
                    ranked[i].setdefault(pcurrent, [0, 0, 0, 0])[rank] += cost
        if not ok:
            return Grant(False, current, wait)
        for i, (buckets, cost) in enumerate(zip(windows, costs)):
            if cost:
                buckets[current] = buckets.get(current, 0) + cost
                if ranked is not None and rank:
                    ranked[i].setdefault(pcurrent, [0, 0, 0, 0])[rank + 1] += cost
        return Grant(True, current)

    async def adjust(self, key: str, bucket: int, tokens: int) -> None:
        windows = self._counts.get(key)
        if windows is not None and bucket in windows[1]:
            windows[1][bucket] = max(0, windows[1][bucket] + tokens)

    def used(self, key: str) -> tuple[int, int]:
        windows = self._counts.get(key, ({}, {}))
        return sum(windows[0].values()), sum(windows[1].values())

    async def current(self, key: str) -> tuple[int, int]:
        """Requests and tokens counted in the window that ends now."""
        oldest = int(self.clock() // self.bucket_s) - self.n
        requests, tokens = self._counts.get(key, ({}, {}))
        return sum(c for b, c in requests.items() if b > oldest), sum(c for b, c in tokens.items() if b > oldest)


_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local bucket_s, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local current = math.floor(now / bucket_s)
local caps = {tonumber(ARGV[3]), tonumber(ARGV[4])}
local costs = {tonumber(ARGV[5]), tonumber(ARGV[6])}
local rank, share = tonumber(ARGV[7]), tonumber(ARGV[8])
local pbucket_s, pn = tonumber(ARGV[9]), tonumber(ARGV[10])
local pcurrent = math.floor(now / pbucket_s)
local ok, wait = true, 0

-- refuses when used + cost > cap; wait: until enough of the oldest buckets ({bucket, count}, n of
-- bucket_s each in the window) age out
local function check(buckets, used, cost, cap, n, bucket_s)
  if used + cost <= cap then return end
  ok = false
  local w = -1
  if cost <= cap then
    table.sort(buckets, function(a, b) return a[1] < b[1] end)
    local need, freed = used + cost - cap, 0
    for _, bc in ipairs(buckets) do
      freed = freed + bc[2]
      if freed >= need then w = math.max(0, (bc[1] + n) * bucket_s - now); break end
    end
  end
  if w < 0 or wait < 0 then wait = -1 elseif w > wait then wait = w end
end

-- KEYS[3], fields '<priority bucket>:<dimension>:<slot>': 1 critical demand, 2 normal demand, 3 normal admitted,
-- 4 batch admitted. Rank 1 (normal) weighs slots 1, 3, 4; rank 2 (batch) slots 1, 2, 4.
local pressure, pused = {{}, {}}, {0, 0}
if rank >= 0 then
  local flat = redis.call('HGETALL', KEYS[3])
  for j = 1, #flat, 2 do
    local b, dim, slot = string.match(flat[j], '^(%d+):(%d):(%d)$')
    b, dim, slot = tonumber(b), tonumber(dim), tonumber(slot)
    if b <= pcurrent - pn then
      redis.call('HDEL', KEYS[3], flat[j])
    elseif rank > 0 and (slot <= rank or slot >= rank + 2) then
      pressure[dim][b] = (pressure[dim][b] or 0) + tonumber(flat[j + 1])
      pused[dim] = pused[dim] + tonumber(flat[j + 1])
    end
  end
end

for i = 1, 2 do
  local flat = redis.call('HGETALL', KEYS[i])
  local used, buckets = 0, {}
  for j = 1, #flat, 2 do
    local b = tonumber(flat[j])
    if b <= current - n then
      redis.call('HDEL', KEYS[i], flat[j])
    else
      local c = tonumber(flat[j + 1])
      used = used + c
      table.insert(buckets, {b, c})
    end
  end
  if caps[i] >= 0 then
    check(buckets, used, costs[i], caps[i] * share, n, bucket_s)
    if rank > 0 then
      local pb = {}
      for b, c in pairs(pressure[i]) do table.insert(pb, {b, c}) end
      check(pb, pused[i], costs[i], caps[i], pn, pbucket_s)
    end
  end
end

local ttl = math.ceil((n + 1) * bucket_s * 1000)
local function count(slot)
  for i = 1, 2 do
    if costs[i] > 0 then redis.call('HINCRBY', KEYS[3], pcurrent .. ':' .. i .. ':' .. slot, costs[i]) end
  end
  redis.call('PEXPIRE', KEYS[3], math.ceil((pn + 1) * pbucket_s * 1000))
end
if rank == 0 or rank == 1 then count(rank + 1) end
if not ok then return {0, tostring(current), tostring(wait)} end
for i = 1, 2 do
  if costs[i] > 0 then
    redis.call('HINCRBY', KEYS[i], tostring(current), costs[i])
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
if rank >= 1 then count(rank + 2) end
return {1, tostring(current), '0'}
"""

_ADJUST = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2]) < 0 then redis.call('HSET', KEYS[1], ARGV[1], 0) end
end
return 0
"""


class RedisWindows:
    """Sliding windows in Redis under `{prefix}win:{{key}}:r|t|p`, shared across replicas; a local share of
    each cap, in process, when Redis fails."""

    def __init__(self, use: RedisUse, *, window_s: float = WINDOW_S, bucket_s: float = 1.0) -> None:
        self.local = MemoryWindows(window_s=window_s, bucket_s=bucket_s)
        self.bucket_s, self.n = bucket_s, self.local.n
        self._pwindow = [self.local.pbucket_s, self.local.pn]
        self.use = use
        self._prefix = use.prefix
        self._redis = use.client
        self._take = use.script(_TAKE)
        self._adjust = use.script(_ADJUST)

    def _keys(self, key: str) -> list[str]:
        return [f"{self._prefix}win:{{{key}}}:{part}" for part in ("r", "t", "p")]

    async def take(
        self,
        key: str,
        caps: tuple[float | None, float | None],
        costs: tuple[int, int],
        rank: int | None = None,
        share: float = 1.0,
    ) -> Grant:
        args = [self.bucket_s, self.n, *(-1 if c is None else c for c in caps), *costs, -1 if rank is None else rank]
        args += [share, *self._pwindow]
        keys = self._keys(key)
        try:
            ok, bucket, wait = await self.use.call("take", lambda: self._take(keys=keys, args=args))
        except RedisUnavailable:  # this replica's share of the limit, in process (the use logs, throttled)
            replicas = self.use.replicas
            local_caps = (
                None if caps[0] is None else caps[0] / replicas,
                None if caps[1] is None else caps[1] / replicas,
            )
            return await self.local.take(key, local_caps, costs, rank, share)
        if ok:  # counted here too: a fall-back to the local share starts from what this replica already took
            await self.local.take(key, (None, None), costs, rank)
        return Grant(bool(ok), int(bucket), float(wait))

    async def current(self, key: str) -> tuple[int, int]:
        """Requests and tokens counted in the window that ends now (this process's count when Redis fails)."""
        oldest = int(time.time() // self.bucket_s) - self.n
        requests, tokens = self._keys(key)[:2]
        try:
            flat = [
                await self.use.call("read", lambda: self._redis.hgetall(requests)),
                await self.use.call("read", lambda: self._redis.hgetall(tokens)),
            ]
        except RedisUnavailable:
            return await self.local.current(key)
        counted = [sum(int(c) for b, c in buckets.items() if int(b) > oldest) for buckets in flat]
        return counted[0], counted[1]

    async def adjust(self, key: str, bucket: int, tokens: int) -> None:
        keys = self._keys(key)[1:2]
        try:
            await self.use.call("adjust", lambda: self._adjust(keys=keys, args=[bucket, tokens]))
        except RedisUnavailable:
            await self.local.adjust(key, bucket, tokens)


def make_windows(use: RedisUse | None = None) -> MemoryWindows | RedisWindows:
    return RedisWindows(use) if use is not None else MemoryWindows()


class UpstreamBudget:
    """The provider quotas of the deployments, admitted in priority order (see the module's docstring)."""

    def __init__(self, config: GatewayConfig, windows: MemoryWindows | RedisWindows) -> None:
        self.windows = windows
        res = config.resilience
        self.shares = {"critical": 1.0, "normal": 1.0 - res.normal_reserve, "batch": 1.0 - res.batch_reserve}

    async def acquire(self, name: str, deployment: Deployment, priority: str, tokens: int) -> Grant:
        if deployment.rpm is None and deployment.tpm is None:
            return OPEN
        if priority not in RANKS:
            priority = "normal"
        return await self.windows.take(
            f"budget:{name}",
            (deployment.rpm, deployment.tpm),
            (1, tokens if deployment.tpm else 0),
            RANKS[priority],
            self.shares[priority],
        )

    async def remaining(self, name: str, deployment: Deployment) -> tuple[float | None, float | None]:
        """Requests and tokens left of the provider's quota this minute (None where it sets none)."""
        if deployment.rpm is None and deployment.tpm is None:
            return None, None
        requests, tokens = await self.windows.current(f"budget:{name}")
        return (
            None if deployment.rpm is None else max(0.0, deployment.rpm - requests),
            None if deployment.tpm is None else max(0.0, deployment.tpm - tokens),
        )

    def hold(self, req: ChatRequest, name: str, deployment: Deployment, grant: Grant, tokens: int) -> None:
        """Hold what was reserved on the request: the pipeline settles it to the real usage at the end."""
        if deployment.tpm is None or grant is OPEN:
            return
        req.hold(self.windows, f"budget:{name}", grant.bucket, tokens, name)
