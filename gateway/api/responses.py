"""POST /v1/responses: OpenAI's Responses API, served by the chat pipeline.

The body is translated to a chat completions body (gateway/responses_translation.py), checked like any
chat body, and handed to `pipeline.chat`: auth, limits, intent, cache, routing, canary, fallbacks,
metrics and cost per intent are those of chat (a question asked both ways shares its cache entry). The
answer, fresh or cached, whole or streamed, is translated back. No server-side state: `store` is always
false in the answer, `previous_response_id` is refused (the module docstring of the translation says why).
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, cast

import orjson
from fastapi import APIRouter

from gateway.api import render
from gateway.api.openai import receive_body, scope_headers
from gateway.context import RequestContext
from gateway.errors import InvalidRequest
from gateway.request import PRIORITIES, Answer, StreamAnswer, json_object_body, parse_chat_body
from gateway.responses_translation import StreamTranslator, chat_body, response_from_chat

__all__ = ["ROUTES", "create_response", "router"]

# chat's names for a refused field -> the Responses API's
_PARAMS = {
    "max_completion_tokens": "max_output_tokens",
    "messages": "input",
    "response_format": "text.format",
    "reasoning_effort": "reasoning.effort",
    "stream_options": "stream",
}


def _request(raw: bytes) -> dict[str, Any]:
    request: dict[str, Any] = json_object_body(raw, orjson.loads)
    if request.get("stream") is not None and not isinstance(request.get("stream"), bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    return request


def _chat(request: dict[str, Any]) -> dict[str, Any]:
    """The chat body, with chat's checks; a refusal names the Responses API's field."""
    try:
        encoded = orjson.dumps(chat_body(request))
    except TypeError:  # nested deeper than orjson writes
        raise InvalidRequest("the request nests deeper than 254 levels") from None
    try:
        return parse_chat_body(encoded, len(encoded))  # the client's body was bounded by receive_body
    except InvalidRequest as exc:
        if exc.param:
            head, _, rest = exc.param.partition("[")
            exc.param = _PARAMS.get(head, head) + ("[" + rest if rest else "")
            exc.message = exc.message.replace("messages[", "input[")
        raise


async def _translated(chunks: AsyncIterator[bytes], translator: StreamTranslator) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            out = translator.feed(chunk)
            if out:
                yield out
        tail = translator.close()
        if tail:
            yield tail
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def create_response(scope, receive, send) -> None:
    """POST /v1/responses."""
    state = scope["app"].state
    ctx = RequestContext.start(scope_headers(scope), "chat", "/v1/responses", time.perf_counter())

    async def work():
        request = _request(await receive_body(ctx.headers, receive, state.max_body_bytes))
        body = _chat(request)
        ctx.body, ctx.alias, ctx.stream = body, body["model"], body.get("stream") is True
        ctx.include_usage = True  # response.completed carries the usage
        priority = ctx.headers.get("x-gateway-priority")
        if priority:
            if priority not in PRIORITIES:
                raise InvalidRequest(
                    f"x-gateway-priority must be one of {', '.join(PRIORITIES)}", param="x-gateway-priority"
                )
            ctx.priority = priority
        result = await state.pipeline.chat(ctx)
        if not isinstance(result, (Answer, StreamAnswer)):
            result = render.cached_answer(ctx, result)
        if isinstance(result, StreamAnswer):
            return StreamAnswer(_translated(result.chunks, StreamTranslator(request)))
        if result.status != 200:
            return result
        return Answer(200, orjson.dumps(response_from_chat(orjson.loads(result.body), request)))

    await state.pipeline.run(ctx, lambda: render.respond(ctx, send, work))


ROUTES = {("POST", "/v1/responses"): create_response}


class _Endpoint:
    """The route's endpoint as an ASGI app: FastAPI's router knows the path (405 on a wrong method)."""

    async def __call__(self, scope, receive, send) -> None:
        await create_response(scope, receive, send)


router = APIRouter()
router.add_route("/v1/responses", cast(Any, _Endpoint()), methods=["POST"])  # an ASGI app, as Starlette allows
