"""The OpenAI-compatible HTTP surface: /v1/chat/completions, /v1/embeddings, /v1/models (and /{model}).

Each is a plain ASGI app (the hottest path builds no Request or Response) that makes the request's
context and hands the pipeline its work, whose answer or error api/render.py sends:

    ctx = RequestContext.start(headers, kind, path)
    await pipeline.run(ctx, lambda: render.respond(ctx, send, work))

GatewayApp (app.py) calls the handlers of `ROUTES` directly, past FastAPI's routing.
"""

from __future__ import annotations

import time
from typing import Any, cast

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api import render, request_headers
from gateway.api.render import ClientGone
from gateway.bounds import LOOP_BODY_LIMIT, off_loop
from gateway.context import RequestContext
from gateway.errors import BodyTooLarge, GatewayError, InvalidRequest, ModelNotFound
from gateway.request import PRIORITIES, Answer, parse_chat_body, parse_embeddings_body

__all__ = [
    "ROUTES",
    "chat_completions",
    "router",
    "embeddings",
    "list_models",
    "receive_body",
    "retrieve_model",
    "scope_headers",
]


def scope_headers(scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def receive_body(headers: dict[str, str], receive, limit: int) -> bytes:
    """The request body; ClientGone when the client went away before sending it all."""
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the request body is over the limit of {limit} bytes")
        if not message.get("more_body", False):
            return b"".join(chunks) + chunk if chunks else chunk
        chunks.append(chunk)


async def chat_completions(scope, receive, send) -> None:
    """POST /v1/chat/completions."""
    state = scope["app"].state
    ctx = RequestContext.start(scope_headers(scope), "chat", "/v1/chat/completions", time.perf_counter())

    async def work():
        raw = await receive_body(ctx.headers, receive, state.max_body_bytes)
        if len(raw) > LOOP_BODY_LIMIT:  # parsing 1 MiB takes a few ms: off the event loop
            body = await off_loop(parse_chat_body, raw, state.max_body_bytes)
        else:
            body = parse_chat_body(raw, state.max_body_bytes)
        options = body.get("stream_options")
        ctx.body, ctx.alias, ctx.stream = body, body["model"], body.get("stream") is True
        ctx.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        priority = ctx.headers.get("x-gateway-priority")
        if priority:
            if priority not in PRIORITIES:
                raise InvalidRequest(
                    f"x-gateway-priority must be one of {', '.join(PRIORITIES)}", param="x-gateway-priority"
                )
            ctx.priority = priority
        result = await state.pipeline.chat(ctx)
        if not isinstance(result, (Answer, render.StreamAnswer)):
            return render.cached_answer(ctx, result)
        return result

    await state.pipeline.run(ctx, lambda: render.respond(ctx, send, work))


async def embeddings(scope, receive, send) -> None:
    """POST /v1/embeddings: passed through to the alias's deployments, in fallback order."""
    state = scope["app"].state
    ctx = RequestContext.start(scope_headers(scope), "embeddings", "/v1/embeddings", time.perf_counter())
    ctx.intent = "embeddings"  # the metrics' intent label: a bounded value of its own

    async def work():
        body = parse_embeddings_body(await receive_body(ctx.headers, receive, state.max_body_bytes))
        ctx.body, ctx.alias = body, body["model"]
        return await state.pipeline.embeddings(ctx)

    await state.pipeline.run(ctx, lambda: render.respond(ctx, send, work))


async def list_models(scope, receive, send) -> None:
    """GET /v1/models: the configured aliases, for any valid key."""
    state = scope["app"].state
    ctx = RequestContext.start(scope_headers(scope), "models", "/v1/models", time.perf_counter())

    async def work():
        ctx.key = await state.auth.check(ctx.headers)
        return Answer(200, state.models_body)

    await state.pipeline.run(ctx, lambda: render.respond(ctx, send, work))


ROUTES = {
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/embeddings"): embeddings,
    ("GET", "/v1/models"): list_models,
}


class _Endpoint:
    """A route's endpoint as an ASGI app: FastAPI's router still knows the paths (405 on a wrong method)."""

    def __init__(self, handler) -> None:
        self.handler = handler

    async def __call__(self, scope, receive, send) -> None:
        await self.handler(scope, receive, send)


router = APIRouter()
for (_method, _path), _handler in ROUTES.items():
    router.add_route(_path, cast(Any, _Endpoint(_handler)), methods=[_method])  # an ASGI app, as Starlette allows


@router.get("/v1/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> Response:
    """GET /v1/models/{model}: one configured alias, for any valid key; 404 model_not_found otherwise."""
    state = request.app.state
    try:
        await state.auth.check(request_headers(request))
        if model not in state.config.models:
            raise ModelNotFound(f"the model '{model}' does not exist; GET /v1/models lists the models", param="model")
    except GatewayError as exc:
        return render.error_response(exc)
    return Response(
        orjson.dumps({"id": model, "object": "model", "created": 0, "owned_by": "gateway"}),
        media_type="application/json",
    )
