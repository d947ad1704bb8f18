"""Per client key limits: requests and tokens per minute (ApiKey.rpm / tpm), over the same sliding
windows as the upstream budgets (gateway.upstream.budget), shared across replicas through Redis when
configured, in process otherwise.

    limits = KeyLimits(windows, metrics)
    await limits.admit(req)    # raises RateLimited (429 rate_limit_error, Retry-After) when over

`admit` counts one request and the request's token estimate, held on the request (`req.hold`): the
pipeline settles it to the real usage when the request ends (gateway.context.settle_holds).
"""

from __future__ import annotations

from gateway.errors import RateLimited
from gateway.request import ChatRequest
from gateway.upstream.budget import MemoryWindows, RedisWindows, estimate_tokens

__all__ = ["KeyLimits"]


class KeyLimits:
    def __init__(self, windows: MemoryWindows | RedisWindows, metrics=None) -> None:
        self.windows = windows
        self.metrics = metrics

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
                raise RateLimited(
                    f"this request (about {tokens} tokens) is larger than the key's limit of "
                    f"{key.tpm} tokens per minute",
                    retry_after_s=60.0,
                )
            raise RateLimited(
                f"rate limit reached for key '{key.name}' ({key.rpm or '-'} requests, "
                f"{key.tpm or '-'} tokens per minute); retry in {grant.wait_s:.1f}s",
                retry_after_s=grant.wait_s,
            )
        if key.tpm:
            req.hold(self.windows, window, grant.bucket, tokens)
