"""The intent cache: the pipeline's `cache` step when `cache.enabled`.

    lookup_exact(req)     controls, cacheability, exact key       sets req.cache_key, req.cache_result
    lookup_semantic(req)  same intent + context, guarded match     sets req.cache_result (after the embedding)
    store(req, parsed)    a complete, reusable answer only
    store_stream(req, relay)

Policy (never cached): n > 1, tools or tool calls, temperature above cache.max_temperature, user messages
with personal data unless the intent has allow_personal_data, non-cacheable intents, intent "other"
semantically (exact only), upstream errors, finish_reason other than "stop", streams that did not finish.
Semantic lookup also needs a single-turn conversation (system prompt + one user message): in a longer one
the last message alone is not the question.

Controls: `x-gateway-cache: bypass` (no lookup, no store), `Cache-Control: no-cache` (no lookup, store
the fresh answer), `Cache-Control: no-store` (may be served from the cache, never stores this answer).
Response header `x-gateway-cache`: hit-exact | hit-semantic | miss | bypass (uncacheable requests are
"bypass" too) | off (disabled). Metrics: cache_requests{intent,result} with result one of those or
"error" (the store failed: served fresh), cache_errors{operation}.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import orjson

from gateway.bounds import LOOP_TEXT_LIMIT, TEXT_LIMIT, off_loop
from gateway.cache import keys
from gateway.cache.language import UNKNOWN, LanguageDetector
from gateway.cache.selfcheck import SelfCheck
from gateway.cache.semantic import language_part
from gateway.cache.store import MemoryStore, RedisStore, StoreUnavailable, VectorRow
from gateway.cache.verifier import Verifier
from gateway.request import ChatRequest

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.intents import IntentsConfig
    from gateway.metrics import Metrics

__all__ = ["Cached", "IntentCache", "SemanticMatch", "build_cache"]

log = logging.getLogger("gateway.cache")

OTHER = "other"
STATS_FLUSH_S = 1.0


@dataclass(frozen=True, slots=True)
class Cached:
    """A stored answer. `usage` and `served_by` are those of the upstream call that produced it."""

    intent: str
    model: str
    message: dict[str, Any]
    usage: dict[str, Any] | None
    served_by: str | None
    system_fingerprint: str | None = None
    kind: str = "exact"
    tier: str = "light"  # where the answer came from: a hit says so in its headers
    variant: str = "stable"

    @classmethod
    def decode(cls, blob: bytes, kind: str) -> "Cached":
        data = orjson.loads(blob)
        return cls(
            data["i"],
            data["m"],
            data["msg"],
            data.get("u"),
            data.get("s"),
            data.get("fp"),
            kind,
            data.get("ti", "light"),
            data.get("va", "stable"),
        )

    def encode(self, question: str) -> bytes:
        return orjson.dumps(
            {
                "i": self.intent,
                "m": self.model,
                "msg": self.message,
                "u": self.usage,
                "s": self.served_by,
                "fp": self.system_fingerprint,
                "q": question[:500],
                "t": int(time.time()),
                "ti": self.tier,
                "va": self.variant,
            }
        )


@dataclass(slots=True)
class SemanticMatch:
    """What a semantic lookup did: the question's language, and the entry it matched (key, question,
    score) when it found one. Also what the request's lookups and store share, worked out once: its side,
    semantic partition context and whether its user text holds personal data."""

    lang: str = ""  # "" until detected
    entry: str | None = None
    text: str | None = None
    score: float = 0.0
    side: str | None = None
    context: str | None = None
    personal: bool | None = None
    checking: str | None = None  # a hit sampled by cache/selfcheck.py: the answer it would have served
    near: str | None = None  # a miss sampled by cache/selfcheck.py: its nearest refused neighbour's entry


class IntentCache:
    def __init__(
        self,
        config,
        intents: "IntentsConfig | None",
        store,
        metrics: "Metrics",
        *,
        cost_of: Callable[[dict | None, str | None], float] | None = None,
        semantic: bool = True,
        language: LanguageDetector | None = None,
        side_of: Callable[[ChatRequest], str] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.config = config  # CacheConfig
        self.intents = intents
        self.backend = store
        self.metrics = metrics
        self.cost_of = cost_of or (lambda usage, deployment: 0.0)
        self.semantic = semantic and config.semantic
        self.language = language if language is not None else LanguageDetector.load()
        self._side_of = side_of  # the canary side of a user (router.canary_side), known before routing
        self.verifier = verifier if verifier is not None else Verifier.load()
        self.selfcheck = SelfCheck(getattr(config, "selfcheck_share", 0.0), metrics.registry)
        self._labels = frozenset([s.name for s in intents.intents] if intents else []) | {OTHER}
        self._pending: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._flushed_at = time.monotonic()
        self._flush_task: asyncio.Task | None = None

    # ----------------------------------------------------------------------------------------- policy
    def _spec(self, intent: str):
        return self.intents.get(intent) if self.intents is not None and intent != OTHER else None

    @property
    def labels(self) -> frozenset[str]:
        return self._labels

    def _label(self, intent: str) -> str:
        return intent if intent in self._labels else OTHER

    async def _personal_ok(self, req: ChatRequest, spec) -> bool:
        if spec is not None and spec.allow_personal_data:
            return True
        shared = self._shared(req)
        if shared.personal is None:
            texts = keys.user_texts(req)
            if sum(len(text) for text in texts) <= LOOP_TEXT_LIMIT:
                shared.personal = any(keys.has_personal_data(text) for text in texts)
            else:
                shared.personal = await off_loop(lambda: any(keys.has_personal_data(text) for text in texts))
        return not shared.personal

    def _semantic_ok(self, req: ChatRequest, spec) -> bool:
        """Questions outside the configured intents ("other") may match too: the verifier decides. A clipped
        question (bounds.clip) is not the whole question: exact cache only."""
        return (
            self.semantic
            and (spec is None or spec.cacheable)
            and req.vector is not None
            and keys.is_single_turn(req)
            and len(req.last_user_text) <= TEXT_LIMIT
        )

    @staticmethod
    def _shared(req: ChatRequest) -> SemanticMatch:
        if req.cache_match is None:
            req.cache_match = SemanticMatch()
        return req.cache_match

    def _side(self, req: ChatRequest) -> str:
        """Who may read what this request stores: its canary side, and its client key under scope "key"."""
        shared = self._shared(req)
        if shared.side is None:
            side = self._side_of(req) if self._side_of is not None else "stable"
            if self.config.scope == "key":
                side += "|key:" + (req.key.name if req.key is not None else "")
            shared.side = side
        return shared.side

    def _context(self, req: ChatRequest) -> str:
        shared = self._shared(req)
        if shared.context is None:
            shared.context = keys.context_key(req, self._side(req))
        return shared.context

    def _partition(self, req: ChatRequest) -> SemanticMatch:
        """The question's language (memoised): the semantic partition it reads and writes."""
        shared = self._shared(req)
        if not shared.lang:
            text = req.last_user_text
            shared.lang = self.language.detect_message(text, language_part(text))
        return shared

    # ---------------------------------------------------------------------------------------- lookups
    async def lookup_exact(self, req: ChatRequest) -> Cached | None:
        lookup, store = keys.controls(req.headers)
        if (not lookup and not store) or keys.uncacheable(req, self.config.max_temperature):
            req.cache_result = "bypass"
            return None
        try:
            req.cache_key = keys.exact_key(req, self._side(req))
        except TypeError:  # nested deeper than orjson writes (254 levels): forwarded, never cached
            req.cache_result = "bypass"
            return None
        req.cache_result = "miss"
        if not lookup:
            return None
        try:
            blob = await self.backend.get(req.cache_key)
        except StoreUnavailable as exc:
            self._error("lookup", exc)
            req.cache_error = True  # counted as "error" by lookup_semantic
            return None
        if blob is None:
            return None
        cached = Cached.decode(blob, "exact")
        return self._hit(req, cached, "hit-exact")

    async def lookup_semantic(self, req: ChatRequest) -> Cached | None:
        intent = self._label(req.intent)
        if req.cache_result != "miss":
            if req.cache_result == "bypass":
                self._count(intent, "bypass")
            return None
        if req.cache_error:
            self._count(intent, "error")
            return None
        spec = self._spec(intent)
        if (
            not keys.controls(req.headers)[0]
            or not self._semantic_ok(req, spec)
            or not await self._personal_ok(req, spec)
        ):
            self._count(intent, "miss")
            return None
        found = self._partition(req)
        if found.lang == UNKNOWN:  # language unknown: never risk another language's answer
            self._count(intent, "miss")
            return None
        partition, context = "lang-" + found.lang, self._context(req)
        try:
            candidates = await self.backend.candidates(partition, context)
            match = None
            if candidates is not None:
                text, vector = req.last_user_text, req.vector

                def match_one():
                    return self.verifier.best(text, vector, candidates)

                # the pair features cost ~1 ms per 100 characters: a long question is matched off the loop
                match = await off_loop(match_one) if len(text) > LOOP_TEXT_LIMIT else match_one()
            blob = None if match is None else await self.backend.get(match.payload)
        except StoreUnavailable as exc:
            self._error("lookup_semantic", exc)
            self._count(intent, "error")
            return None
        if blob is None or match is None:
            if match is not None and isinstance(self.backend, RedisStore):
                self.backend.forget(partition, context, match.payload)
            elif candidates is not None and self.selfcheck.sample():
                found.near = self._nearest(candidates, req.vector)
            self._count(intent, "miss")
            return None
        if self.selfcheck.refused(match.payload) or self.selfcheck.sample():  # answered fresh, as a miss
            if not self.selfcheck.refused(match.payload):
                found.entry, found.checking = match.payload, Cached.decode(blob, "semantic").message.get("content")
            self._count(intent, "miss")
            return None
        found.entry, found.text, found.score = match.payload, match.text, match.score
        cached = self._hit(req, Cached.decode(blob, "semantic"), "hit-semantic")
        self.metrics.cache_semantic_hits.labels(self._label(cached.intent), found.lang).inc()
        return cached

    def _nearest(self, candidates, vector) -> str | None:
        """The entry of the stored question nearest to `vector`, if at or above the verifier's floor."""
        if len(candidates) == 0:
            return None
        scores = candidates.vectors @ np.asarray(vector, dtype=np.float32)
        best = int(scores.argmax())
        return candidates.payloads[best] if scores[best] >= self.verifier.floor else None

    async def _delete(self, entry: str, partition: str, context: str | None) -> None:
        """A disagreeing entry leaves the shared store: no replica serves it again."""
        try:
            await self.backend.delete(entry, partition, context)
        except StoreUnavailable as exc:
            self._error("delete", exc)

    async def _compare_near(self, entry: str, fresh: str) -> None:
        blob = await self.backend.get(entry)
        if blob is not None:
            content = Cached.decode(blob, "semantic").message.get("content")
            if isinstance(content, str):
                self.selfcheck.compare_near(content, fresh)

    def _hit(self, req: ChatRequest, cached: Cached, result: str) -> Cached:
        req.cache_result = result
        req.tier, req.variant, req.served_by = cached.tier, cached.variant, cached.served_by
        usage = cached.usage or {}
        req.saved_tokens = int(usage.get("total_tokens") or 0)
        intent = self._label(cached.intent)
        self._count(
            intent, result, saved_tokens=req.saved_tokens, saved_usd=self.cost_of(cached.usage, cached.served_by)
        )
        if cached.intent != intent:
            cached = Cached(
                intent,
                cached.model,
                cached.message,
                cached.usage,
                cached.served_by,
                cached.system_fingerprint,
                cached.kind,
                cached.tier,
                cached.variant,
            )
        return cached

    # ----------------------------------------------------------------------------------------- stores
    async def store(self, req: ChatRequest, parsed: Any) -> None:
        try:
            if not isinstance(parsed, dict) or parsed.get("error") is not None:
                return
            choices = parsed.get("choices")
            if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
                return
            choice = choices[0]
            message = choice.get("message")
            if (
                choice.get("finish_reason") != "stop"
                or not isinstance(message, dict)
                or not isinstance(message.get("content"), str)
                or message.get("tool_calls")
                or message.get("function_call")
            ):
                return
            await self._store(
                req,
                str(parsed.get("model") or req.alias),
                message,
                parsed.get("usage"),
                parsed.get("system_fingerprint"),
            )
        except Exception:  # never fail a request for the cache
            log.exception("cache store failed")

    async def store_stream(self, req: ChatRequest, relay) -> None:
        try:
            content = relay.content
            if content is None or relay.finish_reason != "stop":
                return
            first = relay.first_chunk or {}
            await self._store(
                req,
                str(first.get("model") or req.alias),
                {"role": "assistant", "content": content},
                relay.usage,
                first.get("system_fingerprint"),
            )
        except Exception:
            log.exception("cache store failed")

    async def _store(self, req: ChatRequest, model: str, message: dict, usage: Any, fingerprint: Any) -> None:
        match = req.cache_match
        if match is not None and match.checking is not None and isinstance(message.get("content"), str):
            if not self.selfcheck.compare(match.entry, match.checking, message["content"]):
                self.selfcheck.later(self._delete(match.entry, "lang-" + match.lang, match.context))
        if match is not None and match.near is not None and isinstance(message.get("content"), str):
            self.selfcheck.later(self._compare_near(match.near, message["content"]))
        if (
            req.cache_result != "miss"
            or req.cache_key is None
            or req.status != 200
            or not keys.controls(req.headers)[1]
        ):
            return
        intent = self._label(req.intent)
        spec = self._spec(intent)
        if (intent != OTHER and (spec is None or not spec.cacheable)) or not await self._personal_ok(req, spec):
            return
        ttl = spec.ttl_s if spec is not None else self.config.default_ttl_s
        row = None
        if self._semantic_ok(req, spec) and req.vector is not None and (lang := self._partition(req).lang) != UNKNOWN:
            row = VectorRow("lang-" + lang, self._context(req), req.last_user_text, req.vector)
        cached = Cached(
            intent,
            model,
            {k: v for k, v in message.items() if k != "audio"},
            usage if isinstance(usage, dict) else None,
            req.served_by,
            fingerprint if isinstance(fingerprint, str) else None,
            "exact",
            req.tier,
            req.variant,
        )
        # off the response path (a bounded background write); this replica sees the entry at once
        await self.backend.put_later(
            req.cache_key,
            cached.encode(req.last_user_text),
            intent,
            ttl,
            row,
            on_error=lambda exc: self._error("store", exc),
        )

    # ---------------------------------------------------------------------------------- stats & admin
    def _count(self, intent: str, result: str, saved_tokens: int = 0, saved_usd: float = 0.0) -> None:
        self.metrics.cache_requests.labels(intent, result).inc()
        field = {"hit-exact": "hits_exact", "hit-semantic": "hits_semantic", "miss": "misses"}.get(result)
        if field is None:
            return
        pending = self._pending[intent]
        pending[field] += 1
        if saved_tokens:
            pending["saved_tokens"] += saved_tokens
        if saved_usd:
            pending["saved_usd"] += saved_usd
        if time.monotonic() - self._flushed_at >= STATS_FLUSH_S and (
            self._flush_task is None or self._flush_task.done()
        ):
            self._flush_task = asyncio.get_running_loop().create_task(self.flush_stats())

    def _error(self, operation: str, exc: Exception) -> None:
        self.metrics.cache_errors.labels(operation).inc()
        log.debug("cache %s failed, served without the cache: %s", operation, exc)

    async def flush_stats(self) -> None:
        self._flushed_at = time.monotonic()
        pending, self._pending = self._pending, defaultdict(lambda: defaultdict(float))
        if not pending:
            return
        try:
            await self.backend.count({intent: dict(fields) for intent, fields in pending.items()})
        except StoreUnavailable as exc:  # counters are best effort: keep them for the next try
            self._error("stats", exc)
            for intent, fields in pending.items():
                for name, value in fields.items():
                    self._pending[intent][name] += value

    async def stats(self) -> dict[str, Any]:
        """Per intent: entries, vectors, hits (exact, semantic), misses, hit rate, saved tokens and cost."""
        await self.flush_stats()
        names = sorted(self._labels - {OTHER}) + [OTHER]
        raw = await self.backend.stats(names)
        return {"store": type(self.backend).__name__, "intents": {name: _summary(row) for name, row in raw.items()}}

    async def flush(self, intent: str | None = None) -> int:
        return await self.backend.flush(intent)

    async def close(self) -> None:
        if self._flush_task is not None and not self._flush_task.done():
            await asyncio.gather(self._flush_task, return_exceptions=True)
        await self.selfcheck.drain()
        await self.flush_stats()
        await self.backend.close()


