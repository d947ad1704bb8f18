"""Every Prometheus metric of the gateway, in one place, on an explicit registry.

Labels are bounded: intent from the configured set, model (public alias) and deployment from config,
tier, cache result, status class. Never user text.

`prime(config, intents)` creates every counter child an alert or panel reads at 0 when the app starts:
`increase()` of a counter whose first sample is already 1 is 0, so a first rollback or a first 5xx would
go unseen. Gauges of shared state (circuits, quotas, Redis) are refreshed by gateway/gauges.py.

With several uvicorn workers set PROMETHEUS_MULTIPROC_DIR: prometheus-client's multiprocess mode then
aggregates every worker's samples at /metrics.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.metrics import MetricWrapperBase

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
OVERHEAD_BUCKETS = LATENCY_BUCKETS  # the gateway's own time can reach seconds (CPU starved, Redis slow)
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
CACHE_RESULTS = ("hit-exact", "hit-semantic", "miss", "coalesced", "bypass", "off")
STATUS_CLASSES = ("2xx", "4xx", "5xx")
VARIANTS = ("stable", "canary")
DEPLOYMENT_STATES = {"closed": 0, "half-open": 1, "open": 2}  # gateway_deployment_state values
UPSTREAM_ERRORS = (
    "upstream",
    "upstream_connect",
    "upstream_timeout",
    "upstream_unavailable",
    "upstream_429",
    "upstream_4xx",
    "upstream_5xx",
)
SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))


class _Memo:
    """A labelled metric whose children are looked up once. prometheus-client's `labels()` checks and locks
    on every call (a fifth of the pipeline's own CPU); labels here are bounded, so the dict is too."""

    __slots__ = ("metric", "_children")

    def __init__(self, metric) -> None:
        self.metric = metric
        self._children: dict[tuple, object] = {}

    def labels(self, *values):
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child

    def __getattr__(self, name: str):
        return getattr(self.metric, name)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Chat requests answered, by outcome.",
            ["model", "intent", "tier", "cache", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to last byte (client errors, 4xx, not timed).",
            ["model", "intent", "stream", "cache"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "gateway_errors",
            "Requests answered with an error, by status class.",
            ["model", "intent", "status_class"],
            registry=r,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Time waiting on the upstream, per deployment.",
            ["deployment"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time spent in the gateway itself (request time minus upstream wait).",
            ["model", "cache"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Time to the first content token of a stream.",
            ["model", "tier"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "gateway_tokens", "Tokens, by kind (prompt, completion).", ["model", "intent", "kind"], registry=r
        )
        self.cost = Counter(
            "gateway_cost_usd",
            "Upstream cost in USD, from the pricing table.",
            ["model", "intent", "deployment"],
            registry=r,
        )
        self.cost_saved = Counter(
            "gateway_cost_saved_usd", "Cost of answers served from the cache.", ["intent"], registry=r
        )
        self.cache_requests = Counter(
            "gateway_cache_requests", "Cache lookups, by result.", ["intent", "result"], registry=r
        )
        self.cache_errors = Counter(
            "gateway_cache_errors", "Cache store failures (served anyway).", ["operation"], registry=r
        )
        self.cache_semantic_hits = Counter(
            "gateway_cache_semantic_hits",
            "Semantic cache hits, by intent and language of the question.",
            ["intent", "lang"],
            registry=r,
        )
        self.retries = Counter("gateway_retries", "Upstream retries, by reason.", ["deployment", "reason"], registry=r)
        self.fallbacks = Counter(
            "gateway_fallbacks",
            "Requests moved to the next deployment.",
            ["from_deployment", "to_deployment"],
            registry=r,
        )
        self.rate_limited = Counter(
            "gateway_rate_limited", "Requests refused or shed by a limit.", ["scope"], registry=r
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors", "Failed upstream attempts.", ["deployment", "error"], registry=r
        )
        self.route_decisions = Counter(
            "gateway_route_decisions", "Routing decisions, by tier.", ["model", "tier"], registry=r
        )
        self.difficulty = Histogram(
            "gateway_difficulty_score", "Difficulty scores.", ["model"], buckets=SCORE_BUCKETS, registry=r
        )
        self.second_opinions = Counter(
            "gateway_route_second_opinions",
            "Uncertain difficulty scores looked at again on the stronger embedding, by outcome (changed: the"
            " tier changed; kept; pending: that embedding still loading, the first score stood; busy: the process"
            " was saturated, the first score stood).",
            ["model", "outcome"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "gateway_circuit_open",
            "1 while a deployment's breaker is open.",
            ["deployment"],
            registry=r,
            multiprocess_mode="max",
        )
        self.canary_percent = Gauge(
            "gateway_canary_percent",
            "Share of light traffic sent to the canary.",
            ["model"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.canary_requests = Counter(
            "gateway_canary_requests",
            "Light requests of a model with a canary, by variant and outcome "
            "(failed: the variant's own deployments did not answer).",
            ["model", "variant", "outcome"],
            registry=r,
        )
        self.variant_duration = Histogram(
            "gateway_variant_duration_seconds",
            "Request time of the light requests of a model with a canary, by variant.",
            ["model", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.canary_rollbacks = Counter(
            "gateway_canary_rollbacks", "Automatic canary rollbacks.", ["model"], registry=r
        )
        # Cascade (routing/cascade.py): uncertain-band requests answered light first, by outcome and reason.
        self.cascade = Counter(
            "gateway_cascade",
            "Cascade requests: kept light or escalated to heavy.",
            ["model", "outcome", "reason"],
            registry=r,
        )
        self.cascade_added_seconds = Histogram(
            "gateway_cascade_added_seconds",
            "Time of the light attempt added to escalated requests.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cascade_light_cost = Counter(
            "gateway_cascade_light_cost_usd",
            "What the light attempts of escalated requests cost.",
            ["model"],
            registry=r,
        )
        self.redis_seconds = Histogram(
            "gateway_redis_seconds",
            "Redis calls that answered, by operation.",
            ["operation"],
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "gateway_redis_errors",
            "Redis calls that failed open, by operation and error "
            "(timeout, connection, error, skipped while backing off).",
            ["operation", "error"],
            registry=r,
        )
        self.in_flight = Gauge(
            "gateway_in_flight_requests", "Requests being served.", registry=r, multiprocess_mode="livesum"
        )
        self.deployment_state = Gauge(
            "gateway_deployment_state",
            "Breaker state of each deployment, read from the shared state: 0 closed, 1 half-open, 2 open.",
            ["deployment"],
            registry=r,
            multiprocess_mode="max",
        )
        self.quota_remaining = Gauge(
            "gateway_upstream_quota_remaining",
            "What is left of a deployment's provider quota in the current minute.",
            ["deployment", "kind"],
            registry=r,
            multiprocess_mode="min",
        )
        self.redis_up = Gauge(
            "gateway_redis_up", "1 when the last Redis health check answered.", registry=r, multiprocess_mode="min"
        )
        self.redis_ping = Histogram(
            "gateway_redis_ping_seconds",
            "Round trip of the periodic Redis health check.",
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.redis_failures = Counter("gateway_redis_health_failures", "Redis health checks that failed.", registry=r)
        self.build_info = Gauge(
            "gateway_build_info",
            "Always 1: the version that runs.",
            ["version", "python"],
            registry=r,
            multiprocess_mode="max",
        )
        self.process_cpu = Gauge(
            "gateway_process_cpu_seconds",
            "CPU time used by the gateway's processes.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.process_memory = Gauge(
            "gateway_process_resident_memory_bytes",
            "Resident memory of the processes.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.process_fds = Gauge(
            "gateway_process_open_fds",
            "Open file descriptors of the processes.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.workers = Gauge("gateway_workers", "Live worker processes.", registry=r, multiprocess_mode="livesum")
        self.workers.set(1)
        self.build_info.labels(_version(), platform.python_version()).set(1)

        # Shadow traffic and promotions (gateway/shadow/): never mixed into the request and cost metrics above.
        self.shadow_calls = Counter(
            "gateway_shadow_calls", "Shadow calls to candidates, by outcome.", ["model", "outcome"], registry=r
        )
        self.shadow_verdicts = Counter(
            "gateway_shadow_verdicts", "Side-by-side verdicts, candidate's side.", ["model", "verdict"], registry=r
        )
        self.shadow_cost = Counter(
            "gateway_shadow_cost_usd", "Spend of shadow calls (candidate, judge).", ["model", "side"], registry=r
        )
        self.promotion_events = Counter(
            "gateway_promotion_events", "Promotion steps, by event.", ["model", "event"], registry=r
        )

        # Batch jobs and spend budgets (gateway/batches/, gateway/spend.py).
        self.batch_items = Counter(
            "gateway_batch_items",
            "Batch items worked, by outcome (shed: yielded to interactive traffic, tried again).",
            ["outcome"],
            registry=r,
        )
        self.batch_running = Gauge(
            "gateway_batch_items_running", "Batch items in flight.", registry=r, multiprocess_mode="livesum"
        )
        self.batch_pending = Gauge(
            "gateway_batch_items_pending",
            "Items of active batches without a result.",
            registry=r,
            multiprocess_mode="max",
        )
        self.batch_concurrency = Gauge(
            "gateway_batch_concurrency",
            "Batch items this replica may run at once (the headroom it found).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.spend = Gauge(
            "gateway_spend_usd",
            "Spend in the current period, per budget.",
            ["scope", "name", "period"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.spend_budget = Gauge(
            "gateway_spend_budget_usd",
            "Spend budgets.",
            ["scope", "name", "period"],
            registry=r,
            multiprocess_mode="max",
        )
        for outcome in ("completed", "failed", "shed"):
            self.batch_items.labels(outcome)

        for name, value in list(vars(self).items()):
            if getattr(value, "_labelnames", None):
                setattr(self, name, _Memo(value))

    def prime(self, config, intents: list[str]) -> None:
        """Create at 0 every counter child an alert or panel reads, for every bounded label value."""
        models = list(config.models)
        intents = [*intents, "other"]
        for model in models:
            tiers = ("light", "heavy") if config.models[model].heavy else ("light",)
            for tier in ("light", "heavy"):
                self.route_decisions.labels(model, tier)
            if config.models[model].difficulty_threshold is not None:
                for outcome in ("changed", "kept", "pending", "busy"):
                    self.second_opinions.labels(model, outcome)
            for tier in tiers:
                self.ttft.labels(model, tier)
                for intent in intents:  # the answered series (rates of the others come from gateway_errors)
                    for cache in CACHE_RESULTS[:5]:
                        self.requests.labels(model, intent, tier, cache, "200")
            for intent in intents:
                for status_class in STATUS_CLASSES[1:]:
                    self.errors.labels(model, intent, status_class)
        for alias, route in config.models.items():
            if route.difficulty_threshold is not None and route.heavy:  # a cascade can be turned on there
                self.cascade.labels(alias, "kept", "none")
                self.cascade_added_seconds.labels(alias)
                self.cascade_light_cost.labels(alias)
            if route.canary is None:
                continue
            self.canary_rollbacks.labels(alias)
            for variant in VARIANTS:
                self.variant_duration.labels(alias, variant)
                for outcome in ("ok", "failed"):
                    self.canary_requests.labels(alias, variant, outcome)
        for intent in intents:
            self.cost_saved.labels(intent)
            for result in CACHE_RESULTS[:4]:
                self.cache_requests.labels(intent, result)
        for operation in ("lookup", "lookup_semantic", "store"):
            self.cache_errors.labels(operation)
        for scope in ("key", "upstream_budget"):
            self.rate_limited.labels(scope)
        for name in config.deployments:
            for error in UPSTREAM_ERRORS:
                self.upstream_errors.labels(name, error)
            self.circuit_open.labels(name).set(0)
            self.deployment_state.labels(name).set(0)

    def collectors(self) -> list:
        """Every metric object of the gateway (unwrapped)."""
        return [m for m in (getattr(v, "metric", v) for v in vars(self).values()) if isinstance(m, MetricWrapperBase)]

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _version() -> str:
    try:
        return metadata.version("gateway")
    except metadata.PackageNotFoundError:
        return "unknown"
