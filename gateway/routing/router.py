"""Which deployments serve a request: difficulty → tier → the tier's ordered chain of deployments.

A request whose difficulty reaches the alias's threshold goes to the heavy tier. A key allowed to may
force a tier with `x-gateway-tier: light|heavy`. A conversation that went heavy stays heavy for its next
turns (sticky by `x-session-id`, else the body's `user`) when the alias says so. Light traffic of an
alias with a canary is split between the canary and the stable chain (routing/canary.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from gateway.bounds import LOOP_TEXT_LIMIT, off_loop
from gateway.config import Deployment, GatewayConfig, ModelRoute
from gateway.errors import InvalidRequest, ModelNotFound
from gateway.redisio import RedisUnavailable, RedisUse
from gateway.request import ChatRequest
from gateway.routing.canary import CanaryState, in_canary

if TYPE_CHECKING:
    from gateway.metrics import Metrics
    from gateway.routing.difficulty import DifficultyScorer
    from gateway.routing.second_opinion import SecondOpinion

log = logging.getLogger("gateway.routing")

STICKY_TTL_S = 1800.0
TIERS = ("light", "heavy")


class StickyTiers:
    """Conversations that went heavy, per alias: in this process (bounded), and in Redis when configured so
    that the next turn finds them whichever replica it reaches. Redis slower than `timeout_s`, or away,
    counts as "not known heavy": the turn is routed on its own difficulty."""

    def __init__(self, redis: RedisUse | None = None, ttl_s: float = STICKY_TTL_S, max_entries: int = 100_000) -> None:
        self.redis = redis  # a gateway.redisio use, with the cache's short timeout
        self.prefix = (redis.prefix if redis is not None else "gw:") + "sticky:"
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._heavy: dict[str, float] = {}
        self._pending: dict[str, asyncio.Future] = {}  # prefetched lookups
        self._writes: set[asyncio.Future] = set()

    def prefetch(self, alias: str, session: str) -> None:
        """Start the Redis lookup of `is_heavy` now, so that it overlaps the request's other steps."""
        key = f"{alias}:{session}"
        if self.redis is None or key in self._pending or self._known(key):
            return
        if len(self._pending) >= 1024:  # lookups of requests that never asked (cache hits, errors)
            self._pending = {k: t for k, t in self._pending.items() if not t.done()}
        self._pending[key] = asyncio.ensure_future(self._lookup(key))

    async def is_heavy(self, alias: str, session: str) -> bool:
        key = f"{alias}:{session}"
        if self._known(key):
            return True
        pending = self._pending.pop(key, None)
        if pending is not None:
            return await asyncio.shield(pending)
        if self.redis is None:
            return False
        return await self._lookup(key)

    def _known(self, key: str) -> bool:
        until = self._heavy.get(key)
        return until is not None and until > time.monotonic()

    async def _lookup(self, key: str) -> bool:
        name = self.prefix + key
        redis = self.redis
        if redis is None:
            return False
        try:
            found = await redis.call("read", lambda: redis.client.exists(name))
        except RedisUnavailable:
            return False
        if found:
            self._remember(key)
        return bool(found)

    async def mark_heavy(self, alias: str, session: str) -> None:
        """Known here at once; written to Redis in the background (the answer does not wait on it)."""
        key = f"{alias}:{session}"
        self._remember(key)
        if self.redis is not None:
            name = self.prefix + key
            self._writes.add(task := asyncio.ensure_future(self._write(name)))
            task.add_done_callback(self._writes.discard)

    async def _write(self, name: str) -> None:
        redis = self.redis
        if redis is None:
            return
        try:
            await redis.call("write", lambda: redis.client.set(name, b"1", ex=int(self.ttl_s)))
        except RedisUnavailable:
            pass

    def _remember(self, key: str) -> None:
        if len(self._heavy) >= self.max_entries:
            now = time.monotonic()
            self._heavy = {k: v for k, v in self._heavy.items() if v > now}
            if len(self._heavy) >= self.max_entries:
                self._heavy.clear()
        self._heavy[key] = time.monotonic() + self.ttl_s


