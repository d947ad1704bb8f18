"""A fast, OpenAI-compatible fake upstream for the demo, the integration/chaos tests and benchmarks.

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE, tools, json response_format, ``n``),
``GET /v1/models``, ``POST /v1/embeddings``; control: ``GET /mock/stats``, ``POST /mock/reset``,
``GET|POST /mock/config`` (partial update of :class:`MockSettings`).

Azure OpenAI, as Azure serves it: ``POST /openai/deployments/{name}/chat/completions?api-version=V`` (and
``/embeddings``) with an ``api-key`` header (``Authorization: Bearer`` is refused), a 404
DeploymentNotFound for a name not in ``azure_deployments`` (when set), and Azure's error shapes
(``{"error": {"code": "429", "message": "... Please retry after N seconds ..."}}`` with ``retry-after``
and ``x-ratelimit-remaining-*`` headers).

Faults, decided once per chat/embeddings request, first match wins:

1. per-request headers: ``x-mock-drop: 1``, ``x-mock-status: 429``, ``x-mock-hang-s: 5``,
   ``x-mock-cut-after: N``; ``x-mock-retry-after``, ``x-mock-latency-ms``, ``x-mock-tokens-per-second``
   and ``x-mock-chunks`` only tune the answer;
2. deterministic: the first ``fail_first_n`` and every ``fail_every_n``-th request get ``fail_status``
   (an HTTP status, or "drop", "timeout", "cut"); the count restarts on reset or when either is set;
3. random, from an RNG seeded by ``seed``: one draw against ``fail_rate_429``, ``fail_rate_500``,
   ``fail_rate_timeout``, ``fail_rate_drop`` (stacked), then a stream draws against ``cut_stream_rate``.

"drop" closes the TCP connection without an HTTP response, "timeout" waits ``hang_s`` then answers,
"cut" closes a stream after some chunks without the last chunk or ``[DONE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import math
import random
import struct
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

__all__ = ["MockSettings", "MockServerThread", "RunningMock", "create_app", "register_cli", "start_mock"]

_FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore".split()
_ERRORS = {  # status -> (message, type, code), worded as the OpenAI API words them
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    404: ("The model does not exist.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests (mock).", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


@dataclass(frozen=True)
class MockSettings:
    served_model: str | None = None  # answers carry this model name; else the request's model
    api_key: str | None = None  # when set, "Authorization: Bearer <api_key>" is required
    accepted_keys: tuple[str, ...] = ()  # more keys that work (set at run time to revoke one)
    azure_deployments: tuple[str, ...] = ()  # Azure deployment names served (empty: any)
    latency_ms: float = 0.0  # wait before answering (time to first byte)
    tokens_per_second: float = 0.0  # stream pacing; 0 = as fast as possible
    chunks: int = 20  # content chunks per stream
    default_tokens: int = 30  # answer length in words when the request sets no max_tokens
    answer_prefix: str = "Mock answer to:"  # first words of every answer (tells two mocks' answers apart)
    embedding_dim: int = 8
    fail_rate_429: float = 0.0
    fail_rate_500: float = 0.0
    fail_rate_timeout: float = 0.0
    fail_rate_drop: float = 0.0
    cut_stream_rate: float = 0.0
    retry_after_s: float = 1.0
    hang_s: float = 30.0
    fail_first_n: int = 0
    fail_every_n: int = 0
    fail_status: int | str = 429  # an HTTP status, or "drop" | "timeout" | "cut"
    rpm_limit: int = 0  # like a provider's quota: over this many chat requests in 60 s, 429 (counted)
    seed: int | None = None


@dataclass(frozen=True)
class _Fault:
    kind: str  # "status" | "drop" | "hang" | "cut"
    status: int = 0
    retry_after: float = 0.0
    hang_s: float = 0.0
    cut_after: int = 0


class _Dropped(Exception):
    """Raised by a handler to close the connection without any HTTP response."""


def _new_stats(in_flight: int = 0) -> dict[str, Any]:
    counters = (
        "requests chat_requests embedding_requests streams_started streams_completed streams_cancelled "
        "streams_cut requests_cancelled dropped rpm_exceeded"
    ).split()
    return {
        **dict.fromkeys(counters, 0),
        "in_flight": in_flight,
        "status_counts": {},
        "last_authorization": None,
        "last_api_key": None,
        "last_path": None,
    }


class _State:
    """All that is mutable in one mock. Settings are swapped whole, so another thread may replace them."""

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.stats = _new_stats()
        self.fault_count = 0
        self.accepted: collections.deque[float] = collections.deque()  # times of requests within rpm_limit

    def over_rpm(self) -> bool:
        """A sliding 60 s window, as a provider counts: True (and counted) when this request goes over."""
        now = time.monotonic()
        while self.accepted and self.accepted[0] <= now - 60:
            self.accepted.popleft()
        if len(self.accepted) >= self.settings.rpm_limit:
            self.stats["rpm_exceeded"] += 1
            return True
        self.accepted.append(now)
        return False

    def configure(self, changes: dict[str, Any]) -> MockSettings:
        clean = {}
        for name, value in changes.items():
            if name not in MockSettings.__dataclass_fields__:
                raise ValueError(f"unknown setting: {name}")
            default = getattr(MockSettings, name)
            if isinstance(default, float) and type(value) is int:
                value = float(value)
            elif isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            elif default is not None and name != "fail_status" and type(value) is not type(default):
                raise ValueError(f"{name} must be a {type(default).__name__}")
            clean[name] = value
        self.settings = dataclasses.replace(self.settings, **clean)
        if "seed" in clean:
            self.rng = random.Random(self.settings.seed)
        if "fail_first_n" in clean or "fail_every_n" in clean:
            self.fault_count = 0
        return self.settings

    def reset(self) -> None:
        self.stats = _new_stats(self.stats["in_flight"])
        self.fault_count = 0


_STATE = web.AppKey("mock_state", _State)
AZURE_STREAM_OPTIONS_SINCE = "2024-09-01"  # older api-versions refuse stream_options


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json", headers=headers)


def _error(
    status: int, message: str | None = None, param: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    default, kind, code = _ERRORS.get(status, (f"Mock error {status}.", "server_error", None))
    return _json(
        {"error": {"message": message or default, "type": kind, "param": param, "code": code}}, status, headers
    )


def _rate_limit_headers(retry_after: float) -> dict[str, str]:
    """Retry-After is whole seconds (rounded up); retry-after-ms is exact."""
    reset = f"{int(retry_after * 1000)}ms" if retry_after < 1 else f"{retry_after:g}s"
    return {
        "Retry-After": str(math.ceil(retry_after)),
        "retry-after-ms": str(int(retry_after * 1000)),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-remaining-requests": "0",
    }


def _configured_fault(kind: int | str, s: MockSettings, chunks: int) -> _Fault:
    if kind == "drop":
        return _Fault("drop")
    if kind == "timeout":
        return _Fault("hang", hang_s=s.hang_s)
    if kind == "cut":
        return _Fault("cut", cut_after=chunks // 2)
    return _Fault("status", status=int(kind), retry_after=s.retry_after_s)


def _decide_fault(state: _State, headers: Any, stream: bool, chunks: int) -> _Fault | None:
    s = state.settings
    if headers.get("x-mock-drop", "0") not in ("0", ""):
        return _Fault("drop")
    if "x-mock-status" in headers:
        retry_after = float(headers.get("x-mock-retry-after", s.retry_after_s))
        return _Fault("status", status=int(headers["x-mock-status"]), retry_after=retry_after)
    if "x-mock-hang-s" in headers:
        return _Fault("hang", hang_s=float(headers["x-mock-hang-s"]))
    if "x-mock-cut-after" in headers:
        return _Fault("cut", cut_after=int(headers["x-mock-cut-after"])) if stream else None
    if s.rpm_limit and state.over_rpm():
        return _Fault("status", status=429, retry_after=1.0)
    if s.fail_first_n or s.fail_every_n:
        state.fault_count += 1
        count = state.fault_count
        if count <= s.fail_first_n or (s.fail_every_n and count % s.fail_every_n == 0):
            return _configured_fault(s.fail_status, s, chunks)
    rates = (s.fail_rate_429, s.fail_rate_500, s.fail_rate_timeout, s.fail_rate_drop)
    if any(rates):
        draw = state.rng.random()
        kinds: tuple[int | str, ...] = (429, 500, "timeout", "drop")
        for rate, kind in zip(rates, kinds):
            if draw < rate:
                return _configured_fault(kind, s, chunks)
            draw -= rate
    if stream and s.cut_stream_rate and state.rng.random() < s.cut_stream_rate:
        return _Fault("cut", cut_after=chunks // 2)
    return None


async def _apply_fault(request: web.Request, fault: _Fault | None) -> web.Response | None:
    """Drops, waits (latency, hang) or answers an error; None when the request goes on to its answer."""
    if fault is not None and fault.kind == "drop":
        raise _Dropped
    latency_ms = float(request.headers.get("x-mock-latency-ms", request.app[_STATE].settings.latency_ms))
    if latency_ms > 0:
        await asyncio.sleep(latency_ms / 1000)
    if fault is not None and fault.kind == "hang":
        await asyncio.sleep(fault.hang_s)
    if fault is not None and fault.kind == "status":
        return _error(fault.status, headers=_rate_limit_headers(fault.retry_after) if fault.status == 429 else None)
    return None


def _key_refused(request: web.Request, s: MockSettings, azure: bool) -> bool:
    keys = set(s.accepted_keys) | ({s.api_key} if s.api_key else set())
    if not keys:
        return False
    if azure:
        return request.headers.get("api-key") not in keys
    return request.headers.get("Authorization") not in {f"Bearer {key}" for key in keys}


def _azure_refusal(request: web.Request, s: MockSettings) -> web.Response | None:
    if "api-version" not in request.query:
        return _error(404, "Resource not found")
    deployment = request.match_info.get("deployment")
    if s.azure_deployments and deployment not in s.azure_deployments:
        return _json(
            {
                "error": {
                    "code": "DeploymentNotFound",
                    "message": (
                        "The API deployment for this resource does not exist. If you created the deployment within the "
                        "last 5 minutes, please wait a moment and try again."
                    ),
                }
            },
            404,
        )
    return None


def _azure_shaped(response: web.Response, api_version: str) -> web.Response:
    """An error of the OpenAI shape rewritten as Azure words it, with Azure's rate-limit headers."""
    if not isinstance(response.body, bytes):
        return response
    try:
        error = orjson.loads(response.body)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return response
    if "type" not in error:  # already Azure's
        return response
    status, headers = response.status, None
    message, code = error["message"], error.get("code") or str(status)
    if status == 401:
        message, code = (
            (
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                "provide a valid key for an active subscription and use a correct regional API "
                "endpoint for your resource."
            ),
            "401",
        )
    elif status == 429:
        wait = response.headers.get("Retry-After", "1")
        message, code = (
            (
                f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                f"{api_version} have exceeded call rate limit of your current OpenAI S0 pricing tier. "
                f"Please retry after {wait} seconds. Please go here: https://aka.ms/oai/quotaincrease "
                "if you would like to further increase the default rate limit."
            ),
            "429",
        )
        headers = {"retry-after": wait, "x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "0"}
    return _json({"error": {"code": code, "message": message}}, status, headers)


@web.middleware
async def _accounting(request: web.Request, handler: Any) -> web.StreamResponse:
    """Counts API requests, checks the API key and turns _Dropped into a closed connection."""
    azure = request.path.startswith("/openai/")
    if not (request.path.startswith("/v1/") or azure):
        return await handler(request)
    state = request.app[_STATE]
    stats = state.stats
    stats["requests"] += 1
    stats["in_flight"] += 1
    stats["last_authorization"] = request.headers.get("Authorization")
    stats["last_api_key"], stats["last_path"] = request.headers.get("api-key"), request.path_qs
    try:
        refusal = _azure_refusal(request, state.settings) if azure else None
        if refusal is None and _key_refused(request, state.settings, azure):
            refusal = _error(401)
        response = refusal or await handler(request)
    except _Dropped:
        state.stats["dropped"] += 1
        if request.transport is not None:
            request.transport.close()
        return web.Response()  # never sent: aiohttp finds the transport closed and moves on quietly
    except asyncio.CancelledError:  # the client went away (aiohttp cancels the handler)
        state.stats["requests_cancelled"] += 1
        raise
    finally:
        state.stats["in_flight"] -= 1  # state.stats, not stats: a reset meanwhile carries in_flight over
    if azure and response.status >= 400 and isinstance(response, web.Response):
        response = _azure_shaped(response, request.query.get("api-version", ""))
    counts = state.stats["status_counts"]
    counts[str(response.status)] = counts.get(str(response.status), 0) + 1
    return response


async def _read_json(request: web.Request) -> dict[str, Any] | web.Response:
    """The body as a dict, or the OpenAI-shaped 400 to answer with."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, "We could not parse the JSON body of your request.")
    return body if isinstance(body, dict) else _error(400, "The request body must be a JSON object.")


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _example(schema: Any, depth: int = 0) -> Any:
    """A small value that satisfies a simple JSON schema: objects, arrays, enums, scalars."""
    if not isinstance(schema, dict) or depth > 8:
        return "mock"
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _example(schema[key][0], depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        return {name: _example(sub, depth + 1) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_example(schema.get("items"), depth + 1)]
    return {"integer": 0, "number": 0.5, "boolean": True, "null": None}.get(kind, "mock")


def _answer_words(
    body: dict[str, Any], messages: list[Any], default_tokens: int, prefix: str = "Mock answer to:"
) -> tuple[list[str], str]:
    """The deterministic answer to the last user message, as words (a word is a token), and finish_reason."""
    user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), messages[-1])
    words = f"{prefix} {_text_of(user.get('content') if isinstance(user, dict) else None)[:60]}".split()
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    target = max(1, min(limit if isinstance(limit, int) else default_tokens, 8192))
    if len(words) >= target:
        return words[:target], "length" if len(words) > target else "stop"
    return words + [_FILLER[i % len(_FILLER)] for i in range(target - len(words))], "stop"


def _split(items: Any, parts: int) -> list[Any]:
    """``items`` (a str or list) cut into at most ``parts`` slices whose sizes differ by one at most."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[bounds[i] : bounds[i + 1]] for i in range(parts)]


async def _chat(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    s = state.settings
    state.stats["chat_requests"] += 1
    body = await _read_json(request)
    if isinstance(body, web.Response):
        return body
    messages, n = body.get("messages"), body.get("n") or 1
    if not isinstance(messages, list) or not messages:
        return _error(400, "'messages' is a required property and must be a non-empty array.", "messages")
    if not isinstance(n, int) or not 1 <= n <= 128:
        return _error(400, "'n' must be an integer between 1 and 128.", "n")
    stream = body.get("stream") is True
    version = request.query.get("api-version")
    if version is not None and "stream_options" in body and version < AZURE_STREAM_OPTIONS_SINCE:
        return _error(400, "Unrecognized request argument supplied: stream_options", "stream_options")
    chunks = max(1, int(request.headers.get("x-mock-chunks", s.chunks)))
    fault = _decide_fault(state, request.headers, stream, chunks)
    state.stats["streams_started"] += stream
    try:
        refusal = await _apply_fault(request, fault)
    except asyncio.CancelledError:
        state.stats["streams_cancelled"] += stream
        raise
    if refusal is not None:
        state.stats["streams_cancelled"] += stream  # so that started == completed + cancelled + cut
        return refusal

    tools, tool_choice = body.get("tools"), body.get("tool_choice")
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        response_format = {}
    tool = None
    if isinstance(tools, list) and tools and tool_choice != "none":
        wanted = tool_choice.get("function", {}).get("name") if isinstance(tool_choice, dict) else None
        functions = [t.get("function") or {} for t in tools if isinstance(t, dict)]
        function = next((f for f in functions if wanted in (None, f.get("name"))), functions[0] if functions else {})
        text = orjson.dumps(_example(function.get("parameters") or {"type": "object"})).decode()
        tool, finish, tokens, pieces = function.get("name", "tool"), "tool_calls", len(text) // 4, _split(text, chunks)
    elif response_format.get("type") in ("json_object", "json_schema"):
        schema = (response_format.get("json_schema") or {}).get("schema")
        words, _ = _answer_words(body, messages, s.default_tokens, s.answer_prefix)
        text = orjson.dumps(_example(schema) if schema else {"answer": " ".join(words)}).decode()
        finish, tokens, pieces = "stop", len(text) // 4, _split(text, chunks)
    else:
        words, finish = _answer_words(body, messages, s.default_tokens, s.answer_prefix)
        text, tokens = " ".join(words), len(words)
        pieces = [" " * (i > 0) + " ".join(group) for i, group in enumerate(_split(words, chunks))]
    prompt_tokens = max(1, sum(len(_text_of(m.get("content"))) for m in messages if isinstance(m, dict)) // 4)
    completion_tokens = max(1, tokens) * n
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    seed = body.get("seed")
    base: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "created": int(time.time()),
        "model": s.served_model or body.get("model") or "mock-model",
        "system_fingerprint": f"fp_mock{seed % 10000:04d}" if isinstance(seed, int) else "fp_mock",
    }
    call_id = f"call_{base['id'][9:]}"
    if stream:
        return await _stream(request, state, fault, body, base, n, pieces, finish, usage, call_id, tool)
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool is not None:
        function = {"name": tool, "arguments": text}
        message.update(content=None, tool_calls=[{"id": call_id, "type": "function", "function": function}])
    choices = [{"index": i, "message": message, "logprobs": None, "finish_reason": finish} for i in range(n)]
    return _json({**base, "object": "chat.completion", "choices": choices, "usage": usage})


async def _stream(
    request: web.Request,
    state: _State,
    fault: _Fault | None,
    body: dict[str, Any],
    base: dict[str, Any],
    n: int,
    pieces: list[str],
    finish: str,
    usage: dict[str, int],
    call_id: str,
    tool: str | None,
) -> web.StreamResponse:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    head = {**base, "object": "chat.completion.chunk", **({"usage": None} if include_usage else {})}

    def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return b"".join(
            b"data: "
            + orjson.dumps(
                {**head, "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
            )
            + b"\n\n"
            for i in range(n)
        )

    tps = float(request.headers.get("x-mock-tokens-per-second", state.settings.tokens_per_second))
    pause = usage["completion_tokens"] / n / len(pieces) / tps if tps > 0 else 0.0  # whole answer: tokens / tps
    cut_after = fault.cut_after if fault is not None and fault.kind == "cut" else None
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    try:
        await response.prepare(request)
        if request.path.startswith("/openai/"):  # Azure opens a stream with its prompt filter results
            await response.write(
                b"data: "
                + orjson.dumps(
                    {
                        "choices": [],
                        "created": 0,
                        "id": "",
                        "model": "",
                        "object": "",
                        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
                    }
                )
                + b"\n\n"
            )
        if tool is None:
            await response.write(event({"role": "assistant", "content": "", "refusal": None}))
        else:
            call = {"index": 0, "id": call_id, "type": "function", "function": {"name": tool, "arguments": ""}}
            await response.write(event({"role": "assistant", "content": None, "tool_calls": [call]}))
        for sent, piece in enumerate(pieces + [None]):
            if sent == cut_after or (piece is None and cut_after is not None):
                state.stats["streams_cut"] += 1
                if request.transport is not None:
                    request.transport.close()  # flushes what was written, then FIN: no last chunk, no [DONE]
                return response
            if piece is None:
                break
            if pause:
                await asyncio.sleep(pause)
            if tool is None:
                await response.write(event({"content": piece}))
            else:
                await response.write(event({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        tail = event({}, finish)
        if include_usage:
            tail += b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n"
        await response.write(tail + b"data: [DONE]\n\n")
        await response.write_eof()
    except asyncio.CancelledError:  # the client went away mid-stream (aiohttp cancels the handler)
        state.stats["streams_cancelled"] += 1
        raise
    except ConnectionError:  # ... or a write found the connection closed first
        state.stats["streams_cancelled"] += 1
        return response
    state.stats["streams_completed"] += 1
    return response


def _vector(item: Any, dim: int) -> list[float]:
    rng = random.Random(item if isinstance(item, str) else repr(item))  # str seeds hash stably (sha512)
    values = [rng.uniform(-1.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


async def _embeddings(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    state.stats["embedding_requests"] += 1
    body = await _read_json(request)
    if isinstance(body, web.Response):
        return body
    inputs = body.get("input")
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        return _error(400, "'input' is a required property.", "input")
    refusal = await _apply_fault(request, _decide_fault(state, request.headers, False, 1))
    if refusal is not None:
        return refusal
    dim = body["dimensions"] if isinstance(body.get("dimensions"), int) else state.settings.embedding_dim
    data = []
    for i, item in enumerate(inputs):
        vector: Any = _vector(item, dim)
        if body.get("encoding_format") == "base64":  # what the openai SDK asks for by default
            vector = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    tokens = max(1, sum(len(item) for item in inputs) // 4)
    model = state.settings.served_model or body.get("model") or "mock-embedding"
    return _json(
        {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    )


async def _models(request: web.Request) -> web.Response:
    name = request.app[_STATE].settings.served_model or "mock-model"
    return _json({"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "mock"}]})


async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[_STATE].stats)


async def _reset(request: web.Request) -> web.Response:
    request.app[_STATE].reset()
    return _json({"ok": True})


async def _config(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    if request.method == "POST":
        body = await _read_json(request)
        if isinstance(body, web.Response):
            return body
        try:
            state.configure(body)
        except ValueError as exc:
            return _error(400, str(exc))
    shown = dataclasses.asdict(state.settings)
    shown.update(api_key="***" if shown["api_key"] else None, accepted_keys=["***"] * len(shown["accepted_keys"]))
    return _json(shown)  # keys never leave the mock


def create_app(settings: MockSettings | None = None) -> web.Application:
    """The mock as an aiohttp application; all its state lives on the app."""
    app = web.Application(middlewares=[_accounting], client_max_size=64 * 1024 * 1024)
    app[_STATE] = _State(settings or MockSettings())
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/embeddings", _embeddings)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", _chat)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", _embeddings)
    app.router.add_get("/mock/stats", _stats)
    app.router.add_post("/mock/reset", _reset)
    app.router.add_route("*", "/mock/config", _config)
    return app


class RunningMock:
    """A mock serving in the caller's event loop; ``url`` ends in ``/v1``, like an OpenAI ``base_url``."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner, self._state, self.host, self.port = runner, runner.app[_STATE], host, port
        self.url = f"http://{host}:{port}/v1"

    def stats(self) -> dict[str, Any]:
        """A copy of the counters (the same as ``GET /mock/stats``)."""
        return {**self._state.stats, "status_counts": dict(self._state.stats["status_counts"])}

    def configure(self, **changes: Any) -> MockSettings:
        """Partial update of the settings (the same as ``POST /mock/config``)."""
        return self._state.configure(changes)

    def reset(self) -> None:
        self._state.reset()

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_mock(settings: MockSettings | None = None, host: str = "127.0.0.1", port: int = 0) -> RunningMock:
    """Starts serving in the running event loop (port 0: a free port); ``await mock.stop()`` to end."""
    runner = web.AppRunner(create_app(settings), access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return RunningMock(runner, host, runner.addresses[0][1])


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class MockServerThread:
    """A mock in a background thread with its own loop: ``with MockServerThread(settings) as mock: mock.url``.

    ``url``, ``port``, ``stats()``, ``configure(**changes)`` and ``reset()`` work as on :class:`RunningMock`.
    """

    def __init__(self, settings: MockSettings | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self._args = (settings, host, port)
        self._ready = threading.Event()
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._run, name="mock-upstream", daemon=True)
        self._error: BaseException | None = None
        self.mock: RunningMock | None = None

    def _run(self) -> None:
        try:
            self.mock = self._loop.run_until_complete(start_mock(*self._args))
        except BaseException as exc:  # handed to start(), in the caller's thread
            self._error = exc
        self._ready.set()
        if self.mock is not None:
            self._loop.run_forever()
            self._loop.run_until_complete(self.mock.stop())
        self._loop.close()

    def start(self) -> MockServerThread:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        mock = self.mock
        assert mock is not None, "_run sets either the mock or the error before _ready"
        self.url, self.port = mock.url, mock.port
        self.stats, self.configure, self.reset = mock.stats, mock.configure, mock.reset
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> MockServerThread:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _rate(text: str) -> float:
    value = _non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate in [0, 1] (0.05 means 5% of requests)")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


_CLI_OPTIONS = (  # (setting, type, help)
    ("served_model", str, "the model name answers carry (default: the request's model)"),
    ("api_key", str, "require this key (Authorization: Bearer KEY; api-key: KEY on the Azure paths); never printed"),
    ("seed", int, "seed of the random faults, for reproducible runs"),
    ("chunks", _positive_int, "content chunks per stream (default 20)"),
    ("latency_ms", _non_negative, "wait before answering, in ms (default 0)"),
    ("tokens_per_second", _non_negative, "stream pacing; 0 streams as fast as possible (default 0)"),
    ("fail_rate_429", _rate, "share of requests answered 429, in [0, 1] (default 0)"),
    ("fail_rate_500", _rate, "share of requests answered 500, in [0, 1] (default 0)"),
    ("fail_rate_timeout", _rate, "share of requests that hang for --hang-s, in [0, 1] (default 0)"),
    ("fail_rate_drop", _rate, "share of requests whose connection is closed unanswered, in [0, 1] (default 0)"),
    ("cut_stream_rate", _rate, "share of streams cut midway, in [0, 1] (default 0)"),
    ("retry_after_s", _non_negative, "the Retry-After of injected 429s, in seconds (default 1)"),
    ("hang_s", _non_negative, "how long a 'timeout' fault hangs, in seconds (default 30)"),
)


def _describe(settings: MockSettings) -> str:
    """The settings that differ from the defaults, without the API key."""
    changed = [
        f"{f.name}={getattr(settings, f.name)!r}"
        for f in dataclasses.fields(MockSettings)
        if f.name != "api_key" and getattr(settings, f.name) != f.default
    ]
    if settings.api_key:
        changed.append("API key required")
    return ", ".join(changed) or "defaults"


def _run_cli(args: argparse.Namespace) -> int:
    names = [f.name for f in dataclasses.fields(MockSettings)]
    settings = MockSettings(**{name: getattr(args, name) for name in names if hasattr(args, name)})
    failing = settings.fail_rate_429 + settings.fail_rate_500 + settings.fail_rate_timeout + settings.fail_rate_drop
    if failing > 1:
        print(f"mock-upstream: the fail rates add up to {failing:g}, more than 1", file=sys.stderr)
        return 2
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        print(f"mock-upstream: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    sock.listen(1024)  # connections wait in the backlog from now on, so the line below is true
    port = sock.getsockname()[1]
    print(f"mock upstream on http://{args.host}:{port}/v1 ({_describe(settings)})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(
            create_app(settings), sock=sock, access_log=None, print=None, handler_cancellation=True, loop=_new_loop()
        )
    return 0


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the ``mock-upstream`` subcommand; the caller then runs ``args.func(args)``."""
    parser = subparsers.add_parser(
        "mock-upstream",
        help="run the built-in OpenAI-compatible mock upstream (also Azure's paths)",
        description="An OpenAI-compatible fake upstream with latency and fault injection: /v1/chat/completions, "
        "/v1/embeddings, /v1/models, and Azure's /openai/deployments/NAME/... paths.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9100, help="port to listen on; 0 picks a free one (default 9100)")
    for name, kind, help_ in _CLI_OPTIONS:
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(MockSettings, name), help=help_)
    parser.set_defaults(func=_run_cli)
    return parser
