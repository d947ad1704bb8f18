"""Draining on SIGTERM, in the order load balancers need:

    SIGTERM ──► /readyz answers 503 at once (draining) ──server.drain_delay_s──► the listener closes,
                in-flight requests and streams finish ──server.shutdown_grace_s──► what still runs is cancelled

uvicorn closes its listener as soon as it gets the signal, so a load balancer polling /readyz never sees a
503 before connections are refused. `Drain.install` puts its own SIGTERM handler in front of uvicorn's:
it marks the app draining, then hands the signal to uvicorn after the delay (a second SIGTERM at once).
Streams still running when the grace is over are cancelled by uvicorn; the pipeline ends them with an
error event instead of a cut (`Drain.draining` tells it why it was cancelled).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any, Callable

_Handler = Callable[[int, FrameType | None], Any]

log = logging.getLogger("gateway.drain")


class Drain:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.draining = False
        self._previous: _Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        """Only from the main thread (signals), and only in front of a handler (uvicorn's)."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return
        self._previous, self._loop = previous, asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, sig: int, frame: FrameType | None) -> None:
        previous, loop = self._previous, self._loop
        assert previous is not None and loop is not None, "installed by install(), which sets both"
        if self.draining or not self.delay_s:  # a second SIGTERM, or no delay: stop now
            self.draining = True
            previous(sig, frame)
            return
        self.draining = True
        log.warning("SIGTERM: draining; /readyz answers 503, the listener closes in %.1fs", self.delay_s)
        loop.call_soon_threadsafe(loop.call_later, self.delay_s, previous, sig, frame)
