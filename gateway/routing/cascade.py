"""Cascade for the uncertain band: answer light first, escalate to heavy when the light answer shows it could
not cope.

A request of an alias with `cascade` configured whose difficulty falls just below the threshold
(`threshold - band <= score < threshold`) goes light as usual; its answer is then read before it is sent:
a truncated answer (finish_reason "length"), an empty one, a refusal (the `refusal` field or refusal wording),
"I'm not sure" wording, or a mean token log-probability under `min_logprob` (when the upstream returned
logprobs) sends the same request to the heavy chain, and the client gets the heavy answer. Non-streamed
requests only: a stream's first bytes are already the client's before the answer can be judged.

What it costs is counted: the outcome per alias and reason, the light attempt's time added to escalated
requests, and the light attempt's price (gateway_cascade_* metrics).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.context import RequestContext
    from gateway.metrics import Metrics
    from gateway.steps import Chain, Recorder

__all__ = ["Cascade", "CascadeConfig", "falls_short"]


class CascadeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    band: float = Field(0.2, gt=0, le=1)  # scores in [threshold - band, threshold) are answered light first
    min_logprob: float = Field(-1.0, le=0)  # mean token log-probability under which the light answer is unsure
    max_answer_chars: int = Field(4000, ge=100)  # only the head of an answer is searched for refusal wording


_REFUSAL = re.compile(
    r"\b(?:i(?:'m| am) (?:not able|unable) to (?:help|answer|assist)|i can(?:no|')t (?:help|answer|assist|provide)"
    r"|i(?:'m| am) sorry,? but i can(?:no|')t|i don't have (?:enough )?(?:information|the expertise)"
    r"|je ne (?:peux|suis) pas (?:en mesure de )?(?:vous )?(?:aider|répondre)|je ne peux pas répondre"
    r"|désolé,? (?:mais )?je ne peux pas)",
    re.I,
)
_UNSURE = re.compile(
    r"\b(?:i(?:'m| am) not (?:sure|certain)|i don't know|i do not know|i'm unsure|hard to say|not (?:entirely )?sure"
    r"|je ne suis pas (?:sûr|sure|certain|certaine)|je ne sais pas|difficile à dire)",
    re.I,
)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def falls_short(answer: Any, config: CascadeConfig) -> str | None:
    """Why a light chat completion (parsed JSON) could not cope, or None when it looks like an answer."""
    if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list) or not answer["choices"]:
        return "malformed"
    choice = answer["choices"][0]
    if not isinstance(choice, dict):
        return "malformed"
    if choice.get("finish_reason") == "length":
        return "truncated"
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    if message.get("refusal"):
        return "refusal"
    if message.get("tool_calls"):
        return None  # a tool call is an answer of its own kind
    text = _content_text(message.get("content"))[: config.max_answer_chars]
    if not text.strip():
        return "empty"
    if _REFUSAL.search(text):
        return "refusal"
    if _UNSURE.search(text):
        return "unsure"
    logprobs = choice.get("logprobs")
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    if isinstance(tokens, list) and tokens:
        values = [t["logprob"] for t in tokens if isinstance(t, dict) and isinstance(t.get("logprob"), (int, float))]
        if values and sum(values) / len(values) < config.min_logprob:
            return "low_logprobs"
    return None


Call = Callable[[Any], Awaitable[Any]]  # chain -> upstream answer (status, body)


class Cascade:
    """Built once in create_app; `complete` wraps the non-streamed upstream call of the pipeline."""

    def __init__(self, config: GatewayConfig, metrics: Metrics | None = None, recorder: Recorder | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.recorder = recorder
        # alias -> (its cascade settings, its difficulty threshold)
        self._settings: dict[str, tuple[CascadeConfig, float]] = {}
        for alias, route in config.models.items():
            cascade = getattr(route, "cascade", None)
            if cascade is not None and cascade.enabled and route.difficulty_threshold is not None and route.heavy:
                self._settings[alias] = (cascade, route.difficulty_threshold)

    def applies(self, req: RequestContext) -> CascadeConfig | None:
        """The alias's settings when this request sits in its uncertain band, else None."""
        found = self._settings.get(req.alias)
        if found is None or req.stream or req.tier != "light" or req.difficulty is None:
            return None
        settings, threshold = found
        return settings if threshold - settings.band <= req.difficulty.score < threshold else None

    async def complete(self, req: RequestContext, chain: Chain, call: Call) -> Any:
        """`call(chain)` as the pipeline would; in the band, judge the light answer and maybe call heavy."""
        settings = self.applies(req)
        if settings is None:
            return await call(chain)
        started = time.perf_counter()
        light = await call(chain)
        try:
            parsed = orjson.loads(light.body) if light.status == 200 else None
        except orjson.JSONDecodeError:
            parsed = None
        reason = falls_short(parsed, settings) if parsed is not None else None
        if reason is None:
            self._count(req.alias, "kept", "none")
            return light
        light_seconds = time.perf_counter() - started
        light_cost = 0.0
        if self.recorder is not None and req.served_by and isinstance(parsed, dict):
            light_cost = self.recorder.cost_of(parsed.get("usage"), req.served_by)
        req.tier = "heavy"
        heavy = await call(self.config.chain(req.alias, "heavy"))
        self._count(req.alias, "escalated", reason)
        if self.metrics is not None:
            self.metrics.cascade_added_seconds.labels(req.alias).observe(light_seconds)
            self.metrics.cascade_light_cost.labels(req.alias).inc(light_cost)
        return heavy

    def _count(self, alias: str, outcome: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.cascade.labels(alias, outcome, reason).inc()
