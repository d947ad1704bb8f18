"""Spend budgets in USD, per client key and per team, per day and per month (`budgets:` in the config).

Checked before the upstream call: the request's cost is estimated (prompt characters / 4 and its
max_tokens, or 256, at the dearest price of the alias's deployments) and reserved against every budget that
applies; a request that would go over any of them is refused with 429 `insufficient_quota`. After the call
the reservation is replaced by the real cost (settle). Cache hits cost nothing and reserve nothing; batch
items count like any request.

Counters live in Redis (`{prefix}spend:{scope}:{name}:{period}`, INCRBYFLOAT with an expiry past the
period's end) so every replica draws on one budget; one Lua script checks and reserves all of a request's
budgets at once. Without Redis, or while Redis fails, they are kept in the process (each replica then
holds the whole budget on its own: a failure never lets spend run unchecked on one replica, nor blocks it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.pricing import Pricing
from gateway.upstream.budget import estimate_tokens

log = logging.getLogger("gateway.spend")

RESERVE = """
for i = 1, #KEYS do
  local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
  if spent + tonumber(ARGV[1]) > tonumber(ARGV[i + 2]) then return i end
end
for i = 1, #KEYS do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return 0
"""


class QuotaExceeded(GatewayError):
    """429 like OpenAI's insufficient_quota: not a rate limit that clears in seconds (batch items fail on it)."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"
    metric_label = "spend_budget"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, headers={"retry-after": str(max(1, round(retry_after_s)))})


@dataclass(slots=True)
class SpendHold:
    keys: list[str]
    labels: list[tuple[str, str, str]]
    reserved: float
    settled: bool = field(default=False)


def _periods(now: datetime) -> dict[str, tuple[str, int, float]]:
    """period → (stamp, ttl seconds, seconds until it resets)."""
    tomorrow = datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp() + 86400
    month_end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC).timestamp()
    ts = now.timestamp()
    return {
        "daily": (now.strftime("%Y%m%d"), 2 * 86400, tomorrow - ts),
        "monthly": (now.strftime("%Y%m"), 32 * 86400, month_end - ts),
    }


class SpendBudgets:
    def __init__(self, config: GatewayConfig, pricing: Pricing, redis=None, prefix: str = "gw:", metrics=None) -> None:
        self._budgets = {"key": config.budgets.keys, "team": config.budgets.teams}
        self._redis = redis
        self._prefix = f"{prefix}spend:"
        self._metrics = metrics
        self._memory: dict[str, float] = {}
        self._script = redis.register_script(RESERVE) if redis is not None else None
        # the dearest price among an alias's deployments: an estimate that never under-reserves
        self._price = {}
        for alias, route in config.models.items():
            names = (
                route.deployments + route.fallbacks + route.heavy + (route.canary.deployments if route.canary else [])
            )
            found = (config.pricing.get(config.deployments[n].pricing_key) for n in names)
            prices = [p for p in found if p is not None]
            self._price[alias] = (
                max((p.input_per_1m for p in prices), default=0.0),
                max((p.output_per_1m for p in prices), default=0.0),
            )
        self.enabled = any(self._budgets.values())
        if metrics is not None:
            for scope, limits in self._budgets.items():
                for name, limit in limits.items():
                    for period in ("daily", "monthly"):
                        cap = getattr(limit, f"{period}_usd")
                        if cap is not None:
                            metrics.spend_budget.labels(scope, name, period).set(cap)
                            metrics.spend.labels(scope, name, period).set(0.0)

    def estimate(self, alias: str, body: dict[str, Any]) -> float:
        input_price, output_price = self._price.get(alias, (0.0, 0.0))
        tokens = estimate_tokens(body)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        completion = limit if isinstance(limit, int) else 256
        prompt = max(0, tokens - completion)
        return (prompt * input_price + completion * output_price) / 1_000_000

    def _applying(self, key) -> list[tuple[str, str, str, float]]:
        found: list[tuple[str, str, str, float]] = []
        for scope, name in (("key", key.name), ("team", getattr(key, "team", None))):
            limit = self._budgets[scope].get(name) if name else None
            if limit is None or name is None:
                continue
            for period in ("daily", "monthly"):
                cap = getattr(limit, f"{period}_usd")
                if cap is not None:
                    found.append((scope, name, period, cap))
        return found

    async def reserve(self, key, alias: str, body: dict[str, Any]) -> SpendHold | None:
        """Reserve the estimated cost on every budget of this key; QuotaExceeded when one would go over."""
        applying = self._applying(key) if self.enabled and key is not None else []
        if not applying:
            return None
        amount = self.estimate(alias, body)
        periods = _periods(datetime.now(UTC))
        keys = [f"{self._prefix}{scope}:{name}:{period}:{periods[period][0]}" for scope, name, period, _ in applying]
        ttl = max(periods[p][1] for _, _, p, _ in applying)
        over = await self._reserve(keys, amount, ttl, [cap for *_, cap in applying])
        if over:
            scope, name, period, cap = applying[over - 1]
            if self._metrics is not None:
                self._metrics.rate_limited.labels("spend_budget").inc()
            raise QuotaExceeded(
                f"the {period} spend budget of {scope} '{name}' (${cap:g}) is used up; it resets in "
                f"{periods[period][2] / 3600:.1f} h",
                retry_after_s=periods[period][2],
            )
        return SpendHold(keys, [(scope, name, period) for scope, name, period, _ in applying], amount)

    async def settle(self, hold: SpendHold | None, cost: float) -> None:
        """Replace the reservation by the real cost (0 when the request failed before any upstream answer)."""
        if hold is None or hold.settled:
            return
        hold.settled = True
        delta = cost - hold.reserved
        totals = await self._add(hold.keys, delta)
        if self._metrics is not None:
            for (scope, name, period), total in zip(hold.labels, totals):
                self._metrics.spend.labels(scope, name, period).set(total)

    async def spent(self, scope: str, name: str, period: str) -> float:
        stamp = _periods(datetime.now(UTC))[period][0]
        key = f"{self._prefix}{scope}:{name}:{period}:{stamp}"
        if self._redis is not None:
            try:
                return float(await self._redis.get(key) or 0.0)
            except Exception:
                pass
        return self._memory.get(key, 0.0)

    async def _reserve(self, keys: list[str], amount: float, ttl: int, caps: list[float]) -> int:
        if self._script is not None:
            try:
                return int(await self._script(keys=keys, args=[amount, ttl, *caps]))
            except Exception as exc:
                log.warning("spend budgets: Redis unavailable, counting in this process (%s)", type(exc).__name__)
        for i, (key, cap) in enumerate(zip(keys, caps), 1):
            if self._memory.get(key, 0.0) + amount > cap:
                return i
        for key in keys:
            self._memory[key] = self._memory.get(key, 0.0) + amount
        return 0

    async def _add(self, keys: list[str], delta: float) -> list[float]:
        if self._redis is not None:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.incrbyfloat(key, delta)
                    return [float(v) for v in await pipe.execute()]
            except Exception as exc:
                log.warning("spend budgets: Redis unavailable, counting in this process (%s)", type(exc).__name__)
        for key in keys:
            self._memory[key] = self._memory.get(key, 0.0) + delta
        return [self._memory[key] for key in keys]
