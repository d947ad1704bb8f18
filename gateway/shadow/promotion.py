"""Gated promotion of a candidate fine-tune: `gateway canary promote MODEL` walks a staged plan and advances
only while the gates hold.

    shadow ──► canary 1% ──► 5% ──► 25% ──► 100% ──► promoted (the registry says so)
       └────────┴──────────┴──────┴───────┴──► rolled back (canary 0%), with the gate that failed

The candidate is the alias's `shadow.deployment`, which must also be one of its `canary.deployments`.
Each stage waits for `promotion.min_samples` (judged shadow pairs in the shadow stage, canary requests in
the others), then checks:

- quality: the 95% lower bound of the candidate's side-by-side win rate, over every pair judged since the
  promotion started, reaches `min_win_rate` (ties count half, or whole with `promote_on_ties`);
- health (canary stages): the canary's error rate is at most stable's plus `max_error_rate_increase`, and
  its p95 latency at most `max_p95_ratio` times stable's, both measured over this stage's live requests.

The plan lives in Redis (`{prefix}promotion:{alias}`), so any replica may step it (one at a time, under a
short lock) and every replica sees it; each step is audited in the plan's history. Request outcomes are
counted per replica and added to Redis every check (`{prefix}promotion:{alias}:{stage_id}` hash:
requests, errors and latency buckets per variant), so the gates see the whole fleet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import orjson

from gateway.config import GatewayConfig
from gateway.shadow.registry import ModelRegistry, utc_now
from gateway.shadow.report import summarise

if TYPE_CHECKING:
    from gateway.metrics import Metrics
    from gateway.routing.canary import CanaryState
    from gateway.shadow.mirror import ShadowMirror

log = logging.getLogger("gateway.promotion")

LATENCY_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
SHADOW = "shadow"


def p95_from_buckets(counts: dict[int, int]) -> float | None:
    """The upper edge of the bucket holding the 95th percentile (ms), as Prometheus would bound it."""
    total = sum(counts.values())
    if not total:
        return None
    seen = 0
    for edge in sorted(counts):
        seen += counts[edge]
        if seen >= 0.95 * total:
            return float(edge)
    return float(max(counts))


def _bucket(latency_ms: float) -> int:
    for edge in LATENCY_MS:
        if latency_ms <= edge:
            return edge
    return LATENCY_MS[-1] * 10


class VariantStats:
    """Outcomes of stable and canary requests of aliases being promoted, summed over replicas."""

    def __init__(self, redis=None, prefix: str = "gw:") -> None:
        self._redis = redis
        self._prefix = f"{prefix}promotion:"
        self._pending: dict[tuple[str, str], dict[str, int]] = {}  # (alias, stage_id) → field → count
        self._memory: dict[tuple[str, str], dict[str, int]] = {}

    def observe(self, alias: str, stage_id: str, variant: str, failed: bool, latency_s: float) -> None:
        fields = self._pending.setdefault((alias, stage_id), {})
        for name in (
            f"{variant}:requests",
            f"{variant}:errors" if failed else None,
            None if failed else f"{variant}:le:{_bucket(latency_s * 1000)}",
        ):
            if name is not None:
                fields[name] = fields.get(name, 0) + 1

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for (alias, stage_id), fields in pending.items():
            if self._redis is None:
                target = self._memory.setdefault((alias, stage_id), {})
                for name, count in fields.items():
                    target[name] = target.get(name, 0) + count
                continue
            key = f"{self._prefix}{alias}:{stage_id}"
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, count in fields.items():
                    pipe.hincrby(key, name, count)
                pipe.expire(key, 7 * 86400)
                await pipe.execute()

    async def read(self, alias: str, stage_id: str) -> dict[str, dict[str, Any]]:
        if self._redis is None:
            raw = self._memory.get((alias, stage_id), {})
        else:
            raw = {
                k.decode(): int(v) for k, v in (await self._redis.hgetall(f"{self._prefix}{alias}:{stage_id}")).items()
            }
        out = {}
        for variant in ("stable", "canary"):
            requests = raw.get(f"{variant}:requests", 0)
            errors = raw.get(f"{variant}:errors", 0)
            buckets = {int(k.rsplit(":", 1)[1]): v for k, v in raw.items() if k.startswith(f"{variant}:le:")}
            out[variant] = {
                "requests": requests,
                "errors": errors,
                "error_rate": errors / requests if requests else 0.0,
                "p95_ms": p95_from_buckets(buckets),
            }
        return out


class PromotionError(ValueError):
    """A promotion that cannot start or change (no shadow or canary configured, one already running)."""


class Promoter:
    def __init__(
        self,
        config: GatewayConfig,
        canary: CanaryState,
        mirror: ShadowMirror,
        registry: ModelRegistry,
        redis=None,
        prefix: str = "gw:",
        metrics: Metrics | None = None,
    ) -> None:
        self._routes = config.models
        self._canary = canary
        self._mirror = mirror
        self._registry = registry
        self._redis = redis
        self._prefix = f"{prefix}promotion:"
        self._metrics = metrics
        self.stats = VariantStats(redis, prefix)
        self._memory: dict[str, dict[str, Any]] = {}
        self._running: dict[str, dict[str, Any]] = {}  # this replica's view of running plans, for observe()
        self._canary_deployments = {
            alias: frozenset(route.canary.deployments)
            for alias, route in config.models.items()
            if route.canary is not None
        }

    # Request outcomes, from the recorder; cheap: a dict update when a promotion runs, nothing otherwise.
    def observe(self, alias: str, variant: str, status: int, served_by: str | None, latency_s: float) -> None:
        plan = self._running.get(alias)
        if plan is None or plan["stage_name"] == SHADOW:
            return
        failed = status >= 500 or (variant == "canary" and served_by not in self._canary_deployments[alias])
        self.stats.observe(alias, plan["stage_id"], variant, failed, latency_s)

    def plan_stages(self, alias: str) -> list[str]:
        return [SHADOW] + [f"{p:g}" for p in self._routes[alias].promotion.stages]

    async def start(self, alias: str, who: str, why: str = "") -> dict[str, Any]:
        route = self._routes.get(alias)
        if route is None:
            raise KeyError(alias)
        if route.shadow is None or route.canary is None:
            raise PromotionError(f"model {alias!r} needs both `shadow` and `canary` configured to be promoted")
        if route.shadow.deployment not in route.canary.deployments:
            raise PromotionError(
                f"models.{alias}.shadow.deployment ({route.shadow.deployment}) must be one of "
                f"models.{alias}.canary.deployments to be promoted"
            )
        current = await self.status(alias)
        if current and current["status"] == "running":
            raise PromotionError(f"a promotion of {alias!r} is already running (stage {current['stage_name']})")
        now = time.time()
        plan = {
            "alias": alias,
            "candidate": route.shadow.deployment,
            "stages": self.plan_stages(alias),
            "stage": 0,
            "stage_name": SHADOW,
            "stage_id": _new_id(),
            "status": "running",
            "reason": None,
            "started_ts": now,
            "stage_ts": now,
            "history": [],
        }
        _event(plan, who, "started", why or "promotion started")
        await self._canary.set(alias, 0.0, reason=f"promotion of {plan['candidate']} started (shadow stage)")
        await self._save(plan)
        await self.refresh()
        return plan

    async def stop(self, alias: str, who: str, why: str = "") -> dict[str, Any]:
        plan = await self.status(alias)
        if plan is None or plan["status"] != "running":
            raise PromotionError(f"no promotion of {alias!r} is running")
        await self._roll_back(plan, who, why or "stopped by an operator")
        return plan

    async def status(self, alias: str) -> dict[str, Any] | None:
        if self._redis is None:
            return self._memory.get(alias)
        raw = await self._redis.get(f"{self._prefix}{alias}")
        return orjson.loads(raw) if raw else None

    async def refresh(self) -> None:
        """This replica's view of the running plans: what observe() counts and how much the mirror samples."""
        await self.stats.flush()
        for alias in self._routes:
            plan = await self.status(alias)
            if plan is not None and plan["status"] == "running":
                self._running[alias] = plan
            else:
                self._running.pop(alias, None)
            running = alias in self._running
            shadow = self._routes[alias].shadow  # the mirror's aliases are those with a shadow
            if shadow is not None and alias in self._mirror.aliases:
                self._mirror.set_percent(alias, 100.0 if running else shadow.percent)

    async def step(self, alias: str, who: str = "promotion") -> dict[str, Any] | None:
        """Check the gates of the current stage once: wait, advance, promote or roll back."""
        await self.stats.flush()
        plan = await self.status(alias)
        if plan is None or plan["status"] != "running":
            return plan
        settings = self._routes[alias].promotion
        pairs = await self._mirror.store.pairs(alias, since=plan["started_ts"])
        quality = summarise(pairs, ties_win=settings.promote_on_ties)["overall"]
        stage_pairs = sum(1 for p in pairs if p["ts"] >= plan["stage_ts"])
        plan["gates"] = {"win_rate": quality}
        if plan["stage_name"] == SHADOW:
            if stage_pairs < settings.min_samples:
                plan["waiting"] = f"{stage_pairs}/{settings.min_samples} judged shadow pairs"
                await self._save(plan)
                return plan
        else:
            health = await self.stats.read(alias, plan["stage_id"])
            plan["gates"]["health"] = health
            canary, stable = health["canary"], health["stable"]
            if canary["requests"] < settings.min_samples:
                plan["waiting"] = f"{canary['requests']}/{settings.min_samples} canary requests"
                await self._save(plan)
                return plan
            if canary["error_rate"] > stable["error_rate"] + settings.max_error_rate_increase:
                return await self._roll_back(
                    plan,
                    who,
                    (
                        f"health gate: canary error rate {canary['error_rate']:.3f} > stable {stable['error_rate']:.3f}"
                        f" + {settings.max_error_rate_increase:.3f} at {plan['stage_name']}%"
                    ),
                )
            if canary["p95_ms"] and stable["p95_ms"] and canary["p95_ms"] > stable["p95_ms"] * settings.max_p95_ratio:
                return await self._roll_back(
                    plan,
                    who,
                    (
                        f"latency gate: canary p95 {canary['p95_ms']:.0f} ms > {settings.max_p95_ratio:g} x stable "
                        f"p95 {stable['p95_ms']:.0f} ms at {plan['stage_name']}%"
                    ),
                )
        if quality["low"] < settings.min_win_rate:
            return await self._roll_back(
                plan,
                who,
                (
                    f"quality gate: win rate lower bound {quality['low']:.3f} < {settings.min_win_rate:.3f} "
                    f"(win {quality['win']}, tie {quality['tie']}, loss {quality['loss']}) at {plan['stage_name']}"
                ),
            )
        return await self._advance(plan, who)

    async def run(self) -> None:
        """The background loop of every replica: refresh its view, and step the plans it holds the lock of."""
        every = min((r.promotion.check_every_s for r in self._routes.values()), default=10.0)
        while True:
            try:
                await self.refresh()
                for alias in list(self._running):
                    if await self._lock(alias, every):
                        await self.step(alias)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("promotion loop: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(every)

    async def _advance(self, plan: dict[str, Any], who: str) -> dict[str, Any]:
        plan.pop("waiting", None)
        if plan["stage"] + 1 >= len(plan["stages"]):
            plan["status"] = "promoted"
            _event(plan, who, "promoted", f"every gate held up to {plan['stage_name']}%")
            await self._registry.update(
                plan["candidate"],
                {"promoted": utc_now()},
                who=who,
                why=f"promoted on {plan['alias']} by the staged plan",
            )
            await self._save(plan)
            await self.refresh()
            self._count(plan, "promoted")
            return plan
        plan["stage"] += 1
        plan["stage_name"] = plan["stages"][plan["stage"]]
        plan["stage_id"], plan["stage_ts"] = _new_id(), time.time()
        await self._canary.set(
            plan["alias"], float(plan["stage_name"]), reason=f"promotion stage {plan['stage_name']}%"
        )
        _event(plan, who, "advanced", f"gates held; canary at {plan['stage_name']}%")
        await self._save(plan)
        await self.refresh()
        self._count(plan, "advanced")
        return plan

    async def _roll_back(self, plan: dict[str, Any], who: str, reason: str) -> dict[str, Any]:
        plan.pop("waiting", None)
        await self._canary.set(plan["alias"], 0.0, reason=f"promotion rolled back: {reason}")
        plan["status"], plan["reason"] = "rolled_back", reason
        _event(plan, who, "rolled_back", reason)
        log.warning("promotion of %s on %s rolled back: %s", plan["candidate"], plan["alias"], reason)
        await self._save(plan)
        await self.refresh()
        self._count(plan, "rolled_back")
        return plan

    def _count(self, plan: dict[str, Any], event: str) -> None:
        if self._metrics is not None:
            self._metrics.promotion_events.labels(plan["alias"], event).inc()

    async def _save(self, plan: dict[str, Any]) -> None:
        if self._redis is None:
            self._memory[plan["alias"]] = plan
        else:
            await self._redis.set(f"{self._prefix}{plan['alias']}", orjson.dumps(plan))

    async def _lock(self, alias: str, seconds: float) -> bool:
        if self._redis is None:
            return True
        return bool(
            await self._redis.set(f"{self._prefix}{alias}:lock", os.getpid(), nx=True, px=max(100, int(seconds * 900)))
        )


def _new_id() -> str:
    return os.urandom(6).hex()


def _event(plan: dict[str, Any], who: str, event: str, detail: str) -> None:
    plan["history"].append({"at": utc_now(), "who": who, "event": event, "stage": plan["stage_name"], "detail": detail})
