"""One chat request, one straight line. Each step is a component built once in the app's lifespan:

    auth.check            key → ClientKey                            sets req.key
    limits.admit          per-key requests/tokens per minute         429 rate_limit_error when over
    cache.lookup_exact    hash of everything that changes the answer sets req.cache_key, req.cache_result
    embedder.embed        last user message, once, shared below     sets req.vector (None: model absent)
    intents.detect        bounded label, `x-intent` header wins      sets req.intent
    cache.lookup_semantic same intent and system prompt, guarded     sets req.cache_result
    router.decide         difficulty → tier → canary → chain         sets req.difficulty, req.tier, req.variant
    dispatcher            pooled upstream call, retries, fallbacks   sets req.served_by, req.upstream_seconds
    cache.store           only answers that may be reused
    recorder.record       latency, TTFT, tokens, cost per intent

The steps know nothing of HTTP: api/openai.py turns HTTP into a ChatRequest and an Answer or
StreamAnswer back into HTTP. A disabled feature stays in the line as a no-op.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import orjson

from gateway.errors import GatewayError, UpstreamError
from gateway.request import Answer, ChatRequest, StreamAnswer
from gateway.sse import StreamRelay, error_event


class Pipeline:
    def __init__(self, *, auth, limits, cache, embedder, intents, router, dispatcher, recorder,
                 cascade=None) -> None:
        self.auth = auth
        self.limits = limits
        self.cache = cache
        self.embedder = embedder
        self.intents = intents
        self.router = router
        self.dispatcher = dispatcher
        self.recorder = recorder
        self.cascade = cascade  # routing/cascade.py: light first for the uncertain band, None: off
        self._in_flight: dict[str, asyncio.Future] = {}  # identical cache misses wait on one upstream call

    async def handle(self, req: ChatRequest) -> Answer | StreamAnswer:
        try:
            return await self._handle(req)
        except GatewayError as exc:
            req.status = exc.client_status
            self.recorder.record(req)
            raise

    async def _handle(self, req: ChatRequest) -> Answer | StreamAnswer:
        req.key = await self.auth.check(req.headers)
        self.router.require_model(req)
        await self.limits.admit(req)

        cached = await self.cache.lookup_exact(req)
        if cached is None:
            text = req.last_user_text
            if text and self.embedder.available:
                req.vector = await self.embedder.embed(text)
            req.intent = self.intents.detect(text, req.vector, req.headers.get("x-intent"))
            cached = await self.cache.lookup_semantic(req)
        else:
            req.intent = cached.intent
        if cached is not None:
            self.recorder.record_cache_hit(req, cached)
            return self.cache.render(req, cached)

        chain = await self.router.decide(req)
        if req.stream:
            return await self._stream(req, chain)
        return await self._complete(req, chain)

    async def _complete(self, req: ChatRequest, chain) -> Answer:
        key = req.cache_key if req.cache_result == "miss" else None
        if key is not None and key in self._in_flight:
            try:
                answer = await asyncio.shield(self._in_flight[key])
            except _LeaderGone:
                pass  # the request we waited on was cancelled (its client left): make our own call
            else:
                req.served_by, req.usage = answer.headers.get("x-gateway-served-by"), None
                req.cache_result = "coalesced"
                self.recorder.record(req)
                return Answer(answer.status, answer.body, {**answer.headers, "x-request-id": req.request_id})
        future = None
        if key is not None:
            future = self._in_flight[key] = asyncio.get_running_loop().create_future()
        try:
            call = lambda chain: self._observed(self.dispatcher.complete(req, chain), req)  # noqa: E731
            upstream = await (self.cascade.complete(req, chain, call) if self.cascade else call(chain))
            try:
                parsed = orjson.loads(upstream.body)
            except orjson.JSONDecodeError:
                raise UpstreamError("the upstream answered with a body that is not JSON") from None
            req.usage = parsed.get("usage") if isinstance(parsed, dict) else None
            self.limits.settle(req)  # real token usage replaces the estimates (key limits, upstream budget)
            answer = Answer(upstream.status, upstream.body, self.response_headers(req))
            if future is not None:
                future.set_result(answer)
                await self.cache.store(req, parsed)
        except BaseException as exc:
            if future is not None and not future.done():
                future.set_exception(exc if isinstance(exc, Exception) else _LeaderGone())
                future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            if key is not None:
                self._in_flight.pop(key, None)
        self.recorder.record(req)
        return answer

    async def _stream(self, req: ChatRequest, chain) -> StreamAnswer:
        stream, first = await self._observed(self.dispatcher.open_stream(req, chain), req)
        relay = StreamRelay(hide_usage=not req.include_usage, started=req.started,
                            collect=req.cache_result == "miss")
        headers = self.response_headers(req)

        async def relay_chunks() -> AsyncIterator[bytes]:
            # Waits on the upstream and on the client are timed apart: the rest is the gateway's overhead.
            chunks, chunk = stream.chunks(), first
            try:
                while chunk is not None:
                    out = relay.feed(chunk)
                    if out:
                        mark = time.perf_counter()
                        yield out
                        req.client_seconds += time.perf_counter() - mark
                    mark = time.perf_counter()
                    chunk = await anext(chunks, None)
                    req.upstream_seconds += time.perf_counter() - mark
                tail = relay.flush()
                if tail:
                    yield tail
            except UpstreamError as exc:  # after the first byte there is no fallback: end the stream cleanly
                req.status = exc.status
                yield error_event(f"the upstream failed mid-stream ({exc.metric_label}); the answer is incomplete")
            finally:
                await stream.aclose()
                req.ttft, req.usage = relay.ttft, relay.usage
                self.limits.settle(req)
                if not relay.finished and req.status == 200:
                    req.status = 499  # the client went away
                if relay.content is not None:
                    await self.cache.store_stream(req, relay)
                self.recorder.record(req)

        return StreamAnswer(relay_chunks(), headers)

    async def _observed(self, call, req: ChatRequest):
        """The upstream call, its outcome told to the router (a failing canary is rolled back)."""
        try:
            result = await call
        except UpstreamError:
            await self.router.observe(req, failed=True)
            raise
        await self.router.observe(req)
        return result

    @staticmethod
    def response_headers(req: ChatRequest) -> dict[str, str]:
        headers = {"x-request-id": req.request_id, "x-gateway-intent": req.intent,
                   "x-gateway-cache": req.cache_result, "x-gateway-tier": req.tier,
                   "x-gateway-overhead-ms": f"{max(0.0, req.elapsed() - req.upstream_seconds) * 1000:.2f}"}
        if req.served_by:
            headers["x-gateway-served-by"] = req.served_by
        if req.difficulty is not None:
            headers["x-gateway-difficulty"] = f"{req.difficulty.score:.3f}"
        if req.variant != "stable":
            headers["x-gateway-variant"] = req.variant
        return headers


class _LeaderGone(Exception):
    """The request that identical misses were waiting on was cancelled before it got an answer."""


class NoLimits:
    async def admit(self, req: ChatRequest) -> None:
        return None

    def settle(self, req: ChatRequest) -> None:
        return None