class Router:
    def __init__(
        self,
        config: GatewayConfig,
        scorer: DifficultyScorer | None = None,
        sticky: StickyTiers | None = None,
        metrics: Metrics | None = None,
        canary: CanaryState | None = None,
        second: SecondOpinion | None = None,
    ) -> None:
        self.config = config
        self.scorer = scorer
        self.second = second  # a second look at scores near the threshold
        self.sticky = sticky or StickyTiers()
        self.metrics = metrics
        self.canary = canary
        self._chains = {(alias, tier): config.chain(alias, tier) for alias in config.models for tier in TIERS}
        self._chains.update(
            {
                (alias, "canary"): config.chain(alias, "canary")
                for alias, route in config.models.items()
                if route.canary is not None
            }
        )

    def require_model(self, req: ChatRequest) -> None:
        if req.alias not in self.config.models:
            raise ModelNotFound(
                f"the model '{req.alias}' does not exist; GET /v1/models lists the models", param="model"
            )

    def chain(self, alias: str, tier: str) -> list[tuple[str, Deployment]]:
        """The deployments of an alias's tier, in fallback order (embeddings use the light tier's)."""
        return self._chains[(alias, tier)]

    def prefetch(self, req: ChatRequest) -> None:
        """Start the Redis reads `decide` will need (the sticky check), so that they overlap the steps before."""
        route = self.config.models.get(req.alias)
        if route is None or route.difficulty_threshold is None or not route.sticky_heavy or self.scorer is None:
            return
        session = req.headers.get("x-session-id") or req.body.get("user")
        if isinstance(session, str) and session:
            self.sticky.prefetch(req.alias, session)

    async def decide(self, req: ChatRequest) -> list[tuple[str, Deployment]]:
        route = self.config.models[req.alias]
        req.tier = await self._tier(req, route)
        if self.metrics is not None:
            self.metrics.route_decisions.labels(req.alias, req.tier).inc()
            if req.difficulty is not None:
                self.metrics.difficulty.labels(req.alias).observe(req.difficulty.score)
        if req.tier == "light" and self.canary_side(req) == "canary":
            req.variant = "canary"
            return self._chains[(req.alias, "canary")]
        return self._chains[(req.alias, req.tier)]

    def canary_side(self, req: ChatRequest) -> str:
        """ "canary" when this user's light requests go to the alias's canary, else "stable". Sticky per user
        (a request that names no user is split at random), so it is known before routing: the cache keeps
        the two sides apart."""
        route = self.config.models.get(req.alias)
        if route is None or route.canary is None or self.canary is None:
            return "stable"
        user = req.headers.get("x-session-id") or req.body.get("user")
        stable_id = user if isinstance(user, str) and user else req.request_id
        return "canary" if in_canary(stable_id, self.canary.get(req.alias), salt=req.alias) else "stable"

    async def observe(self, req: ChatRequest, failed: bool = False) -> None:
        """After the upstream call: a canary request that had to fall back (or failed) counts against it."""
        route = self.config.models[req.alias]
        canary = route.canary
        if canary is None or req.tier != "light":
            return
        # Stable light requests are counted too, so that panels compare the canary with what it replaces.
        failed = failed or req.served_by not in (canary.deployments if req.variant == "canary" else route.deployments)
        if self.metrics is not None:
            self.metrics.canary_requests.labels(req.alias, req.variant, "failed" if failed else "ok").inc()
        if req.variant == "canary" and self.canary is not None:
            await self.canary.observe(req.alias, failed, canary.rollback_window, canary.rollback_error_rate)

    async def _second_opinion(self, req: ChatRequest, threshold: float) -> None:
        assert self.second is not None and req.difficulty is not None
        busy = self.second.busy()
        again = None if busy else await self.second.rescore(req.messages, req.last_user_text)
        if busy:
            outcome = "busy"
        elif again is None:
            outcome = "pending"
        else:
            outcome = "changed" if (again.score >= threshold) != (req.difficulty.score >= threshold) else "kept"
            req.difficulty = again
        if self.metrics is not None:
            self.metrics.second_opinions.labels(req.alias, outcome).inc()

    async def _tier(self, req: ChatRequest, route: ModelRoute) -> str:
        forced = req.headers.get("x-gateway-tier")
        if forced and req.key is not None and req.key.allow_force_tier:
            if forced not in TIERS:
                raise InvalidRequest(f"x-gateway-tier must be one of {', '.join(TIERS)}", param="x-gateway-tier")
            if forced == "light" or route.heavy:
                return forced
        if route.difficulty_threshold is None or self.scorer is None:
            return "light"
        if len(req.last_user_text) > LOOP_TEXT_LIMIT:  # ~1 ms per 100 characters of regex features
            req.difficulty = await off_loop(self.scorer.score, req.messages, req.vector)
        else:
            req.difficulty = self.scorer.score(req.messages, req.vector)
        if (
            self.second is not None
            and self.second.wanted(req.difficulty, route.difficulty_threshold)
            and len(req.last_user_text) <= LOOP_TEXT_LIMIT  # a long message keeps its first score
        ):
            await self._second_opinion(req, route.difficulty_threshold)
        found = req.headers.get("x-session-id") or req.body.get("user")
        session = found if route.sticky_heavy and isinstance(found, str) and found else None
        if req.difficulty.score >= route.difficulty_threshold:
            if session is not None:
                await self.sticky.mark_heavy(req.alias, session)
            return "heavy"
        if session is not None and await self.sticky.is_heavy(req.alias, session):
            return "heavy"
        return "light"
