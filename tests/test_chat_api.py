"""The core request path through real HTTP on real ports, with the official openai SDK (sync and async).

Between the gateway and the built-in mock sits a small upstream of this file's own (`RecordingUpstream`):
it relays bytes unchanged and records what the gateway sent and the exact bytes the mock answered, so
the tests can check that the caller's fields arrive untouched and that the answer comes back byte-for-byte.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading

import httpx
import openai
import orjson
import pytest
from aiohttp import ClientSession, web

from gateway.mock_upstream import MockServerThread, MockSettings
from tests.conftest import LIGHT_MODEL, TEST_KEY, GatewayServer, base_config, metric

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
HELLO = [{"role": "user", "content": "Where is my parcel?"}]


class RecordingUpstream:
    """An upstream in front of another (a mock): records each request (method, path, headers, JSON body)
    and the exact bytes answered, and relays those bytes as they come."""

    def __init__(self, target: str) -> None:
        self.target = target.removesuffix("/v1")
        self.requests: list[tuple[str, str, dict[str, str], object]] = []
        self.answers: list[bytearray] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="recording-upstream", daemon=True)

    async def _start(self) -> int:
        self._session = ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return self._runner.addresses[0][1]

    async def _stop(self) -> None:
        await self._session.close()
        await self._runner.cleanup()

    def __enter__(self) -> "RecordingUpstream":
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append((request.method, request.path, dict(request.headers), orjson.loads(raw) if raw else None))
        headers = {name: request.headers[name] for name in ("content-type", "authorization") if name in request.headers}
        out = bytearray()
        self.answers.append(out)  # filled before each write: complete once the gateway has read the answer
        async with self._session.request(
            request.method, self.target + request.path, data=raw or None, headers=headers
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status, headers={"content-type": upstream.headers.get("content-type", "")}
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                out += chunk
                await response.write(chunk)
            await response.write_eof()
        return response

    @property
    def last_body(self) -> dict:
        return self.requests[-1][3]


@pytest.fixture(scope="module")
def light_mock():
    with MockServerThread(MockSettings(served_model=LIGHT_MODEL)) as mock:
        yield mock


@pytest.fixture(scope="module")
def recorder(light_mock):
    with RecordingUpstream(light_mock.url) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gw(recorder, embedder):
    """One gateway for the module (starts cost ~1 s). Cache off: every request must reach the upstream."""
    config = base_config(
        recorder.url,
        recorder.url,
        cache={"enabled": False},
        deployments={"embed": {"base_url": recorder.url, "model": "text-embedding-3-small"}},
        models={"text-embedding-3-small": {"deployments": ["embed"]}},
    )
    with GatewayServer(config, embedder=embedder) as server:
        yield server


@pytest.fixture(scope="module")
def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)


@pytest.fixture
def async_sdk(gw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)


def is_usage_event(event: bytes) -> bool:
    return b'"choices":[]' in event and b'"usage":{' in event


# --- non-streaming ---------------------------------------------------------------------------------------


def test_sync_sdk_answer_and_usage(sdk, recorder):
    answer = sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO)
    assert answer.model == LIGHT_MODEL  # served by the light deployment
    assert answer.choices[0].message.content.startswith("Mock answer to: Where is my parcel?")
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens > 0
    assert recorder.last_body == {"model": LIGHT_MODEL, "messages": HELLO}  # the alias replaced, nothing added


async def test_async_sdk_answer(async_sdk):
    answer = await async_sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO)
    assert answer.choices[0].message.content.startswith("Mock answer to: Where is my parcel?")


def test_the_answer_is_the_upstream_body_byte_for_byte(gw, recorder):
    response = httpx.post(
        gw.base_url + "/chat/completions", headers=AUTH, json={"model": "gpt-3.5-turbo", "messages": HELLO, "seed": 3}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == bytes(recorder.answers[-1])
    assert response.headers["x-request-id"] and float(response.headers["x-gateway-overhead-ms"]) >= 0


def test_the_answer_matches_a_direct_call_to_the_mock(gw, light_mock):
    """Same deterministic request straight to the mock: equal bytes once the per-call id and time are set aside."""
    body = {"model": LIGHT_MODEL, "messages": HELLO, "seed": 11, "max_tokens": 12}
    direct = httpx.post(light_mock.url + "/chat/completions", json=body)
    via = httpx.post(gw.base_url + "/chat/completions", headers=AUTH, json={**body, "model": "gpt-3.5-turbo"})

    def normalise(raw: bytes) -> bytes:
        return re.sub(rb'"created":\d+', b'"created":0', re.sub(rb'"chatcmpl-[0-9a-f]+"', b'"ID"', raw))

    assert direct.status_code == via.status_code == 200
    assert normalise(via.content) == normalise(direct.content)


def test_the_callers_fields_are_forwarded_untouched(sdk, recorder):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "track_parcel",
                "description": "Where a parcel is",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}, "express": {"type": "boolean"}},
                    "required": ["order_id"],
                },
            },
        }
    ]
    fields = dict(
        tools=tools,
        tool_choice="auto",
        logprobs=True,
        top_logprobs=2,
        n=2,
        seed=42,
        user="user-7",
        temperature=0.3,
        top_p=0.9,
        max_tokens=64,
        stop=["\n\n"],
        presence_penalty=0.1,
        frequency_penalty=0.2,
        logit_bias={"50256": -100},
        metadata={"team": "support"},
        parallel_tool_calls=False,
    )
    answer = sdk.chat.completions.create(
        model="gpt-3.5-turbo",
        messages=HELLO,
        **fields,
        extra_body={"vendor_extension": {"nested": [1, 2.5, None, "é"]}},
    )
    assert recorder.last_body == {
        "model": LIGHT_MODEL,
        "messages": HELLO,
        **fields,
        "vendor_extension": {"nested": [1, 2.5, None, "é"]},
    }
    assert len(answer.choices) == 2
    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "track_parcel"
    assert json.loads(call.function.arguments) == {"order_id": "mock", "express": True}


def test_response_format_json_schema_passes_through(sdk, recorder):
    schema = {"type": "object", "properties": {"refund_days": {"type": "integer"}, "reason": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "refund", "schema": schema, "strict": True}}
    answer = sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO, response_format=response_format)
    assert recorder.last_body["response_format"] == response_format
    assert json.loads(answer.choices[0].message.content) == {"refund_days": 0, "reason": "mock"}


def test_multimodal_content_parts_pass_through(sdk, recorder):
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    sdk.chat.completions.create(model="gpt-3.5-turbo", messages=messages)
    assert recorder.last_body["messages"] == messages


# --- streaming: usage read from the answer, the extra chunk hidden unless asked for --------------------------


def test_stream_without_include_usage_hides_the_usage_chunk(gw, sdk, recorder):
    before = metric(httpx.get(gw.url + "/metrics").text, "gateway_tokens_total", kind="completion")
    chunks = list(sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO, stream=True))
    assert recorder.last_body["stream_options"] == {"include_usage": True}  # the gateway asked for it...
    assert any(is_usage_event(event) for event in bytes(recorder.answers[-1]).split(b"\n\n"))
    assert all(chunk.usage is None and chunk.choices for chunk in chunks)  # ...and the client never sees it
    assert chunks[-1].choices[0].finish_reason == "stop"
    after = metric(httpx.get(gw.url + "/metrics").text, "gateway_tokens_total", kind="completion")
    assert after - before == 30  # ...but the gateway read it: the mock's 30-word answer


def test_stream_with_include_usage_gets_the_usage_chunk(sdk, recorder):
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-3.5-turbo", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert recorder.last_body["stream_options"] == {"include_usage": True}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 30
    assert sum(1 for chunk in chunks if chunk.usage is not None) == 1


def test_stream_bytes_pass_through(gw, recorder):
    """Asked for usage: exactly the upstream's bytes. Not asked: the same minus the usage event and the
    "usage":null the gateway's own ask made the upstream add to each chunk (OpenAI sends neither then)."""
    body = {"model": "gpt-3.5-turbo", "messages": HELLO, "stream": True}
    with_usage = httpx.post(
        gw.base_url + "/chat/completions", headers=AUTH, json={**body, "stream_options": {"include_usage": True}}
    )
    assert with_usage.headers["content-type"].startswith("text/event-stream")
    assert with_usage.content == bytes(recorder.answers[-1])
    assert with_usage.content.endswith(b"data: [DONE]\n\n")

    without = httpx.post(gw.base_url + "/chat/completions", headers=AUTH, json=body)
    upstream = bytes(recorder.answers[-1]).split(b"\n\n")
    kept = [event for event in upstream if not is_usage_event(event)]
    assert len(kept) == len(upstream) - 1
    expected = b"\n\n".join(kept).replace(b',"usage":null', b"").replace(b'"usage":null,', b"")
    assert without.content == expected and b'"usage"' not in without.content


