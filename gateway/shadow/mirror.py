"""Shadow traffic: a share of an alias's live light traffic is sent again, in the background, to a candidate
deployment; both answers are judged side by side and kept.

The user always gets the primary's answer and never waits for the shadow call: `offer()` only starts a
task. Shadow calls are drawn from their own `rpm` and daily dollar cap (candidate and judge together,
shared by replicas through Redis), never from the primary's provider budget, are never cached, retried or
sent down a fallback chain, and are the first thing dropped under load: when `max_in_flight` shadow calls
are already running, or the event loop runs late (LoopLag: this process is busy), the next one is not made. Their cost is counted in the shadow metrics only, never in
the cost per intent of the requests users made.

What is kept of each pair (bounded, `shadow.keep_pairs` per alias): the question and both answers
privacy-filtered (gateway.redact) and cut to 500 characters, both latencies, tokens, cost, the cheap
signals and the verdict.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any, Callable

import orjson

from gateway.config import Deployment, GatewayConfig, ShadowConfig
from gateway.loop_lag import LoopLag
from gateway.metrics import Metrics
from gateway.redact import redact
from gateway.redisio import RedisIO
from gateway.shadow.judge import AskJudge, Judge, Side, answer_side
from gateway.upstream.budget import make_windows
from gateway.upstream.client import Transport
from gateway.upstream.providers import Upstream
from gateway.verbatim import encode

log = logging.getLogger("gateway.shadow")

KEEP_CHARS = 500  # redaction costs ~0.7 µs of CPU per character: keep what a reviewer reads


def _day() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


class ShadowStore:
    """Kept pairs and the day's shadow spend per alias: in Redis when configured, else in the process."""

    def __init__(self, redis=None, prefix: str = "gw:") -> None:
        self._redis = redis
        self._prefix = f"{prefix}shadow:"
        self._pairs: dict[str, list[dict[str, Any]]] = {}
        self._spent: dict[tuple[str, str], float] = {}

    async def add_pair(self, alias: str, pair: dict[str, Any], keep: int) -> None:
        if self._redis is None:
            pairs = self._pairs.setdefault(alias, [])
            pairs.insert(0, pair)
            del pairs[keep:]
            return
        key = f"{self._prefix}{alias}:pairs"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, orjson.dumps(pair))
            pipe.ltrim(key, 0, keep - 1)
            await pipe.execute()

    async def pairs(self, alias: str, since: float = 0.0) -> list[dict[str, Any]]:
        if self._redis is None:
            found = self._pairs.get(alias, [])
        else:
            found = [orjson.loads(raw) for raw in await self._redis.lrange(f"{self._prefix}{alias}:pairs", 0, -1)]
        return [p for p in found if p["ts"] >= since]

    async def clear(self, alias: str) -> None:
        self._pairs.pop(alias, None)
        if self._redis is not None:
            await self._redis.delete(f"{self._prefix}{alias}:pairs")

    async def spent(self, alias: str) -> float:
        if self._redis is None:
            return self._spent.get((alias, _day()), 0.0)
        return float(await self._redis.get(f"{self._prefix}{alias}:usd:{_day()}") or 0.0)

    async def spend(self, alias: str, usd: float) -> None:
        if usd <= 0:
            return
        if self._redis is None:
            day = (alias, _day())
            self._spent[day] = self._spent.get(day, 0.0) + usd
            return
        key = f"{self._prefix}{alias}:usd:{_day()}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incrbyfloat(key, usd)
            pipe.expire(key, 2 * 86400)
            await pipe.execute()


def _question(body: dict[str, Any]) -> str:
    from gateway.request import last_user_text

    messages = body.get("messages")
    return last_user_text(messages) if isinstance(messages, list) else ""


def _kept(text: str) -> str:
    return redact(text[:KEEP_CHARS])


