"""The request object every pipeline step reads and annotates, and the checks of the client's body.

Only the fields the gateway uses are validated; everything else is forwarded untouched.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator

import orjson

from gateway.bounds import clip
from gateway.errors import BodyTooLarge, InvalidRequest

if TYPE_CHECKING:
    import numpy as np

    from gateway.auth import ClientKey

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PRIORITIES = ("critical", "normal", "batch")


@dataclass(slots=True)
class ChatRequest:
    body: dict[str, Any]  # the client's JSON, forwarded as is apart from `model` (and stream_options)
    alias: str  # the public model name the client asked for
    headers: dict[str, str]  # lower-case names
    stream: bool = False
    include_usage: bool = False  # the client itself asked for the usage chunk of a stream
    started: float = field(default_factory=time.perf_counter)
    request_id: str = field(default_factory=lambda: os.urandom(16).hex())  # uuid4().hex costs 4x more
    key: "ClientKey | None" = None
    priority: str = "normal"
    intent: str = "other"
    vector: "np.ndarray | None" = None  # embedding of the last user message, computed at most once
    cache_key: str | None = None
    cache_result: str = "off"  # hit-exact | hit-semantic | miss | bypass | off
    saved_tokens: int = 0
    difficulty: Any = None  # routing.difficulty.Difficulty
    tier: str = "light"
    variant: str = "stable"  # or "canary"
    served_by: str | None = None
    upstream_seconds: float = 0.0  # waiting on the upstream
    client_seconds: float = 0.0  # waiting on the client to take stream chunks
    ttft: float | None = None
    usage: dict[str, Any] | None = None
    status: int = 200

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body["messages"]

    @property
    def last_user_text(self) -> str:
        """The question the embedding, intents and cache guards see: clipped to bounds.TEXT_LIMIT."""
        return clip(last_user_text(self.body["messages"]))

    @property
    def system_prompt(self) -> str:
        return "\n".join(content_text(m.get("content")) for m in self.body["messages"]
                         if m.get("role") in ("system", "developer"))

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class StreamAnswer:
    chunks: AsyncIterator[bytes]
    headers: dict[str, str]


def content_text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content
                        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str))
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """Text of the last user message (the one the embedding is computed on), or "" if none."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def _number(body: dict, name: str, *, integer: bool = False, low: float | None = None,
            high: float | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise InvalidRequest(f"'{name}' must be {'an integer' if integer else 'a number'}", param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidRequest(f"'{name}' must be between {low} and {high}", param=name)


def parse_chat_body(raw: bytes, max_bytes: int) -> dict[str, Any]:
    if len(raw) > max_bytes:
        raise BodyTooLarge(f"the request body is {len(raw)} bytes; the limit is {max_bytes}")
    if not raw:
        raise InvalidRequest("the request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("'messages' is required and must be an array", param="messages")
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}; got {role!r}",
                                 param=f"messages[{i}].role")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidRequest(f"messages[{i}].content must be a string or an array of content parts",
                                 param=f"messages[{i}].content")
        if content is None and role in ("user", "system", "developer"):
            raise InvalidRequest(f"messages[{i}].content is required for role {role}", param=f"messages[{i}].content")
    if "stream" in body and not isinstance(body["stream"], bool) and body["stream"] is not None:
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object", param="stream_options")
    _number(body, "n", integer=True, low=1, high=128)
    _number(body, "temperature", low=0, high=2)
    _number(body, "top_p", low=0, high=1)
    _number(body, "max_tokens", integer=True, low=1)
    _number(body, "max_completion_tokens", integer=True, low=1)
    return body
