"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def _routing(state) -> str:
    """What the difficulty scorer reads: the sentence vector only when its weights have a part for this model."""
    scorer = state.router.scorer
    if scorer is None:
        return "off (no model has a difficulty threshold)"
    if not state.embedder.available:
        return "features only (no embedding model)"
    if state.embedder.kind not in scorer.embedders:
        return f"features only (no weights for the {state.embedder.kind} embedding)"
    return f"embedding+features ({state.embedder.kind})"


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready unless draining. Redis and the embedding model are reported: the gateway serves without them."""
    state = request.app.state
    checks = {
        "embedding_model": state.embedder.name,
        "routing": _routing(state),
        "redis": "not configured",
    }
    if state.redis is not None:
        try:
            await state.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # the gateway fails open without Redis; say so, stay ready
            checks["redis"] = f"unreachable ({exc}): cache and shared limits fail open"
    draining = state.draining or state.drain.draining  # from SIGTERM on, before the listener closes
    status = "draining" if draining else "ready"
    return Response(
        orjson.dumps({"status": status, "checks": checks}),
        status_code=503 if draining else 200,
        media_type="application/json",
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")
