"""Canary controls, behind the admin key: read and change an alias's canary percentage at run time.

GET /admin/canary                 {"version": 3, "models": {"support": {"percent": 5.0, "deployments": [...]}}}
PUT /admin/canary/support         {"percent": 25}   → takes effect on every replica within a second
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api import render, request_headers
from gateway.errors import GatewayError, InvalidRequest, ModelNotFound

router = APIRouter(prefix="/admin/canary")


def _view(state) -> bytes:
    models = {
        alias: {"percent": state.canary.get(alias), "deployments": state.config.models[alias].canary.deployments}
        for alias in state.canary.percent
    }
    return orjson.dumps({"version": state.canary.version, "models": models})


@router.get("")
async def get_canary(request: Request) -> Response:
    state = request.app.state
    try:
        state.auth.check_admin(request_headers(request))
        await state.canary.refresh(force=True)
    except GatewayError as exc:
        return render.error_response(exc)
    return Response(_view(state), media_type="application/json")


@router.put("/{alias}")
async def set_canary(alias: str, request: Request) -> Response:
    state = request.app.state
    try:
        state.auth.check_admin(request_headers(request))
        if alias not in state.canary.percent:
            raise ModelNotFound(f"the model '{alias}' has no canary configured", param="alias")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise InvalidRequest('expected a JSON body like {"percent": 25}') from None
        percent = body.get("percent") if isinstance(body, dict) else None
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
            raise InvalidRequest("'percent' must be a number between 0 and 100", param="percent")
        try:
            await state.canary.set(alias, float(percent))
        except Exception as exc:
            message = f"could not store the canary percentage ({type(exc).__name__}); nothing changed"
            raise GatewayError(message) from exc
    except GatewayError as exc:
        return render.error_response(exc)
    return Response(_view(state), media_type="application/json")
