"""A client that goes away cancels its request, and with it the upstream call it was waiting on.

uvicorn does not cancel a handler when its client disconnects: a non-streamed chat completion would keep
its upstream call (and the provider's tokens) running to the end for nobody. This pure ASGI middleware
watches the connection once the request body has been read; a disconnect before the response has started
cancels the handler (the dispatcher's cancellation closes the upstream connection). Once the response
has started, a stream notices the disconnect itself (Starlette's StreamingResponse) and closes upstream.

The watcher is the only reader of `receive` after the body: the app's own later `receive()` calls get
the message it saw, so there is never a second concurrent reader.
"""

from __future__ import annotations

import asyncio

__all__ = ["CancelOnDisconnect"]


class CancelOnDisconnect:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        watcher: asyncio.Task | None = None
        started = cancelled = False

        async def watch() -> dict:
            nonlocal cancelled
            message = await receive()
            if message["type"] == "http.disconnect" and not started:
                cancelled = True
                task.cancel()
            return message

        async def receive_wrapper() -> dict:
            nonlocal watcher
            if watcher is not None:
                return await asyncio.shield(watcher)
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                watcher = asyncio.get_running_loop().create_task(watch())
            return message

        async def send_wrapper(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except asyncio.CancelledError:
            if cancelled and task.uncancel() == 0:
                return  # our own cancel: the client is gone, there is nobody to answer
            raise
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
