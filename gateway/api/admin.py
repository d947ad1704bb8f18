"""The admin API, behind the admin key (auth.admin_key_sha256).

GET    /admin/cache/stats           per intent: entries, hits, misses, hit rate, saved tokens and cost
DELETE /admin/cache[?intent=NAME]   flush one intent's entries, or all of them
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api import render, request_headers
from gateway.cache.store import StoreUnavailable
from gateway.errors import GatewayError, InvalidRequest

router = APIRouter(prefix="/admin")


def _json(payload, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _unavailable(exc: Exception) -> Response:
    return _json(
        {
            "error": {
                "message": f"the cache store is unavailable: {exc}",
                "type": "api_error",
                "param": None,
                "code": "cache_unavailable",
            }
        },
        503,
    )


async def _admin(request: Request) -> None:
    request.app.state.auth.check_admin(request_headers(request))


@router.get("/cache/stats")
async def cache_stats(request: Request) -> Response:
    try:
        await _admin(request)
    except GatewayError as exc:
        return render.error_response(exc)
    cache = request.app.state.pipeline.cache
    if not hasattr(cache, "stats"):
        return _json({"enabled": False, "intents": {}})
    try:
        return _json({"enabled": True, **await cache.stats()})
    except StoreUnavailable as exc:
        return _unavailable(exc)


@router.delete("/cache")
async def cache_flush(request: Request) -> Response:
    try:
        await _admin(request)
        cache = request.app.state.pipeline.cache
        intent = request.query_params.get("intent") or None
        if not hasattr(cache, "flush"):
            return _json({"enabled": False, "flushed": 0, "intent": intent})
        if intent is not None and intent not in cache.labels:
            raise InvalidRequest(f"unknown intent {intent!r}", param="intent")
    except GatewayError as exc:
        return render.error_response(exc)
    try:
        return _json({"enabled": True, "flushed": await cache.flush(intent), "intent": intent})
    except StoreUnavailable as exc:
        return _unavailable(exc)
