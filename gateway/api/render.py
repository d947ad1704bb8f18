"""Everything the client receives is written here: response headers, answers (JSON or SSE), answers
replayed from the cache, and OpenAI-shaped errors.

    await respond(ctx, send, produce)   runs `produce` (the entry point's work) and sends what it returns,
                                        or the error it raised; sets ctx.status to the status sent
    error_answer(exc)                   the status, JSON and headers a GatewayError is sent as
    error_response(exc)                 the same as a Starlette Response (FastAPI routes)

Every response carries `x-request-id` and `x-gateway-overhead-ms`, errors included.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, AsyncIterator, Awaitable, Callable, MutableMapping

import orjson
from starlette.responses import Response

from gateway.context import RequestContext
from gateway.errors import GatewayError, RateLimited, UpstreamStatus, rebuilt_upstream_error
from gateway.request import Answer, StreamAnswer
from gateway.sse import error_event

__all__ = [
    "ClientGone",
    "cached_answer",
    "error_answer",
    "error_json",
    "error_response",
    "headers",
    "respond",
    "send_answer",
    "send_stream",
    "stamp",
]

log = logging.getLogger("gateway")

Sent = Answer | StreamAnswer
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_JSON = (b"content-type", b"application/json")
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
# A cached answer cost no tokens; the detail objects keep OpenAI's shape (clients read cached_tokens).
_ZERO_USAGE = {
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "total_tokens": 0,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
STREAM_PIECES = 4  # a cached answer is replayed as a stream in this many content chunks


class ClientGone(Exception):
    """The client went away before its request was read: there is nobody to answer (recorded as 499)."""


# ------------------------------------------------------------------------------------------------ headers
def headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    """The gateway's response headers, computed when the response starts (the overhead is up to date)."""
    out = [
        (b"x-request-id", ctx.request_id.encode("latin-1")),
        (b"x-gateway-overhead-ms", b"%.2f" % (ctx.overhead() * 1000)),
    ]
    if ctx.kind != "chat" and ctx.kind != "embeddings":
        return out
    out.append((b"x-gateway-cache", ctx.cache_result.encode("latin-1")))
    if ctx.key is None:
        return out  # refused before anything was decided
    out.append((b"x-gateway-intent", ctx.intent.encode("latin-1")))
    out.append((b"x-gateway-tier", ctx.tier.encode("latin-1")))
    if ctx.served_by:
        out.append((b"x-gateway-served-by", ctx.served_by.encode("latin-1")))
    if ctx.difficulty is not None:
        out.append((b"x-gateway-difficulty", b"%.3f" % ctx.difficulty.score))
    if ctx.variant != "stable":
        out.append((b"x-gateway-variant", ctx.variant.encode("latin-1")))
    if ctx.saved_tokens:
        out.append((b"x-gateway-saved-tokens", b"%d" % ctx.saved_tokens))
    if ctx.upstream_headers:
        out.extend(ctx.upstream_headers)
    match = ctx.cache_match
    if ctx.cache_result == "hit-semantic" and match is not None and match.entry is not None:
        out.append((b"x-gateway-cache-match", f"{match.entry}; score={match.score:.3f}; lang={match.lang}".encode()))
    return out


def stamp(ctx: RequestContext, send: Send) -> Send:
    """`send`, adding the request id and overhead headers to a response someone else renders (FastAPI
    routes) and noting its status on the context."""

    async def stamped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            ctx.status, ctx.responded = message["status"], True
            message["headers"] = [*message.get("headers", ()), *headers(ctx)]
        await send(message)

    return stamped


# ------------------------------------------------------------------------------------------------ sending
async def respond(ctx: RequestContext, send, produce: Callable[[], Awaitable[Sent]]) -> None:
    """Run the entry point's work and send its answer, or its error, to the client."""
    try:
        result = await produce()
    except ClientGone:
        ctx.status = 499
        return
    except GatewayError as exc:
        await send_error(ctx, send, exc)
        return
    except Exception:
        log.exception("unexpected error on %s (request %s)", ctx.path, ctx.request_id)
        await send_error(ctx, send, GatewayError("the gateway hit an internal error; it has been logged"))
        return
    if isinstance(result, Answer):
        await send_answer(ctx, send, result)
    else:
        await send_stream(ctx, send, result)


