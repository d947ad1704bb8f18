"""The OpenAI-compatible HTTP surface: /v1/chat/completions, /v1/models, /v1/embeddings.

This layer only turns HTTP into a ChatRequest and the pipeline's Answer or StreamAnswer back into HTTP.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api import request_headers
from gateway.errors import BodyTooLarge, GatewayError, InvalidRequest
from gateway.request import PRIORITIES, Answer, ChatRequest, parse_chat_body, parse_embeddings_body
from gateway.verbatim import encode

router = APIRouter()
log = logging.getLogger("gateway")


async def receive_body(headers: dict[str, str], receive, limit: int) -> bytes | None:
    """The request body, or None when the client went away before sending it all."""
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the request body is over the limit of {limit} bytes")
        if not message.get("more_body", False):
            return b"".join(chunks) + chunk if chunks else chunk
        chunks.append(chunk)


async def chat_completions(scope, receive, send) -> None:
    """POST /v1/chat/completions, as a plain ASGI app: the hottest path builds no Request or Response."""
    state = scope["app"].state
    started = time.perf_counter()
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    try:
        raw = await receive_body(headers, receive, state.max_body_bytes)
        if raw is None:
            return  # nobody to answer
        body = parse_chat_body(raw, state.max_body_bytes)
        options = body.get("stream_options")
        req = ChatRequest(body=body, alias=body["model"], headers=headers, started=started,
                          stream=body.get("stream") is True,
                          include_usage=isinstance(options, dict) and options.get("include_usage") is True)
        priority = headers.get("x-gateway-priority")
        if priority:
            if priority not in PRIORITIES:
                raise InvalidRequest(f"x-gateway-priority must be one of {', '.join(PRIORITIES)}",
                                     param="x-gateway-priority")
            req.priority = priority
        result = await state.pipeline.handle(req)
    except GatewayError as exc:
        await exc.to_response()(scope, receive, send)
        return
    except Exception:
        log.exception("unexpected error on POST /v1/chat/completions")
        await GatewayError("the gateway hit an internal error; it has been logged").to_response()(scope, receive, send)
        return
    if isinstance(result, Answer):
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(result.body))]
        raw_headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in result.headers.items())
        await send({"type": "http.response.start", "status": result.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": result.body})
        return
    await _send_stream(result, send)


async def _send_stream(result, send) -> None:
    """Relay a stream as it comes. A client that leaves is noticed by CancelOnDisconnect, which cancels this
    task; closing the chunk generator then closes the upstream call and records the request."""
    raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
    raw_headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in result.headers.items())
    chunks = result.chunks
    try:
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await chunks.aclose()


class _ChatCompletionsRoute:
    """The route's endpoint, an ASGI app (GatewayApp calls `chat_completions` directly, past the router)."""

    async def __call__(self, scope, receive, send) -> None:
        await chat_completions(scope, receive, send)


router.add_route("/v1/chat/completions", _ChatCompletionsRoute(), methods=["POST"])


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    state = request.app.state
    try:
        await state.auth.check(request_headers(request))
    except GatewayError as exc:
        return exc.to_response()
    return Response(state.models_body, media_type="application/json")


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    """Passed through to the alias's deployments, in fallback order."""
    state = request.app.state
    try:
        headers = request_headers(request)
        raw = await receive_body(headers, request.receive, state.max_body_bytes)
        body = parse_embeddings_body(raw or b"")
        req = ChatRequest(body=body, alias=body["model"], headers=headers)
        req.key = await state.auth.check(headers)
        state.router.require_model(req)
        chain = state.config.chain(req.alias, "light")
        answer = await state.dispatcher.complete(
            req, chain, path="/embeddings",
            body_for=lambda deployment: encode(body, {"model": deployment.model}))
    except GatewayError as exc:
        return exc.to_response()
    return Response(answer.body, status_code=answer.status, media_type="application/json",
                    headers={"x-gateway-served-by": req.served_by or ""})
