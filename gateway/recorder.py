"""The metrics of one request, recorded once when it ends (Pipeline.finish): count by the status the client
received, latency, overhead, TTFT, tokens, cost, and what a cache hit saved."""

from __future__ import annotations

from gateway.config import GatewayConfig
from gateway.context import RequestContext
from gateway.metrics import Metrics
from gateway.pricing import Pricing


class Recorder:
    def __init__(self, config: GatewayConfig, metrics: Metrics, pricing: Pricing) -> None:
        self.metrics = metrics
        self.pricing = pricing
        self._price_keys = {name: d.pricing_key for name, d in config.deployments.items()}
        self._aliases = frozenset(config.models)
        self._with_canary = frozenset(alias for alias, route in config.models.items() if route.canary is not None)
        self.promoter = None  # shadow/promotion.py: counts stable and canary outcomes while a promotion runs

    def _model_label(self, req: RequestContext) -> str:
        return req.alias if req.alias in self._aliases else "unknown"

    def record(self, req: RequestContext) -> None:
        m = self.metrics
        model = self._model_label(req)
        elapsed = req.elapsed()
        m.requests.labels(model, req.intent, req.tier, req.cache_result, str(req.status)).inc()
        if req.status >= 400:
            m.errors.labels(model, req.intent, f"{req.status // 100}xx").inc()
        if not 400 <= req.status < 500:  # refused requests (auth, limits, bad input) would pull latency down
            m.request_duration.labels(model, req.intent, "true" if req.stream else "false", req.cache_result).observe(
                elapsed
            )
            if model in self._with_canary and req.tier == "light" and req.cache_result in ("miss", "bypass", "off"):
                m.variant_duration.labels(model, req.variant).observe(elapsed)
        m.overhead.labels(model, req.cache_result).observe(
            max(0.0, elapsed - req.upstream_seconds - req.client_seconds)
        )
        if self.promoter is not None and req.tier == "light" and req.cache_result in ("miss", "bypass", "off"):
            self.promoter.observe(model, req.variant, req.status, req.served_by, elapsed)  # what the gates compare
        if req.ttft is not None:
            m.ttft.labels(model, req.tier).observe(req.ttft)
        if req.saved_usd:
            m.cost_saved.labels(req.intent).inc(req.saved_usd)
        usage = req.usage
        if usage and req.served_by:
            prompt = int(usage.get("prompt_tokens") or 0)
            completion = int(usage.get("completion_tokens") or 0)
            m.tokens.labels(model, req.intent, "prompt").inc(prompt)
            m.tokens.labels(model, req.intent, "completion").inc(completion)
            req.cost = self.pricing.cost(self._price_keys[req.served_by], prompt, completion)
            m.cost.labels(model, req.intent, req.served_by).inc(req.cost)

    def cost_of(self, usage: dict | None, deployment: str | None) -> float:
        if not usage or deployment not in self._price_keys:
            return 0.0
        return self.pricing.cost(
            self._price_keys[deployment], int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        )
