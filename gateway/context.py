"""RequestContext: everything one request owns, from its first byte to its access-log line.

The API layer makes one per request (`RequestContext.start`); each pipeline step reads it and sets its own
fields; `Pipeline.run` ends every request in one place that settles its holds, records its metrics and
writes its access line. Nothing about a request lives in a component's dict keyed by request id.

    field                 set by
    request_id            the client's well-formed x-request-id, else a new one (RequestContext.start)
    kind, path            the entry point: chat, embeddings, models, http (admin, health, not found)
    body, alias, stream   the API layer, once the body is parsed
    key                   auth.check
    holds                 limits.admit, the dispatcher's budget: token reservations settled at the end
    intent, vector        intents.detect, embedder.embed
    cache_*               cache.lookup_exact / lookup_semantic
    tier, variant         router.decide
    served_by, usage      the dispatcher, the answer
    upstream_seconds      time waiting on the upstream; client_seconds: waiting on the client (streams)
    status, error         what the client received (api/render.py); 499 when the client left first
    cost                  recorder.record (saved_usd: the cost a cache hit saved)
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gateway.bounds import clip
from gateway.messages import content_text, last_user_text

if TYPE_CHECKING:
    import numpy as np

    from gateway.auth import ClientKey

__all__ = ["Hold", "RequestContext", "new_request_id", "request_id_from", "settle_holds"]

log = logging.getLogger("gateway.context")

# A client's own id is kept when it is short and plain (it ends up in logs and headers): 1-128 characters
# of letters, digits and . _ : - (UUIDs, ULIDs, trace ids). Anything else is replaced.
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def new_request_id() -> str:
    return os.urandom(16).hex()  # uuid4().hex costs 4x more


def request_id_from(headers: dict[str, str]) -> str:
    """The client's x-request-id when well-formed, else a new one."""
    given = headers.get("x-request-id")
    if given and _CLIENT_ID.fullmatch(given):
        return given
    return new_request_id()


class Windows(Protocol):
    """Sliding request/token windows (gateway.upstream.budget): where a hold was taken."""

    async def adjust(self, key: str, bucket: int, tokens: int) -> None: ...


@dataclass(slots=True)
class Hold:
    """Tokens reserved on a window before the answer was known (the estimate), settled to the real usage.
    `deployment` is None for the client key's own window, else the upstream deployment whose budget it is."""

    windows: Windows
    key: str
    bucket: int
    estimate: int
    deployment: str | None = None


@dataclass(slots=True)
class RequestContext:
    body: dict[str, Any]  # the client's JSON, forwarded as is apart from `model` (and stream_options)
    alias: str  # the public model name the client asked for ("" until the body is read)
    headers: dict[str, str]  # lower-case names
    stream: bool = False
    include_usage: bool = False  # the client itself asked for the usage chunk of a stream
    started: float = field(default_factory=time.perf_counter)
    request_id: str = field(default_factory=new_request_id)
    kind: str = "chat"  # chat | embeddings | models | http: what the access line and the metrics say
    path: str = ""
    key: ClientKey | None = None
    holds: list[Hold] | None = None
    priority: str = "normal"
    intent: str = "other"
    vector: np.ndarray | None = None  # embedding of the last user message, computed at most once
    cache_key: str | None = None
    cache_result: str = "off"  # hit-exact | hit-semantic | miss | coalesced | bypass | off
    cache_error: bool = False  # the exact lookup failed (the cache counts it as "error")
    cache_match: Any = None  # cache.service.SemanticMatch: the question's language, the entry it matched
    saved_tokens: int = 0  # a cache hit: the tokens and the cost of the answer it replays
    saved_usd: float = 0.0
    difficulty: Any = None  # routing.difficulty.Difficulty
    tier: str = "light"
    variant: str = "stable"  # or "canary"
    served_by: str | None = None
    upstream_headers: list[tuple[bytes, bytes]] | None = None  # passed on: rate limits, upstream request id
    upstream_seconds: float = 0.0  # waiting on the upstream
    client_seconds: float = 0.0  # waiting on the client to take stream chunks
    ttft: float | None = None
    usage: dict[str, Any] | None = None
    reply: str | None = None  # the answer's text, kept only for the opt-in request log
    status: int = 200  # what the client received
    responded: bool = False  # the response's status line has been sent
    error: str | None = None  # the error's metric label when the request failed
    cost: float = 0.0
    spend: Any = None  # spend.SpendHold: the estimated cost held on the key's budgets, settled at the end
    # last_user_text's memo: (the messages list it was read from, its length, the text); read ~15 times a request
    _question: tuple[list[dict[str, Any]], int, str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def start(cls, headers: dict[str, str], kind: str, path: str, started: float | None = None) -> RequestContext:
        return cls(
            {},
            "",
            headers,
            started=started if started is not None else time.perf_counter(),
            request_id=request_id_from(headers),
            kind=kind,
            path=path,
        )

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body["messages"]

    @property
    def last_user_text(self) -> str:
        """The question the embedding, intents and cache guards see: clipped to bounds.TEXT_LIMIT. Worked out
        once for a messages list (a new body or a message added: worked out again)."""
        messages = self.body["messages"]
        memo = self._question
        if memo is not None and memo[0] is messages and memo[1] == len(messages):
            return memo[2]
        text = clip(last_user_text(messages))
        self._question = (messages, len(messages), text)
        return text

    @property
    def system_prompt(self) -> str:
        return "\n".join(
            content_text(m.get("content")) for m in self.body["messages"] if m.get("role") in ("system", "developer")
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def overhead(self) -> float:
        """Seconds spent in the gateway itself: neither waiting on the upstream nor on the client."""
        return max(0.0, self.elapsed() - self.upstream_seconds - self.client_seconds)

    def hold(self, windows: Windows, key: str, bucket: int, estimate: int, deployment: str | None = None) -> None:
        if self.holds is None:
            self.holds = []
        self.holds.append(Hold(windows, key, bucket, estimate, deployment))


def _real_tokens(usage: dict[str, Any]) -> int:
    return int(usage.get("total_tokens") or 0) or (
        int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
    )


async def settle_holds(holds: list[Hold], usage: dict[str, Any] | None, served_by: str | None) -> None:
    """Replace every estimate by what was really used. The usage belongs to the key and to the last hold
    on the deployment that served; other deployments' holds (failed attempts, retries) and every hold of a
    request nobody served (errors, cache hits) are given back. A served request with no usage (a stream the
    client left) keeps its estimates: tokens were spent, we do not know how many."""
    real = None if usage is None else _real_tokens(usage)
    served_seen = False
    for hold in reversed(holds):
        if hold.deployment is None or (hold.deployment == served_by and not served_seen):
            served_seen = served_seen or hold.deployment is not None
            if real is None:
                if served_by is not None:
                    continue
                used = 0
            else:
                used = real
        else:
            used = 0
        if used != hold.estimate:
            try:
                await hold.windows.adjust(hold.key, hold.bucket, used - hold.estimate)
            except Exception:  # accounting never breaks serving
                log.exception("could not settle the tokens held on %s", hold.key)


class Background:
    """Tasks that outlive their request (settling holds on Redis): kept referenced until done."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for pending tasks (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
