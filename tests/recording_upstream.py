"""An OpenAI-shaped upstream that records the bytes it receives and answers what the test says.

    with RecordingUpstream() as up:          # up.url ends in /v1, like a base_url
        up.answer = lambda body: (500, {...}) # optional: status and JSON per request body
        ... up.bodies[-1]                     # raw bytes of the last request

The default answer is a one-choice chat completion (or an embedding list); a stream when asked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable

import orjson
from aiohttp import web


def completion(model: str, text: str = "ok") -> dict[str, Any]:
    return {
        "id": "chatcmpl-rec",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


class RecordingUpstream:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.answer: Callable[[Any], tuple[int, Any]] | None = None
        self.headers: dict[str, str] = {}  # extra response headers
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.bodies.append(raw)
        self.paths.append(request.path)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if self.answer is not None:
            status, payload = self.answer(body)
            if status != 200 or not isinstance(body, dict) or not body.get("stream"):
                return web.Response(
                    body=orjson.dumps(payload), status=status, content_type="application/json", headers=self.headers
                )
        model = body.get("model", "m") if isinstance(body, dict) else "m"
        if request.path.endswith("/embeddings"):
            data = {
                "object": "list",
                "model": model,
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
                "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 1.0]}],
            }
            return web.Response(body=orjson.dumps(data), content_type="application/json", headers=self.headers)
        if isinstance(body, dict) and body.get("stream"):
            response = web.StreamResponse(headers={"content-type": "text/event-stream", **self.headers})
            await response.prepare(request)
            head = {"id": "chatcmpl-rec", "object": "chat.completion.chunk", "created": 1, "model": model}
            for delta, finish in (
                ({"role": "assistant", "content": ""}, None),
                ({"content": "ok"}, None),
                ({}, "stop"),
            ):
                chunk = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
                await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            usage = {**head, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
            await response.write(b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n")
            await response.write_eof()
            return response
        return web.Response(body=orjson.dumps(completion(model)), content_type="application/json", headers=self.headers)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> "RecordingUpstream":
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
