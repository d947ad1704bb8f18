"""The batch worker every replica runs: it leases items of active batches and sends each through the same
pipeline as an interactive request (the creating key's limits, the cache, routing, fallbacks, cost per
intent), at priority `batch`.

Staggering: items start evenly spaced, at most `batches.max_per_s` a second (by default the share of the
providers' rpm that batch may use, per second: a minute's budget is never spent in a burst that would
crowd out interactive requests), and only take what interactive traffic leaves. At priority `batch` the upstream budgets keep
`resilience.batch_reserve` of every provider's rpm/tpm for interactive traffic and shed a batch call before
the provider would be pushed past its quota; a shed item is not failed but waits (the budget says how
long) and is tried again, and the worker halves its concurrency. Each item that goes through adds a
little back (additive increase, multiplicative decrease, like TCP), up to `batches.max_concurrency`. So
when interactive traffic rises, batch calls start being shed at once and the worker backs off; when it
falls, the worker climbs back into the headroom.

A replica that dies holding leases loses nothing: the leases run out (`batches.lease_s`) and another
replica takes the items again; results are written once (gateway/batches/jobs.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson

from gateway.api.render import error_answer
from gateway.batches.jobs import BatchStore
from gateway.errors import GatewayError, RateLimited

if TYPE_CHECKING:
    from gateway.metrics import Metrics

log = logging.getLogger("gateway.batches")

# (batch meta, item body) → (status code, response body, request id); raises RateLimited when shed
RunItem = Callable[[dict[str, Any], dict[str, Any]], Awaitable[tuple[int, Any, str]]]


class BatchWorker:
    def __init__(
        self,
        store: BatchStore,
        run_item: RunItem,
        *,
        max_concurrency: int = 32,
        lease_s: float = 120.0,
        poll_s: float = 0.5,
        max_per_s: float | None = None,
        metrics: Metrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.run_item = run_item
        self.max_concurrency = max_concurrency
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.metrics = metrics
        self.sleep = sleep
        self.concurrency = 1.0  # grows by 1/concurrency per item served, halves when shed
        self.interval = 1 / max_per_s if max_per_s else 0.0  # items start at most this often (paced, not bursts)
        self._next_start = 0.0
        self._tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        while True:
            try:
                claimed = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away, say: try again next poll
                log.warning("batch worker: %s: %s", type(exc).__name__, exc)
                claimed = 0
            await self.sleep(0.05 if claimed else self.poll_s)

    async def tick(self) -> int:
        """Finalize what is done; lease as many items as the current concurrency allows."""
        claimed = pending = 0
        for batch_id in await self.store.active():
            meta = await self.store.finalize(batch_id)
            if meta is None or meta["status"] != "in_progress":
                continue
            pending += meta["total"] - meta["completed"] - meta["failed"]
            free = int(self.concurrency) - len(self._tasks)
            if self.interval:  # no more than a second's worth of items waiting to start
                free = min(free, max(1, int(1 / self.interval)) - self._waiting())
            if free <= 0:
                continue  # the other batches are still counted as pending
            for index, item in await self.store.claim(batch_id, free, self.lease_s):
                start = max(time.monotonic(), self._next_start)
                self._next_start = start + self.interval
                task = asyncio.create_task(self._work(meta, index, item, start))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                claimed += 1
        self._gauge(pending)
        return claimed

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop working; leased items go back to the pool when their leases run out."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _waiting(self) -> int:
        return max(0, int((self._next_start - time.monotonic()) / self.interval)) if self.interval else 0

    async def _work(self, meta: dict[str, Any], index: int, item: dict[str, Any], start: float = 0.0) -> None:
        batch_id = meta["id"]
        if start > time.monotonic():
            await self.sleep(start - time.monotonic())
        deadline = time.monotonic() + self.lease_s * 0.8  # give the item back before another replica takes it
        while True:
            try:
                status, body, request_id = await self.run_item(meta, item["body"])
                break
            except RateLimited as exc:  # shed to keep the headroom: wait, slow down, try again
                self.concurrency = max(1.0, self.concurrency / 2)
                self._count("shed")
                wait = max(0.05, min(exc.retry_after_s, 5.0))
                if time.monotonic() + wait > deadline:
                    return  # the lease runs out and the item is taken again
                await self.sleep(wait)
            except GatewayError as exc:
                status, raw, _ = error_answer(exc)  # what an interactive client would have got
                body, request_id = orjson.loads(raw), ""
                break
        ok = status == 200
        line = {
            "id": f"batch_req_{batch_id[6:]}_{index}",
            "custom_id": item["custom_id"],
            "response": {"status_code": status, "request_id": request_id or os.urandom(8).hex(), "body": body},
            "error": None,
        }
        await self.store.finish(batch_id, index, line, ok)
        self._count("completed" if ok else "failed")
        self.concurrency = min(float(self.max_concurrency), self.concurrency + 1 / self.concurrency)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.batch_items.labels(outcome).inc()

    def _gauge(self, pending: int) -> None:
        if self.metrics is not None:
            self.metrics.batch_pending.set(pending)
            self.metrics.batch_running.set(len(self._tasks))
            self.metrics.batch_concurrency.set(self.concurrency)