async def test_async_stream_with_tools(async_sdk, recorder):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "refund",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
                },
            },
        }
    ]
    stream = await async_sdk.chat.completions.create(
        model="gpt-3.5-turbo",
        messages=HELLO,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "refund"}},
        stream=True,
    )
    arguments, names, finish = "", set(), None
    async for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or ():
            names.add(call.function.name) if call.function.name else None
            arguments += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert recorder.last_body["tools"] == tools
    assert names == {"refund"} and finish == "tool_calls"
    assert json.loads(arguments) == {"order_id": "mock", "amount": 0.5}


async def test_async_stream_with_response_format(async_sdk):
    stream = await async_sdk.chat.completions.create(
        model="gpt-3.5-turbo", messages=HELLO, stream=True, response_format={"type": "json_object"}
    )
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
    assert json.loads(text)["answer"].startswith("Mock answer to: Where is my parcel?")


# --- other endpoints -------------------------------------------------------------------------------------


def test_models_lists_the_public_aliases(sdk):
    assert sorted(model.id for model in sdk.models.list()) == ["gpt-3.5-turbo", "support", "text-embedding-3-small"]


def test_models_needs_a_key(gw):
    response = httpx.get(gw.base_url + "/models")
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"


def test_embeddings_pass_through(gw, sdk, recorder):
    result = sdk.embeddings.create(model="text-embedding-3-small", input=["refund policy", "where is my parcel"])
    assert [item.index for item in result.data] == [0, 1] and len(result.data[0].embedding) == 8
    assert recorder.requests[-1][1] == "/v1/embeddings"
    sent = recorder.last_body
    assert sent["model"] == "text-embedding-3-small" and sent["input"] == ["refund policy", "where is my parcel"]
    raw = httpx.post(
        gw.base_url + "/embeddings",
        headers=AUTH,
        json={"model": "text-embedding-3-small", "input": "hello", "dimensions": 4},
    )
    assert raw.status_code == 200 and raw.content == bytes(recorder.answers[-1])
    assert len(raw.json()["data"][0]["embedding"]) == 4


def test_health_readiness_and_metrics(gw, sdk):
    assert httpx.get(gw.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gw.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    checks = ready.json()["checks"]
    model = checks["embedding_model"].split()[0]  # the router reads the vector only where it has weights for it
    assert checks["routing"] == (f"embedding+features ({model})" if model != "none" else checks["routing"])
    sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO)
    scrape = httpx.get(gw.url + "/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    assert metric(text, "gateway_requests_total", model="gpt-3.5-turbo", status="200") >= 1
    assert metric(text, "gateway_overhead_seconds_count") >= 1
    assert metric(text, "gateway_upstream_duration_seconds_count", deployment="light") >= 1
    assert "Where is my parcel" not in text  # no user text in labels
