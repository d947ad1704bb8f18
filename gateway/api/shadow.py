"""Model registry, shadow traffic and promotions, behind the admin key.

    GET   /admin/models                      every deployment's registry entry
    GET   /admin/models/{deployment}         one entry
    PATCH /admin/models/{deployment}         {"set": {"version": "v4", ...}, "why": "..."}   audited
    GET   /admin/models-audit                the registry's audit trail (newest first)
    GET   /admin/shadow                      side-by-side summary of every alias with a shadow
    GET   /admin/shadow/{alias}[?pairs=N]    one alias's summary, and its last N pairs
    PUT   /admin/shadow/{alias}              {"percent": 10}   this replica's sampling rate
    GET   /admin/promotions/{alias}          the staged plan, its gates and history
    POST  /admin/promotions/{alias}          start `gateway canary promote`
    POST  /admin/promotions/{alias}/step     check the gates now (the background loop does it too)
    DELETE /admin/promotions/{alias}         stop and roll back

Who made a change is the `x-gateway-actor` header (default "admin"); `why` is kept with it.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api import render, request_headers
from gateway.errors import GatewayError, InvalidRequest, ModelNotFound
from gateway.shadow.promotion import PromotionError
from gateway.shadow.registry import RegistryError
from gateway.shadow.report import summarise

router = APIRouter(prefix="/admin")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _actor(request: Request) -> str:
    return request.headers.get("x-gateway-actor", "admin")[:64]


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


async def _guarded(request: Request, action) -> Response:
    try:
        request.app.state.auth.check_admin(request_headers(request))
        return await action(request.app.state)
    except GatewayError as exc:
        return render.error_response(exc)
    except (RegistryError, PromotionError) as exc:
        return render.error_response(InvalidRequest(str(exc)))


@router.get("/models")
async def list_models(request: Request) -> Response:
    async def action(state):
        return _json({"object": "list", "data": await state.registry.all()})

    return await _guarded(request, action)


@router.get("/models-audit")
async def registry_audit(request: Request) -> Response:
    async def action(state):
        return _json({"object": "list", "data": await state.registry.audit()})

    return await _guarded(request, action)


@router.get("/models/{name}")
async def show_model(name: str, request: Request) -> Response:
    async def action(state):
        if name not in state.registry.names:
            raise ModelNotFound(f"no deployment named {name!r}", param="name")
        return _json(await state.registry.get(name))

    return await _guarded(request, action)


@router.patch("/models/{name}")
async def update_model(name: str, request: Request) -> Response:
    async def action(state):
        if name not in state.registry.names:
            raise ModelNotFound(f"no deployment named {name!r}", param="name")
        body = await _body(request)
        changes, why = body.get("set"), body.get("why")
        if not isinstance(changes, dict) or not changes:
            raise InvalidRequest('expected {"set": {field: value, ...}, "why": "..."}', param="set")
        if not isinstance(why, str) or not why.strip():
            raise InvalidRequest('say why the entry changes: "why" is required', param="why")
        return _json(await state.registry.update(name, changes, who=_actor(request), why=why))

    return await _guarded(request, action)


def _known_shadow(state, alias: str) -> None:
    if alias not in state.shadow.aliases:
        raise ModelNotFound(f"the model {alias!r} has no shadow configured", param="alias")


async def _summary(state, alias: str) -> dict[str, Any]:
    ties_win = state.config.models[alias].promotion.promote_on_ties
    return {
        "alias": alias,
        "candidate": state.config.models[alias].shadow.deployment,
        "percent": state.shadow.percent(alias),
        "spent_usd_today": await state.shadow.store.spent(alias),
        **summarise(await state.shadow.store.pairs(alias), ties_win=ties_win),
    }


@router.get("/shadow")
async def shadow_all(request: Request) -> Response:
    async def action(state):
        return _json({"models": {alias: await _summary(state, alias) for alias in state.shadow.aliases}})

    return await _guarded(request, action)


@router.get("/shadow/{alias}")
async def shadow_one(alias: str, request: Request) -> Response:
    async def action(state):
        _known_shadow(state, alias)
        summary = await _summary(state, alias)
        wanted = request.query_params.get("pairs", "0")
        if not wanted.isdigit():
            raise InvalidRequest("pairs must be a whole number", param="pairs")
        summary["recent"] = (await state.shadow.store.pairs(alias))[: int(wanted)]
        return _json(summary)

    return await _guarded(request, action)


@router.put("/shadow/{alias}")
async def shadow_percent(alias: str, request: Request) -> Response:
    async def action(state):
        _known_shadow(state, alias)
        percent = (await _body(request)).get("percent")
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
            raise InvalidRequest("'percent' must be a number between 0 and 100", param="percent")
        state.shadow.set_percent(alias, float(percent))
        return _json({"alias": alias, "percent": float(percent)})

    return await _guarded(request, action)


def _known_alias(state, alias: str) -> None:
    if alias not in state.config.models:
        raise ModelNotFound(f"the model {alias!r} does not exist", param="alias")


@router.get("/promotions/{alias}")
async def promotion_status(alias: str, request: Request) -> Response:
    async def action(state):
        _known_alias(state, alias)
        plan = await state.promoter.status(alias)
        return _json(plan or {"alias": alias, "status": "none", "stages": state.promoter.plan_stages(alias)})

    return await _guarded(request, action)


@router.post("/promotions/{alias}")
async def promotion_start(alias: str, request: Request) -> Response:
    async def action(state):
        _known_alias(state, alias)
        why = (await _body(request)).get("why") or ""
        return _json(await state.promoter.start(alias, who=_actor(request), why=str(why)), 201)

    return await _guarded(request, action)


@router.post("/promotions/{alias}/step")
async def promotion_step(alias: str, request: Request) -> Response:
    async def action(state):
        _known_alias(state, alias)
        plan = await state.promoter.step(alias, who=_actor(request))
        return _json(plan or {"alias": alias, "status": "none"})

    return await _guarded(request, action)


@router.delete("/promotions/{alias}")
async def promotion_stop(alias: str, request: Request) -> Response:
    async def action(state):
        _known_alias(state, alias)
        why = request.query_params.get("why") or "stopped by an operator"
        return _json(await state.promoter.stop(alias, who=_actor(request), why=why))

    return await _guarded(request, action)
