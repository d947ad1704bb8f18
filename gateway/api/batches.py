"""The OpenAI Files and Batch APIs, served by the gateway itself (`client.files.create`,
`client.batches.create` of the official SDK work unchanged).

    POST   /v1/files                      multipart: file, purpose=batch
    GET    /v1/files[?purpose=]           the caller's files
    GET    /v1/files/{id}                 one file
    GET    /v1/files/{id}/content         its bytes (inputs, outputs, error files)
    DELETE /v1/files/{id}
    POST   /v1/batches                    {input_file_id, endpoint, completion_window, metadata}
    GET    /v1/batches[?after=&limit=]    the caller's batches, newest first
    GET    /v1/batches/{id}
    POST   /v1/batches/{id}/cancel

Files and batches belong to the client key that made them (by name); another key sees a 404.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api import render, request_headers
from gateway.batches.files import PURPOSES
from gateway.batches.jobs import BatchError, openai_batch, window_seconds
from gateway.errors import BodyTooLarge, GatewayError, InvalidRequest

router = APIRouter(prefix="/v1")


class NotFound(InvalidRequest):
    status = 404
    code = "not_found"
    metric_label = "not_found"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


async def _guarded(request: Request, action) -> Response:
    """`action(state, owner)`: owner is the caller's key name; `request.state.client_key` the key itself."""
    try:
        key = await request.app.state.auth.check(request_headers(request))
        request.state.client_key = key
        return await action(request.app.state, key.name)
    except GatewayError as exc:
        return render.error_response(exc)
    except BatchError as exc:
        return render.error_response(InvalidRequest(str(exc), param=exc.param))


async def _read_upload(upload, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await upload.read(1 << 20):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the file is over the limit of {limit} bytes (batches.max_file_bytes)", param="file")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/files")
async def upload_file(request: Request) -> Response:
    async def action(state, owner):
        limit = state.config.batches.max_file_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 65536:
            raise BodyTooLarge(f"the file is over the limit of {limit} bytes (batches.max_file_bytes)", param="file")
        try:
            form = await request.form(max_files=1, max_fields=8)
        except Exception:
            raise InvalidRequest("expected a multipart/form-data body with 'file' and 'purpose'") from None
        upload, purpose = form.get("file"), form.get("purpose")
        if upload is None or isinstance(upload, str):
            raise InvalidRequest("'file' is required", param="file")
        if purpose != "batch":
            raise InvalidRequest("purpose must be 'batch' (the gateway keeps files for the Batch API)", param="purpose")
        content = await _read_upload(upload, limit)
        info = await state.batches.files.put(content, upload.filename or "upload.jsonl", purpose, owner)
        return _json(info.openai())

    return await _guarded(request, action)


async def _file(state, owner: str, file_id: str):
    info = await state.batches.files.info(file_id)
    if info is None or info.owner != owner:
        raise NotFound(f"no file with id {file_id!r}", param="file_id")
    return info


@router.get("/files")
async def list_files(request: Request) -> Response:
    async def action(state, owner):
        purpose = request.query_params.get("purpose")
        if purpose is not None and purpose not in PURPOSES:
            raise InvalidRequest(f"purpose must be one of {', '.join(sorted(PURPOSES))}", param="purpose")
        files = await state.batches.files.list(owner, purpose)
        return _json({"object": "list", "data": [f.openai() for f in files], "has_more": False})

    return await _guarded(request, action)


@router.get("/files/{file_id}")
async def get_file(file_id: str, request: Request) -> Response:
    async def action(state, owner):
        return _json((await _file(state, owner, file_id)).openai())

    return await _guarded(request, action)


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, request: Request) -> Response:
    async def action(state, owner):
        await _file(state, owner, file_id)
        return Response(await state.batches.files.content(file_id) or b"", media_type="application/jsonl")

    return await _guarded(request, action)


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, request: Request) -> Response:
    async def action(state, owner):
        await _file(state, owner, file_id)
        await state.batches.files.delete(file_id)
        return _json({"id": file_id, "object": "file", "deleted": True})

    return await _guarded(request, action)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


@router.post("/batches")
async def create_batch(request: Request) -> Response:
    async def action(state, owner):
        body = await _body(request)
        settings = state.config.batches
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(name), str):
                raise InvalidRequest(f"'{name}' is required (a string)", param=name)
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or len(metadata) > 16
            or not all(isinstance(v, str) for v in metadata.values())
        ):
            raise InvalidRequest("metadata: at most 16 string values", param="metadata")
        window_s = window_seconds(body["completion_window"], tuple(settings.completion_windows))
        batch = await state.batches.create(
            request.state.client_key,
            body["input_file_id"],
            body["endpoint"],
            body["completion_window"],
            window_s,
            metadata,
            settings.max_items,
        )
        return _json(batch)

    return await _guarded(request, action)


async def _batch(state, owner: str, batch_id: str) -> dict[str, Any]:
    meta = await state.batches.get(batch_id)
    if meta is None or meta["owner"] != owner:
        raise NotFound(f"no batch with id {batch_id!r}", param="batch_id")
    return meta


@router.get("/batches")
async def list_batches(request: Request) -> Response:
    async def action(state, owner):
        limit = request.query_params.get("limit", "20")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            raise InvalidRequest("limit must be between 1 and 100", param="limit")
        found, more = await state.batches.list(owner, request.query_params.get("after"), int(limit))
        data = [openai_batch(meta) for meta in found]
        return _json(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": more,
            }
        )

    return await _guarded(request, action)


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: str, request: Request) -> Response:
    async def action(state, owner):
        return _json(openai_batch(await _batch(state, owner, batch_id)))

    return await _guarded(request, action)


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request) -> Response:
    async def action(state, owner):
        await _batch(state, owner, batch_id)
        return _json(openai_batch(await state.batches.cancel(batch_id)))

    return await _guarded(request, action)
