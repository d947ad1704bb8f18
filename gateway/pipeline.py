"""One request, one straight line. Each step is a component built once in the app's lifespan (their types:
gateway/steps.py), and each reads and annotates the request's context (gateway/context.py):

    auth.check            key → ClientKey                            sets ctx.key
    limits.admit          per-key requests/tokens per minute         429 rate_limit_error; holds tokens
    cache.lookup_exact    hash of everything that changes the answer sets ctx.cache_key, ctx.cache_result
    embedder.embed        last user message, once, shared below     sets ctx.vector (None: model absent)
    intents.detect        bounded label, `x-intent` header wins      sets ctx.intent
    cache.lookup_semantic same intent and system prompt, guarded     sets ctx.cache_result
    router.decide         difficulty → tier → canary → chain         sets ctx.difficulty, ctx.tier, ctx.variant
    cascade               optional: the uncertain band answered light first, escalated to heavy if it falls short
    dispatcher            pooled upstream call, retries, fallbacks   sets ctx.served_by, ctx.upstream_seconds;
                                                                     holds upstream budget tokens
    cache.store           only answers that may be reused

Every entry point (chat, a stream, a cache hit, embeddings, an error raised before or inside the line, an
unexpected exception, a client gone) runs inside `run(ctx, call)`, whose one `finally` ends the request:
settles its holds to the real usage, records its metrics (recorder.record) and writes its access line.

The steps know nothing of HTTP: api/openai.py turns HTTP into a context and api/render.py turns what
`chat` or `embeddings` return (an Answer, a StreamAnswer or a cached answer) into HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

import orjson

from gateway.context import Background, RequestContext, settle_holds
from gateway.errors import UpstreamError
from gateway.logs import AccessLog, RequestLog
from gateway.request import Answer, StreamAnswer
from gateway.sse import StreamRelay, error_event
from gateway.steps import (
    Auth,
    Cache,
    Chain,
    Dispatcher,
    Embedder,
    Intents,
    Limits,
    NoLimits,
    Recorder,
    Router,
    Shadow,
    Spend,
)
from gateway.verbatim import encode

if TYPE_CHECKING:
    from gateway.routing.cascade import Cascade

__all__ = ["NoLimits", "Pipeline", "RECORDED_KINDS"]

log = logging.getLogger("gateway")

RECORDED_KINDS = frozenset({"chat", "embeddings"})  # the requests gateway_requests_total counts


class Pipeline:
    def __init__(
        self,
        *,
        auth: Auth,
        limits: Limits,
        cache: Cache,
        embedder: Embedder,
        intents: Intents,
        router: Router,
        dispatcher: Dispatcher,
        recorder: Recorder,
        cascade: Cascade | None = None,
        shadow: Shadow | None = None,
        access_log: AccessLog | None = None,
        request_log: RequestLog | None = None,
        spend: Spend | None = None,
        drain=None,
    ) -> None:
        self.auth = auth
        self.limits = limits
        self.cache = cache
        self.embedder = embedder
        self.intents = intents
        self.router = router
        self.dispatcher = dispatcher
        self.recorder = recorder
        self.cascade = cascade  # routing/cascade.py: light first for the uncertain band, None: off
        self.shadow = shadow  # shadow/mirror.py: a share of light answers is compared with a candidate's
        self.spend = spend  # spend budgets (gateway/spend.py): reserved before the upstream call, settled at the end
        self.access_log = access_log or AccessLog()
        self.request_log = request_log or RequestLog()
        self.background = Background()  # settling holds on Redis, after the answer left
        # identical cache misses wait on one upstream call: cache key → (answer, served_by)
        self._in_flight: dict[str, asyncio.Future[tuple[Answer, str | None]]] = {}
        self.drain = drain  # gateway/drain.py: streams cut by the end of a drain get an error event

    # ------------------------------------------------------------------------------------- the one end
    async def run(self, ctx: RequestContext, call: Callable[[], Awaitable[None]]) -> None:
        """`call` serves the request to its end, its answer or error sent (api/render.py sets ctx.status to
        what it sent). Whatever happens in it, the request ends here, once."""
        try:
            await call()
        except asyncio.CancelledError:  # the client went away (CancelOnDisconnect)
            if not ctx.responded or ctx.status == 200:
                ctx.status = 499
            raise
        except BaseException:
            if not ctx.responded:
                ctx.status, ctx.error = 500, "internal"
            raise
        finally:
            self.finish(ctx)

    def finish(self, ctx: RequestContext) -> None:
        try:
            if ctx.holds:
                self.background.spawn(settle_holds(ctx.holds, ctx.usage, ctx.served_by))
            if ctx.kind in RECORDED_KINDS:
                self.recorder.record(ctx)
            # the real cost (ctx.cost, set by the recorder) replaces the spend estimate
            if ctx.spend is not None and self.spend is not None:
                self.background.spawn(self.spend.settle(ctx.spend, ctx.cost))
            self.access_log.write(ctx)
            if self.request_log.enabled:
                self.request_log.write(ctx)
        except Exception:  # bookkeeping never takes the answer down with it
            log.exception("could not record request %s", ctx.request_id)

    # ------------------------------------------------------------------------------------------- chat
    async def chat(self, ctx: RequestContext) -> Answer | StreamAnswer | Any:
        """An Answer, a StreamAnswer, or a cached answer (gateway.cache.service.Cached) to render."""
        if ctx.key is None:  # batch items come with the key that created the batch
            ctx.key = await self.auth.check(ctx.headers)
        self.router.require_model(ctx)
        self.router.prefetch(ctx)  # the sticky check's Redis read overlaps the steps below
        if ctx.key.rpm is None and ctx.key.tpm is None:
            await self.limits.admit(ctx)
            cached = await self.cache.lookup_exact(ctx)
        else:  # both may wait on Redis: one round trip, not two (a refused request's lookup is dropped)
            admitted = asyncio.ensure_future(self.limits.admit(ctx))
            try:
                cached = await self.cache.lookup_exact(ctx)
            finally:
                await admitted
        if cached is None:
            text = ctx.last_user_text
            if text and self.embedder.available:
                ctx.vector = await self.embedder.embed(text)
            ctx.intent = self.intents.detect(text, ctx.vector, ctx.headers.get("x-intent"))
            cached = await self.cache.lookup_semantic(ctx)
        else:
            ctx.intent = cached.intent
        if cached is not None:
            ctx.saved_usd = self.recorder.cost_of(cached.usage, cached.served_by)
            if self.request_log.enabled:
                ctx.reply = cached.message.get("content")
            return cached

        chain = await self.router.decide(ctx)
        if self.spend is not None:
            ctx.spend = await self.spend.reserve(ctx.key, ctx.alias, ctx.body)
        if ctx.stream:
            return await self._stream(ctx, chain)
        return await self._complete(ctx, chain)

    async def _complete(self, ctx: RequestContext, chain: Chain) -> Answer:
        key = ctx.cache_key if ctx.cache_result == "miss" else None
        if key is not None and key in self._in_flight:
            try:
                answer, ctx.served_by = await asyncio.shield(self._in_flight[key])
            except _LeaderGone:
                pass  # the request we waited on was cancelled (its client left): make our own call
            else:
                ctx.cache_result = "coalesced"
                return answer
        future = None
        if key is not None:
            future = self._in_flight[key] = asyncio.get_running_loop().create_future()
        try:

            def call(chain: Chain) -> Awaitable[Any]:
                return self._observed(self.dispatcher.complete(ctx, chain), ctx)

            upstream = await (self.cascade.complete(ctx, chain, call) if self.cascade else call(chain))
            try:
                parsed = orjson.loads(upstream.body)
            except orjson.JSONDecodeError:
                raise UpstreamError("the upstream answered with a body that is not JSON") from None
            ctx.usage = parsed.get("usage") if isinstance(parsed, dict) else None
            if self.request_log.enabled:
                ctx.reply = _reply_text(parsed)
            answer = Answer(upstream.status, upstream.body)
            if self.shadow is not None:
                self.shadow.offer(
                    ctx.alias,
                    ctx.intent,
                    ctx.variant,
                    ctx.tier,
                    ctx.body,
                    {
                        "status": upstream.status,
                        "parsed": parsed,
                        "latency_s": ctx.upstream_seconds,
                        "usage": ctx.usage,
                        "served_by": ctx.served_by,
                    },
                )
            if future is not None:
                future.set_result((answer, ctx.served_by))
                await self.cache.store(ctx, parsed)
        except BaseException as exc:
            if future is not None and not future.done():
                future.set_exception(exc if isinstance(exc, Exception) else _LeaderGone())
                future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            if key is not None:
                self._in_flight.pop(key, None)
        return answer

    async def _stream(self, ctx: RequestContext, chain: Chain) -> StreamAnswer:
        stream, first = await self._observed(self.dispatcher.open_stream(ctx, chain), ctx)
        relay = StreamRelay(
            hide_usage=not ctx.include_usage,
            started=ctx.started,
            collect=ctx.cache_result == "miss" or self.request_log.enabled,
        )

        async def relay_chunks() -> AsyncIterator[bytes]:
            # Waits on the upstream and on the client are timed apart: the rest is the gateway's overhead.
            chunks, chunk = stream.chunks(), first
            try:
                while chunk is not None:
                    out = relay.feed(chunk)
                    if out:
                        mark = time.perf_counter()
                        yield out
                        ctx.client_seconds += time.perf_counter() - mark
                    mark = time.perf_counter()
                    chunk = await anext(chunks, None)
                    ctx.upstream_seconds += time.perf_counter() - mark
                tail = relay.flush()
                if tail:
                    yield tail
            except UpstreamError as exc:  # after the first byte there is no fallback: end the stream cleanly
                ctx.status, ctx.error = 502, exc.metric_label
                yield error_event(f"the upstream failed mid-stream ({exc.metric_label}); the answer is incomplete")
            except asyncio.CancelledError:
                if self.drain is None or not self.drain.draining:
                    raise  # the client went away
                ctx.status = 503  # the shutdown grace is over: end the stream with a reason, not a cut
                yield error_event(
                    "the gateway is shutting down; the answer is incomplete, retry it", code="gateway_shutting_down"
                )
            finally:
                await stream.aclose()
                ctx.ttft, ctx.usage = relay.ttft, relay.usage
                if not relay.finished and ctx.status == 200:
                    ctx.status = 499  # the client went away
                if self.request_log.enabled:
                    ctx.reply = relay.content
                if relay.content is not None and ctx.cache_result == "miss":
                    await self.cache.store_stream(ctx, relay)

        return StreamAnswer(relay_chunks())

    async def _observed(self, call: Awaitable[Any], ctx: RequestContext) -> Any:
        """The upstream call, its outcome told to the router (a failing canary is rolled back)."""
        try:
            result = await call
        except UpstreamError:
            await self.router.observe(ctx, failed=True)
            raise
        await self.router.observe(ctx)
        return result

    # ------------------------------------------------------------------------------------- embeddings
    async def embeddings(self, ctx: RequestContext) -> Answer:
        """Passed through to the alias's light deployments, in fallback order, under the key's limits."""
        if ctx.key is None:  # batch items come with the key that created the batch
            ctx.key = await self.auth.check(ctx.headers)
        self.router.require_model(ctx)
        await self.limits.admit(ctx)
        if self.spend is not None:
            ctx.spend = await self.spend.reserve(ctx.key, ctx.alias, ctx.body)
        body = ctx.body
        answer = await self.dispatcher.complete(
            ctx,
            self.router.chain(ctx.alias, "light"),
            path="/embeddings",
            body_for=lambda deployment: encode(body, {"model": deployment.model}),
        )
        try:
            parsed = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            raise UpstreamError("the upstream answered with a body that is not JSON") from None
        usage = parsed.get("usage") if isinstance(parsed, dict) else None
        ctx.usage = usage if isinstance(usage, dict) else None
        return Answer(answer.status, answer.body)


def _reply_text(parsed: Any) -> str | None:
    try:
        return parsed["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None


class _LeaderGone(Exception):
    """The request that identical misses were waiting on was cancelled before it got an answer."""