async def send_answer(
    ctx: RequestContext, send, answer: Answer, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    raw = [_JSON, (b"content-length", b"%d" % len(answer.body)), *headers(ctx)]
    if extra:
        raw.extend(extra)
    if ctx.status == 200 or answer.status >= 400:
        ctx.status = answer.status
    ctx.responded = True
    await send({"type": "http.response.start", "status": answer.status, "headers": raw})
    await send({"type": "http.response.body", "body": answer.body})


async def send_stream(ctx: RequestContext, send, stream: StreamAnswer) -> None:
    """Relay a stream as it comes. A client that leaves is noticed by CancelOnDisconnect, which cancels this
    task; closing the chunk generator then closes the upstream call."""
    chunks = stream.chunks
    try:
        ctx.responded = True
        await send({"type": "http.response.start", "status": 200, "headers": [*_SSE, *headers(ctx)]})
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception:  # a bug after the first byte: the status is sent, end the stream and say so
            log.exception("unexpected error on %s mid-stream (request %s)", ctx.path, ctx.request_id)
            ctx.status, ctx.error = 500, "internal"
            await send(
                {
                    "type": "http.response.body",
                    "body": error_event(
                        "the gateway hit an internal error; the answer is incomplete", code="internal_error"
                    ),
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def send_error(ctx: RequestContext, send, exc: GatewayError) -> None:
    ctx.error = exc.metric_label
    status, body, extra = error_answer(exc)
    ctx.status = status
    raw = [_JSON, (b"content-length", b"%d" % len(body)), *headers(ctx)]
    raw.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    ctx.responded = True
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------------------ errors
def error_json(
    status_message: str, type_: str = "api_error", code: str | None = None, param: str | None = None
) -> bytes:
    return orjson.dumps({"error": {"message": status_message, "type": type_, "param": param, "code": code}})


def error_answer(exc: GatewayError) -> tuple[int, bytes, dict[str, str]]:
    """The status, body and headers the client receives for an error: the status recorded in the metrics
    and the access log is this one, not the upstream's."""
    if isinstance(exc, UpstreamStatus):
        return _upstream_status(exc)
    return exc.status, error_json(exc.message, exc.type, exc.code, exc.param), exc.headers


def _upstream_status(exc: UpstreamStatus) -> tuple[int, bytes, dict[str, str]]:
    if exc.status in (401, 403):  # the upstream refused the gateway's own key: not the caller's fault,
        # and its body may echo part of that key ("Incorrect API key provided: sk-...abcd")
        where = f" of deployment {exc.deployment!r}" if exc.deployment else ""
        message = f"the upstream{where} refused the gateway's credentials ({exc.status}); check its api_key_env"
        return 502, error_json(message, exc.type, "upstream_auth_failed"), {}
    if not exc.retryable:  # the caller's error: the upstream's reason, rebuilt, never its body verbatim
        return exc.status, rebuilt_upstream_error(exc.status, exc.upstream_body), {}
    if exc.status == 429:
        return error_answer(
            RateLimited("the upstream is rate limiting and no fallback could serve the request", retry_after_s=1.0)
        )
    if not exc.retryable:
        return exc.status, error_json(f"the upstream answered {exc.status}", exc.type, exc.code), {}
    message = f"the upstream failed ({exc.status}) and no fallback could serve the request"
    return 502, error_json(message, exc.type, exc.code), {}


def error_response(
    exc: GatewayError | None = None,
    *,
    status: int = 500,
    message: str = "",
    type_: str = "api_error",
    code: str | None = None,
) -> Response:
    """An error as a Starlette Response: `exc`, or any status with a message (the 404/405 handler)."""
    if exc is not None:
        status, body, extra = error_answer(exc)
        return Response(body, status_code=status, headers=extra, media_type="application/json")
    return Response(error_json(message, type_, code), status_code=status, media_type="application/json")


# -------------------------------------------------------------------------------------- cached answers
def cached_answer(ctx: RequestContext, cached: Any) -> Sent:
    """A fresh chat.completion (or SSE stream) from a stored answer (gateway.cache.service.Cached), usage 0."""
    answer_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    if ctx.stream:
        return StreamAnswer(_replay(cached, answer_id, created, ctx.include_usage))
    body = {
        "id": answer_id,
        "object": "chat.completion",
        "created": created,
        "model": cached.model,
        "choices": [{"index": 0, "message": cached.message, "logprobs": None, "finish_reason": "stop"}],
        "usage": _ZERO_USAGE,
        "system_fingerprint": cached.system_fingerprint,
        "service_tier": _service_tier(ctx),
    }
    return Answer(200, orjson.dumps(body))


def _service_tier(ctx: RequestContext) -> str:
    """The tier the client asked for, else "default": a cached answer was processed by none."""
    tier = ctx.body.get("service_tier")
    return tier if isinstance(tier, str) and tier != "auto" else "default"


async def _replay(cached: Any, answer_id: str, created: int, include_usage: bool) -> AsyncIterator[bytes]:
    """A stored answer as chat.completion.chunk events, in a few pieces, one write."""
    head: dict[str, Any] = {
        "id": answer_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": cached.model,
        "system_fingerprint": cached.system_fingerprint,
    }
    if include_usage:
        head["usage"] = None

    def event(delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

    content = cached.message.get("content") or ""
    size = max(1, -(-len(content) // STREAM_PIECES))
    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": content[i : i + size]}) for i in range(0, len(content), size)]
    events.append(event({}, "stop"))
    if include_usage:
        events.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": _ZERO_USAGE}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    yield b"".join(events)