class ShadowMirror:
    def __init__(
        self,
        config: GatewayConfig,
        transport: Transport,
        cost_of: Callable[[dict | None, str | None], float],
        store: ShadowStore,
        metrics: Metrics,
        redis=None,
        prefix: str = "gw:",
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._routes = {alias: route.shadow for alias, route in config.models.items() if route.shadow is not None}
        self._deployments = config.deployments
        self._transport = transport
        # Their own clients: no provider budget of the primary's, no breaker, no retry (gateway/upstream/)
        self._upstreams = {
            name: Upstream(name, config.deployments[name], transport)
            for name in {n for s in self._routes.values() for n in (s.deployment, s.judge) if n}
        }
        self._cost_of = cost_of
        self.store = store
        self._metrics = metrics
        self._windows = make_windows(RedisIO.wrap(redis, prefix).use("shadow") if redis is not None else None)
        self._rng = rng
        self._percent = {alias: shadow.percent for alias, shadow in self._routes.items()}
        self._primary = {alias: config.models[alias].deployments[0] for alias in self._routes}
        self._tasks: set[asyncio.Task] = set()
        self.lag = LoopLag(busy_ms=min((shadow.busy_lag_ms for shadow in self._routes.values()), default=5.0))
        self._judges = {
            alias: Judge(self._asker(alias, shadow.judge) if shadow.judge else None, shadow.judge_prompt)
            for alias, shadow in self._routes.items()
        }

    @property
    def aliases(self) -> list[str]:
        return list(self._routes)

    def percent(self, alias: str) -> float:
        return self._percent.get(alias, 0.0)

    def set_percent(self, alias: str, percent: float) -> None:
        """The promotion's shadow stage mirrors everything; this replica only (it is a sampling rate)."""
        self._percent[alias] = percent

    def offer(
        self, alias: str, intent: str, variant: str, tier: str, body: dict[str, Any], primary: dict[str, Any]
    ) -> bool:
        """Called after a user got the primary's answer. `primary`: status, parsed (the answer), latency_s,
        usage, served_by. Returns whether a shadow call was started."""
        shadow = self._routes.get(alias)
        if shadow is None or variant != "stable" or tier != "light":
            return False
        if shadow.intents and intent not in shadow.intents:
            return False
        percent = self._percent[alias]
        if percent <= 0 or (percent < 100 and self._rng() * 100 >= percent):
            return False
        self.lag.start()
        if len(self._tasks) >= shadow.max_in_flight or self.lag.busy:
            self._metrics.shadow_calls.labels(alias, "dropped").inc()
            return False
        task = asyncio.create_task(self._shadow(alias, shadow, intent, body, primary))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self) -> None:
        """Wait for running shadow calls (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self.lag.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _shadow(
        self, alias: str, shadow: ShadowConfig, intent: str, body: dict[str, Any], primary: dict[str, Any]
    ) -> None:
        try:
            if await self.store.spent(alias) >= shadow.max_usd_per_day:
                self._metrics.shadow_calls.labels(alias, "over_budget").inc()
                return
            grant = await self._windows.take(f"shadow:{alias}", caps=(shadow.rpm, None), costs=(1, 0))
            if not grant.ok:
                self._metrics.shadow_calls.labels(alias, "rate_limited").inc()
                return
            await self._compare(alias, shadow, intent, body, primary)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a shadow call never troubles anyone: count it, log it, move on
            self._metrics.shadow_calls.labels(alias, "failed").inc()
            log.warning("shadow call for %s failed: %s: %s", alias, type(exc).__name__, exc)

    async def replay(
        self,
        alias: str,
        body: dict[str, Any],
        intent: str = "other",
        primary: str | None = None,
        candidate: str | None = None,
    ) -> dict[str, Any]:
        """One golden-set line through both sides (`gateway shadow replay`): the alias's first light deployment
        (or `primary`) against its shadow candidate (or `candidate`); the pair is judged and kept."""
        shadow = self._routes[alias]
        if candidate is not None:
            shadow = shadow.model_copy(update={"deployment": candidate})
        name = primary or self._primary[alias]
        body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        started = time.perf_counter()
        status, parsed = await self._call(name, self._deployments[name], body)
        usage = parsed.get("usage") if isinstance(parsed, dict) else None
        answer = {
            "status": status,
            "parsed": parsed,
            "latency_s": time.perf_counter() - started,
            "usage": usage,
            "served_by": name,
        }
        return await self._compare(alias, shadow, intent, body, answer)

    async def _compare(
        self, alias: str, shadow: ShadowConfig, intent: str, body: dict[str, Any], primary: dict[str, Any]
    ) -> dict[str, Any]:
        name = shadow.deployment
        # only non-streamed answers are offered: the body goes as the client sent it (gateway/verbatim.py)
        started = time.perf_counter()
        status, parsed = await self._call(name, self._deployments[name], body)
        latency_s = time.perf_counter() - started
        usage = parsed.get("usage") if isinstance(parsed, dict) else None
        cost = self._cost_of(usage, name)
        await self.store.spend(alias, cost)
        self._metrics.shadow_calls.labels(alias, "ok" if status == 200 else "error").inc()
        self._metrics.shadow_cost.labels(alias, "candidate").inc(cost)

        fmt = body.get("response_format")
        wants_json = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
        mine = answer_side(primary["status"], primary["parsed"], wants_json)
        theirs = answer_side(status, parsed, wants_json)
        question = _question(body)
        judge = self._judges[alias]
        if judge.has_model and await self.store.spent(alias) >= shadow.max_usd_per_day:
            verdict, how = "tie", "undecided"  # the cap also stops the judge
            self._metrics.shadow_calls.labels(alias, "over_budget").inc()
        else:
            verdict, how = await judge.compare(question, mine, theirs)
        self._metrics.shadow_verdicts.labels(alias, verdict).inc()
        pair = {
            "ts": time.time(),
            "intent": intent,
            "question": _kept(question),
            "verdict": verdict,
            "how": how,
            "primary": self._side(mine, primary["latency_s"], primary.get("usage"), primary.get("served_by")),
            "candidate": self._side(theirs, latency_s, usage, name),
        }
        await self.store.add_pair(alias, pair, shadow.keep_pairs)
        return pair

    def _side(self, side: Side, latency_s: float, usage: dict | None, deployment: str | None) -> dict[str, Any]:
        usage = usage if isinstance(usage, dict) else {}
        return {
            "deployment": deployment,
            "status": side.status,
            "text": _kept(side.text),
            "problems": side.problems,
            "latency_ms": round(latency_s * 1000, 2),
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "cost_usd": self._cost_of(usage, deployment),
        }

    async def _call(self, name: str, deployment: Deployment, body: dict[str, Any]) -> tuple[int, Any]:
        """One attempt, no retry, no fallback: a failure is a data point about the candidate."""
        from gateway.errors import UpstreamError, UpstreamStatus

        payload = encode(body, {"model": deployment.model})
        upstream = self._upstreams.get(name) or Upstream(name, deployment, self._transport)
        try:
            answer = await upstream.post("/chat/completions", payload)
        except UpstreamStatus as exc:
            return exc.status, None
        except UpstreamError:
            return 502, None
        try:
            return answer.status, orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            return 502, None

    def _asker(self, alias: str, judge_name: str) -> AskJudge:
        deployment = self._deployments[judge_name]

        async def ask(prompt: str) -> str:
            body = {"messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 5}
            status, parsed = await self._call(judge_name, deployment, body)
            if status != 200 or not isinstance(parsed, dict):
                return "TIE"
            usage = parsed.get("usage")
            cost = self._cost_of(usage, judge_name)
            await self.store.spend(alias, cost)
            self._metrics.shadow_cost.labels(alias, "judge").inc(cost)
            side = answer_side(status, parsed, False)
            return side.text

        return ask
