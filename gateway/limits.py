"""Per client key limits: requests and tokens per minute (ApiKey.rpm / tpm), over the same sliding
windows as the upstream budgets (gateway.upstream.budget), shared across replicas through Redis when
configured, in process otherwise.

    limits = KeyLimits(windows, metrics, budget=dispatcher.budget)
    await limits.admit(req)    # raises RateLimited (429 rate_limit_error, Retry-After) when over
    limits.settle(req)         # after the answer: real token usage replaces the estimate (key and upstream)

`admit` counts one request and the request's token estimate; `settle` does not wait on Redis: the
correction runs in the background so the answer leaves at once.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.errors import RateLimited
from gateway.request import ChatRequest
from gateway.upstream.budget import MemoryWindows, RedisWindows, UpstreamBudget, estimate_tokens

__all__ = ["KeyLimits"]

log = logging.getLogger("gateway.limits")


class KeyLimits:
    def __init__(self, windows: MemoryWindows | RedisWindows, metrics=None,
                 budget: UpstreamBudget | None = None) -> None:
        self.windows = windows
        self.metrics = metrics
        self.budget = budget
        self._held: dict[str, tuple[str, int, int]] = {}  # request id → (window key, bucket, estimate)
        self._tasks: set[asyncio.Task] = set()

    async def admit(self, req: ChatRequest) -> None:
        key = req.key
        if key is None or (key.rpm is None and key.tpm is None):
            return
        tokens = estimate_tokens(req.body) if key.tpm else 0
        window = f"key:{key.id}"  # per key, not per name
        grant = await self.windows.take(window, (key.rpm, key.tpm), (1, tokens))
        if not grant.ok:
            if self.metrics is not None:
                self.metrics.rate_limited.labels("key").inc()
            if grant.wait_s < 0:
                raise RateLimited(f"this request (about {tokens} tokens) is larger than the key's limit of "
                                  f"{key.tpm} tokens per minute", retry_after_s=60.0)
            raise RateLimited(f"rate limit reached for key '{key.name}' ({key.rpm or '-'} requests, "
                              f"{key.tpm or '-'} tokens per minute); retry in {grant.wait_s:.1f}s",
                              retry_after_s=grant.wait_s)
        if key.tpm:
            if len(self._held) >= 50_000:
                for stale in list(self._held)[:10_000]:
                    del self._held[stale]
            self._held[req.request_id] = (window, grant.bucket, tokens)

    def settle(self, req: ChatRequest) -> None:
        """Replace token estimates by the real usage, in the background. Call once the usage is known."""
        held = self._held.pop(req.request_id, None)
        if held is None and (self.budget is None or not self.budget.holding(req.request_id)):
            return
        task = asyncio.get_running_loop().create_task(self._settle(req.request_id, req.usage, held))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, request_id: str, usage: dict | None, held: tuple[str, int, int] | None) -> None:
        try:
            if self.budget is not None:
                await self.budget.settle(request_id, usage)
            if held is not None and usage:
                window, bucket, estimate = held
                real = int(usage.get("total_tokens") or 0)
                if real and real != estimate:
                    await self.windows.adjust(window, bucket, real - estimate)
        except Exception:  # accounting must never break serving
            log.exception("could not settle the token usage of %s", request_id)

    async def drain(self) -> None:
        """Wait for pending corrections (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
