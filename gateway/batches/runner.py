"""A batch item through the interactive pipeline: the same checks of its body, the creating key's limits and
budgets (without its plaintext: the key's name, id and limits were kept when the batch was made), the cache,
routing, fallbacks, metrics and access log, at priority `batch`, never streamed."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.api import render
from gateway.auth import ClientKey
from gateway.batches.worker import RunItem
from gateway.context import RequestContext
from gateway.errors import GatewayError, InvalidRequest
from gateway.request import parse_chat_body


def _embeddings_body(body: dict[str, Any]) -> dict[str, Any]:
    """What /v1/embeddings checks of a body; the rest is forwarded as is."""
    if not isinstance(body.get("model"), str):
        raise InvalidRequest("'model' is required and must be a string", param="model")
    if not isinstance(body.get("input"), (str, list)):
        raise InvalidRequest("'input' must be a string or an array", param="input")
    return body


def make_run_item(pipeline, max_body_bytes: int) -> RunItem:
    async def run_item(meta: dict[str, Any], body: dict[str, Any]) -> tuple[int, Any, str]:
        embeddings = meta["endpoint"] == "/v1/embeddings"
        ctx = RequestContext.start(
            {"x-gateway-priority": "batch"}, "embeddings" if embeddings else "chat", meta["endpoint"]
        )
        ctx.key, ctx.priority = ClientKey(**meta["key"]), "batch"
        result: dict[str, Any] = {}

        async def call() -> None:
            try:
                plain = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
                ctx.body = (
                    _embeddings_body(plain) if embeddings else parse_chat_body(orjson.dumps(plain), max_body_bytes)
                )
                ctx.alias = ctx.body["model"]
                answer = await (pipeline.embeddings(ctx) if embeddings else pipeline.chat(ctx))
                if not hasattr(answer, "body"):  # a cached answer
                    answer = render.cached_answer(ctx, answer)
                ctx.status = answer.status
                result["answer"] = (answer.status, orjson.loads(answer.body))
            except GatewayError as exc:
                ctx.status, ctx.error = exc.status, exc.metric_label
                result["error"] = exc
            ctx.responded = True

        await pipeline.run(ctx, call)
        if "error" in result:
            raise result["error"]
        status, parsed = result["answer"]
        return status, parsed, ctx.request_id

    return run_item