def _summary(row: dict[str, float]) -> dict[str, Any]:
    hits = int(row.get("hits_exact", 0)) + int(row.get("hits_semantic", 0))
    misses = int(row.get("misses", 0))
    return {
        "entries": int(row.get("entries", 0)),
        "vectors": int(row.get("vectors", 0)),
        "hits": hits,
        "hits_exact": int(row.get("hits_exact", 0)),
        "hits_semantic": int(row.get("hits_semantic", 0)),
        "misses": misses,
        "hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
        "stores": int(row.get("stores", 0)),
        "saved_tokens": int(row.get("saved_tokens", 0)),
        "saved_usd": round(float(row.get("saved_usd", 0.0)), 6),
    }


def build_cache(
    config: "GatewayConfig",
    intents: "IntentsConfig | None",
    redis,
    metrics: "Metrics",
    *,
    cost_of=None,
    semantic: bool = True,
    side_of=None,
    embedding: str | None = None,
) -> IntentCache:
    """RedisStore when a Redis client is given (redis.url set), MemoryStore otherwise. `embedding`: the
    embedding the gateway serves (its verifier was trained on that embedding's cosines; default:
    config.embedding.model)."""
    from gateway.cache.verifier import model_path

    cache = config.cache
    store: RedisStore | MemoryStore
    if redis is not None:
        store = RedisStore(
            redis, config.redis.prefix, cache.max_entries_per_intent, lookup_timeout_s=cache.redis_timeout_ms / 1000
        )
    else:
        store = MemoryStore(cache.max_entries_per_intent)
    verifier = Verifier.load(model_path(embedding or config.embedding.model))
    if semantic and cache.semantic:
        from gateway.cache.manners import shipped

        shipped()  # the politeness examples are embedded now, not on the first request that needs them
    return IntentCache(
        cache, intents, store, metrics, cost_of=cost_of, semantic=semantic, side_of=side_of, verifier=verifier
    )
