"""How late the event loop runs a timer: the cheapest sign that this process is busy.

    lag = LoopLag(busy_ms=5.0)
    lag.start()          # in a running loop; a task that wakes every 50 ms
    if lag.busy: ...     # optional work (shadow calls, second opinions) is skipped while the process is saturated

Optional work that costs CPU on this process (a shadow call, a second opinion on a routing score) must never
queue in front of users' requests: it is dropped while the loop runs late.
"""

from __future__ import annotations

import asyncio

__all__ = ["LoopLag"]


class LoopLag:
    def __init__(self, every_s: float = 0.05, busy_ms: float = 5.0) -> None:
        self.every_s = every_s
        self.busy_ms = busy_ms
        self.lag_ms = 0.0
        self._task: asyncio.Task | None = None

    @property
    def busy(self) -> bool:
        return self.lag_ms > self.busy_ms

    def start(self) -> None:
        """Start measuring in the running loop (once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.every_s
            await asyncio.sleep(self.every_s)
            late = max(0.0, loop.time() - expected) * 1000
            self.lag_ms = late if late > self.lag_ms else 0.8 * self.lag_ms + 0.2 * late  # up fast, down slowly
