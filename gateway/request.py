"""The checks of the client's body, and what the pipeline answers (Answer, StreamAnswer).

The request itself is a RequestContext (gateway/context.py), also known here as ChatRequest.

Only the fields the gateway uses are validated; everything else is forwarded untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import orjson

from gateway.context import RequestContext
from gateway.errors import BodyTooLarge, InvalidRequest
from gateway.messages import content_text, last_user_text
from gateway.verbatim import ClientBody

__all__ = [
    "PRIORITIES",
    "ROLES",
    "Answer",
    "ChatRequest",
    "RequestContext",
    "StreamAnswer",
    "content_text",
    "last_user_text",
    "parse_chat_body",
]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
PRIORITIES = ("critical", "normal", "batch")


ChatRequest = RequestContext  # the name the steps know the context by


@dataclass(slots=True)
class Answer:
    """A complete answer; api/render.py adds the headers when it is sent."""

    status: int
    body: bytes


@dataclass(slots=True)
class StreamAnswer:
    chunks: AsyncIterator[bytes]


def _number(
    body: dict, name: str, *, integer: bool = False, low: float | None = None, high: float | None = None
) -> None:
    value = body.get(name)
    if value is None:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise InvalidRequest(f"'{name}' must be {'an integer' if integer else 'a number'}", param=name)
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidRequest(f"'{name}' must be between {low} and {high}", param=name)


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _check_parts(parts: list, where: str) -> None:
    """Content parts as OpenAI checks them: objects with a string `type`; a text part's `text` a string,
    an image part's `image_url` an object with a string `url`. Other part types go to the upstream."""
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise InvalidRequest(f"{where}[{j}] must be an object", param=f"{where}[{j}]")
        kind = part.get("type")
        if not isinstance(kind, str):
            raise InvalidRequest(f"{where}[{j}].type is required and must be a string", param=f"{where}[{j}].type")
        if kind == "text" and not isinstance(part.get("text"), str):
            raise InvalidRequest(f"{where}[{j}].text must be a string", param=f"{where}[{j}].text")
        if kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise InvalidRequest(
                    f"{where}[{j}].image_url must be an object with a string url", param=f"{where}[{j}].image_url"
                )


def json_object_body(raw: bytes, parse: Callable[[bytes], Any] = ClientBody.parse) -> Any:
    """A request body that must be one JSON object, or the 400 that says what it is instead."""
    if not raw:
        raise InvalidRequest("the request body is empty; expected a JSON object")
    try:
        body = parse(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def parse_chat_body(raw: bytes, max_bytes: int) -> dict[str, Any]:
    if len(raw) > max_bytes:
        raise BodyTooLarge(f"the request body is {len(raw)} bytes; the limit is {max_bytes}")
    body = json_object_body(raw)
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
        if not isinstance(role, str) or role not in ROLES:
            shown = repr(role) if isinstance(role, str) else f"a JSON {_json_type(role)}"
            raise InvalidRequest(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}; got {shown[:60]}",
                param=f"messages[{i}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidRequest(
                f"messages[{i}].content must be a string or an array of content parts", param=f"messages[{i}].content"
            )
        if isinstance(content, list):
            _check_parts(content, f"messages[{i}].content")
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


MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit per request
MAX_DIMENSIONS = 65_536  # OpenAI's largest model has 3,072; a bound that no real model reaches


def parse_embeddings_body(raw: bytes) -> dict[str, Any]:
    """POST /v1/embeddings: `input` a non-empty string, array of strings, array of token ids or array of
    token-id arrays (at most 2,048 items); `dimensions` a positive integer; `encoding_format` float|base64."""
    body = json_object_body(raw)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    inputs = body.get("input")
    shapes = "a string, an array of strings, an array of token ids or an array of token-id arrays"
    if isinstance(inputs, str):
        if not inputs:
            raise InvalidRequest("'input' must not be empty", param="input")
    elif isinstance(inputs, list):
        if not inputs or len(inputs) > MAX_EMBEDDING_INPUTS:
            raise InvalidRequest(f"'input' must hold 1 to {MAX_EMBEDDING_INPUTS} items", param="input")
        if not (
            all(isinstance(item, str) for item in inputs)
            or all(_token_id(item) for item in inputs)
            or all(isinstance(item, list) and item and all(_token_id(t) for t in item) for item in inputs)
        ):
            raise InvalidRequest(f"'input' must be {shapes}", param="input")
    else:
        raise InvalidRequest(f"'input' is required and must be {shapes}", param="input")
    _number(body, "dimensions", integer=True, low=1, high=MAX_DIMENSIONS)
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    return body


def _token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
