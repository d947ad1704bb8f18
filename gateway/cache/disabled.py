"""The cache switched off: it stays in the pipeline as a pass-through so the order never changes."""

from __future__ import annotations


class DisabledCache:
    async def lookup_exact(self, req):
        req.cache_result = "off"
        return None

    async def lookup_semantic(self, req):
        return None

    async def store(self, req, parsed) -> None:
        return None

    async def store_stream(self, req, relay) -> None:
        return None

    def render(self, req, cached):  # never called: lookups never hit
        raise RuntimeError("the disabled cache has nothing to render")
