"""Every Prometheus metric of the gateway, in one place, on an explicit registry.

Labels are bounded: intent from the configured set, model (public alias) and deployment from config,
tier, cache result, status class. Never user text.

With several uvicorn workers set PROMETHEUS_MULTIPROC_DIR: prometheus-client's multiprocess mode then
aggregates every worker's samples at /metrics.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess
from prometheus_client.metrics import MetricWrapperBase

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
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
        self.requests = Counter("gateway_requests", "Chat requests answered, by outcome.",
                                ["model", "intent", "tier", "cache", "status"], registry=r)
        self.request_duration = Histogram("gateway_request_duration_seconds",
                                          "Time from request to last byte.", ["model", "intent", "stream"],
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_duration = Histogram("gateway_upstream_duration_seconds",
                                           "Time waiting on the upstream, per deployment.",
                                           ["deployment"], buckets=LATENCY_BUCKETS, registry=r)
        self.overhead = Histogram("gateway_overhead_seconds",
                                  "Time spent in the gateway itself (request time minus upstream wait).",
                                  ["cache"], buckets=OVERHEAD_BUCKETS, registry=r)
        self.ttft = Histogram("gateway_time_to_first_token_seconds", "Time to the first content token of a stream.",
                              ["model", "tier"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("gateway_tokens", "Tokens, by kind (prompt, completion).",
                              ["model", "intent", "kind"], registry=r)
        self.cost = Counter("gateway_cost_usd", "Upstream cost in USD, from the pricing table.",
                            ["model", "intent", "deployment"], registry=r)
        self.cost_saved = Counter("gateway_cost_saved_usd", "Cost of answers served from the cache.",
                                  ["intent"], registry=r)
        self.cache_requests = Counter("gateway_cache_requests", "Cache lookups, by result.",
                                      ["intent", "result"], registry=r)
        self.cache_errors = Counter("gateway_cache_errors", "Cache store failures (served anyway).",
                                    ["operation"], registry=r)
        self.retries = Counter("gateway_retries", "Upstream retries, by reason.", ["deployment", "reason"],
                               registry=r)
        self.fallbacks = Counter("gateway_fallbacks", "Requests moved to the next deployment.",
                                 ["from_deployment", "to_deployment"], registry=r)
        self.rate_limited = Counter("gateway_rate_limited", "Requests refused or shed by a limit.", ["scope"],
                                    registry=r)
        self.upstream_errors = Counter("gateway_upstream_errors", "Failed upstream attempts.",
                                       ["deployment", "error"], registry=r)
        self.route_decisions = Counter("gateway_route_decisions", "Routing decisions, by tier.",
                                       ["model", "tier"], registry=r)
        self.difficulty = Histogram("gateway_difficulty_score", "Difficulty scores.", ["model"],
                                    buckets=SCORE_BUCKETS, registry=r)
        self.circuit_open = Gauge("gateway_circuit_open", "1 while a deployment's breaker is open.",
                                  ["deployment"], registry=r, multiprocess_mode="max")
        self.canary_percent = Gauge("gateway_canary_percent", "Share of light traffic sent to the canary.",
                                    ["model"], registry=r, multiprocess_mode="mostrecent")
        self.canary_requests = Counter("gateway_canary_requests", "Requests by variant and outcome.",
                                       ["model", "variant", "outcome"], registry=r)
        self.canary_rollbacks = Counter("gateway_canary_rollbacks", "Automatic canary rollbacks.", ["model"],
                                        registry=r)
        self.in_flight = Gauge("gateway_in_flight_requests", "Requests being served.", registry=r,
                               multiprocess_mode="livesum")

        for name, value in list(vars(self).items()):
            if getattr(value, "_labelnames", None):
                setattr(self, name, _Memo(value))

    def collectors(self) -> list:
        """Every metric object of the gateway (unwrapped)."""
        return [m for m in (getattr(v, "metric", v) for v in vars(self).values()) if isinstance(m, MetricWrapperBase)]

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
