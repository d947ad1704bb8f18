"""The pipeline's steps as typed Protocols, in the order a request meets them, and a complete no-op for
each step that a feature switch can turn off (a disabled feature stays in the line: the order never
changes). The real steps: auth.Authenticator, limits.KeyLimits, cache.service.IntentCache,
embeddings.Embedder, intents.IntentDetector, routing.router.Router, upstream.dispatcher.Dispatcher,
recorder.Recorder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

from gateway.context import RequestContext

if TYPE_CHECKING:
    import numpy as np

    from gateway.auth import ClientKey
    from gateway.config import Deployment
    from gateway.sse import StreamRelay
    from gateway.upstream.client import UpstreamAnswer, UpstreamStream

__all__ = [
    "Auth",
    "Cache",
    "Chain",
    "Dispatcher",
    "Embedder",
    "Intents",
    "Limits",
    "NoCache",
    "NoEmbedder",
    "NoIntents",
    "NoLimits",
    "NoRecorder",
    "Recorder",
    "Router",
]

Chain = Sequence[tuple[str, "Deployment"]]  # deployments to try, in order: (name, deployment)


class Auth(Protocol):
    async def check(self, headers: dict[str, str]) -> ClientKey:
        """The client's key; raises AuthenticationFailed."""
        ...


class Limits(Protocol):
    async def admit(self, req: RequestContext) -> None:
        """Counts the request against its key's limits (holding its token estimate); raises RateLimited."""
        ...


class Cache(Protocol):
    async def lookup_exact(self, req: RequestContext) -> Any | None:
        """A stored answer for this exact request (sets req.cache_key, req.cache_result), or None."""
        ...

    async def lookup_semantic(self, req: RequestContext) -> Any | None:
        """A stored answer to a paraphrase of the question, after the embedding and the intent, or None."""
        ...

    async def store(self, req: RequestContext, parsed: Any) -> None: ...

    async def store_stream(self, req: RequestContext, relay: StreamRelay) -> None: ...


class Embedder(Protocol):
    @property
    def available(self) -> bool: ...

    async def embed(self, text: str) -> np.ndarray: ...


class Intents(Protocol):
    def detect(self, text: str, vector: np.ndarray | None = None, header: str | None = None) -> str: ...


class Router(Protocol):
    def require_model(self, req: RequestContext) -> None:
        """Raises ModelNotFound for an alias that is not configured."""
        ...

    def chain(self, alias: str, tier: str) -> Chain: ...

    def prefetch(self, req: RequestContext) -> None:
        """Start the Redis reads `decide` will need, so that they overlap the steps before it."""
        ...

    async def decide(self, req: RequestContext) -> Chain:
        """Sets req.difficulty, req.tier and req.variant; the deployments to try."""
        ...

    async def observe(self, req: RequestContext, failed: bool = False) -> None:
        """The outcome of the upstream call (a failing canary is rolled back)."""
        ...


class Dispatcher(Protocol):
    async def complete(
        self, req: RequestContext, chain: Chain, path: str = "/chat/completions", body_for: Any = None
    ) -> UpstreamAnswer: ...

    async def open_stream(self, req: RequestContext, chain: Chain) -> tuple[UpstreamStream, bytes]: ...


class Recorder(Protocol):
    def record(self, req: RequestContext) -> None:
        """The request's metrics; sets req.cost."""
        ...

    def cost_of(self, usage: dict[str, Any] | None, deployment: str | None) -> float:
        """What an answer with this usage cost on this deployment (for cache hits: what they saved)."""
        ...


class Shadow(Protocol):
    def offer(
        self, alias: str, intent: str, variant: str, tier: str, body: dict[str, Any], primary: dict[str, Any]
    ) -> bool:
        """After a light answer went to its user: maybe mirror the request to a candidate, in the background."""
        ...


class Spend(Protocol):
    async def reserve(self, key: ClientKey | None, alias: str, body: dict[str, Any]) -> Any:
        """The estimated cost held on the key's and team's budgets; raises QuotaExceeded when one is spent."""
        ...

    async def settle(self, hold: Any, cost: float) -> None: ...


# ---------------------------------------------------------------------------------------------- no-ops
class NoLimits:
    """No per-key limits."""

    async def admit(self, req: RequestContext) -> None:
        return None


class NoCache:
    """The cache switched off: every lookup misses with result "off", nothing is stored."""

    async def lookup_exact(self, req: RequestContext) -> None:
        req.cache_result = "off"
        return None

    async def lookup_semantic(self, req: RequestContext) -> None:
        return None

    async def store(self, req: RequestContext, parsed: Any) -> None:
        return None

    async def store_stream(self, req: RequestContext, relay: StreamRelay) -> None:
        return None


class NoEmbedder:
    """No embedding model: intents by keywords, no semantic cache, difficulty from features only."""

    available = False

    async def embed(self, text: str) -> np.ndarray:
        raise RuntimeError("no embedding model is loaded: check `available` first")


class NoIntents:
    """No intent detection: every request is "other"."""

    def detect(self, text: str, vector: np.ndarray | None = None, header: str | None = None) -> str:
        return "other"


class NoRecorder:
    """No metrics (tests of the steps)."""

    def record(self, req: RequestContext) -> None:
        return None

    def cost_of(self, usage: dict[str, Any] | None, deployment: str | None) -> float:
        return 0.0
