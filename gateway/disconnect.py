"""A client that goes away cancels its request, and with it the upstream call it was waiting on.

uvicorn does not cancel a handler when its client disconnects: a chat completion would keep its upstream
call (and the provider's tokens) running to the end for nobody, and its `send` keeps returning quietly.
This pure ASGI middleware watches the connection once the request body has been read; a disconnect
cancels the handler, whether it was waiting on the upstream or relaying a stream (the dispatcher's and the
relay's cancellation close the upstream connection).

Watching costs a task per request, about 8% of the gateway's CPU under load when every request has one.
So the watch starts only for requests still running after `WATCH_AFTER_S`: the ones worth cancelling.

The watcher is the only reader of `receive` after the body: the app's own later `receive()` calls get
the message it saw, so there is never a second concurrent reader.
"""

from __future__ import annotations

import asyncio

__all__ = ["CancelOnDisconnect"]

WATCH_AFTER_S = 0.05


class CancelOnDisconnect:
    def __init__(self, app, watch_after_s: float = WATCH_AFTER_S) -> None:
        self.app = app
        self.watch_after_s = watch_after_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None  # an ASGI app runs in a task
        watcher: asyncio.Task | None = None
        body_read = due = cancelled = False

        async def watch() -> dict:
            nonlocal cancelled
            message = await receive()
            if message["type"] == "http.disconnect":
                cancelled = True
                task.cancel()
            return message

        def maybe_watch() -> None:
            nonlocal watcher, due
            due = True
            if body_read and watcher is None:
                watcher = loop.create_task(watch())

        async def receive_wrapper() -> dict:
            nonlocal body_read
            if watcher is not None:
                return await asyncio.shield(watcher)
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True
                if due:
                    maybe_watch()
            return message

        timer = loop.call_later(self.watch_after_s, maybe_watch)
        try:
            await self.app(scope, receive_wrapper, send)
        except asyncio.CancelledError:
            if cancelled and task.uncancel() == 0:
                return  # our own cancel: the client is gone, there is nobody to answer
            raise
        finally:
            timer.cancel()
            if watcher is not None and not watcher.done():
                watcher.cancel()
