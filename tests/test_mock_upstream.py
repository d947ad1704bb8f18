"""The mock upstream over real HTTP (port 0), read by the official openai SDK, sync and async."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx
import openai
import pytest
import pytest_asyncio

from gateway.mock_upstream import MockServerThread, MockSettings, register_cli, start_mock

USER = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def thread_mock():
    with MockServerThread(MockSettings(served_model="light-model")) as mock:
        yield mock


@pytest.fixture
def sync_client(thread_mock):
    thread_mock.reset()
    with openai.OpenAI(base_url=thread_mock.url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest_asyncio.fixture
async def mock():
    running = await start_mock(MockSettings(served_model="heavy-model", seed=7))
    yield running
    await running.stop()


@pytest_asyncio.fixture
async def client(mock):
    async with openai.AsyncOpenAI(base_url=mock.url, api_key="sk-test", max_retries=0) as sdk:
        yield sdk


async def wait_for(predicate, timeout: float = 5.0) -> None:
    """Polls (bounded) until predicate() is true: for effects that land after the client has moved on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_sync_non_stream_is_a_real_chat_completion(sync_client, thread_mock):
    first = sync_client.chat.completions.create(model="gpt-x", messages=USER, n=2, seed=42)
    again = sync_client.chat.completions.create(model="gpt-x", messages=USER)
    assert first.id.startswith("chatcmpl-") and first.object == "chat.completion"
    assert first.model == "light-model" and first.system_fingerprint
    assert [c.index for c in first.choices] == [0, 1]
    assert first.choices[0].message.content.startswith("Mock answer to: What is the capital of France?")
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].finish_reason == "stop"
    usage = again.usage
    assert usage.prompt_tokens == len(USER[0]["content"]) // 4
    assert usage.completion_tokens == 30 and usage.total_tokens == usage.prompt_tokens + 30
    assert thread_mock.stats()["status_counts"] == {"200": 2}


def test_sync_stream_with_usage_and_max_tokens(sync_client):
    stream = sync_client.chat.completions.create(
        model="gpt-x", messages=USER, stream=True, max_tokens=50, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 50
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 50 and len(chunks) == 1 + 20 + 1 + 1


@pytest.mark.asyncio
async def test_async_stream_matches_non_stream(client, mock):
    whole = await client.chat.completions.create(model="gpt-x", messages=USER)
    stream = await client.chat.completions.create(model="gpt-x", messages=USER, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.usage is None and c.model == "heavy-model" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    stats = mock.stats()
    assert stats["streams_started"] == stats["streams_completed"] == 1 and stats["in_flight"] == 0


@pytest.mark.asyncio
async def test_tools_give_tool_calls(client):
    answer = await client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL])
    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls" and answer.choices[0].message.content is None
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"]
    stream = await client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL], stream=True)
    deltas = [c.choices[0] async for c in stream]
    first = deltas[0].delta.tool_calls[0]
    assert first.id.startswith("call_") and first.function.name == "get_weather"
    arguments = "".join(d.delta.tool_calls[0].function.arguments for d in deltas if d.delta.tool_calls)
    assert json.loads(arguments) == json.loads(call.function.arguments)
    assert deltas[-1].finish_reason == "tool_calls"
    plain = await client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL], tool_choice="none")
    assert plain.choices[0].message.tool_calls is None


def test_json_response_formats(sync_client):
    loose = sync_client.chat.completions.create(model="m", messages=USER, response_format={"type": "json_object"})
    assert "answer" in json.loads(loose.choices[0].message.content)
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "ok": {"type": "boolean"}}}
    strict = sync_client.chat.completions.create(
        model="m",
        messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )
    assert set(json.loads(strict.choices[0].message.content)) == {"city", "ok"}


def test_embeddings_and_models(sync_client):
    first = sync_client.embeddings.create(model="emb", input=["hello", "world"])  # SDK asks for base64
    again = sync_client.embeddings.create(model="emb", input="hello", encoding_format="float")
    assert len(first.data) == 2 and len(first.data[0].embedding) == 8
    assert first.data[0].embedding == pytest.approx(again.data[0].embedding, abs=1e-6)
    assert first.data[0].embedding != first.data[1].embedding and first.usage.total_tokens >= 1
    assert [m.id for m in sync_client.models.list()] == ["light-model"]


@pytest.mark.asyncio
async def test_injected_429_carries_retry_after(client, mock):
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="m", messages=USER, extra_headers={"x-mock-status": "429", "x-mock-retry-after": "2.5"}
        )
    headers = caught.value.response.headers
    assert headers["retry-after"] == "3" and headers["retry-after-ms"] == "2500"
    assert headers["x-ratelimit-reset-requests"] == "2.5s"
    assert caught.value.body["code"] == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=USER, extra_headers={"x-mock-status": "503"})
    assert mock.stats()["status_counts"] == {"429": 1, "503": 1}


@pytest.mark.asyncio
async def test_drop_is_a_connection_error_not_a_500(client, mock):
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=USER, extra_headers={"x-mock-drop": "1"})
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(f"{mock.url}/chat/completions", json={"messages": USER}, headers={"x-mock-drop": "1"})
    stats = mock.stats()
    assert stats["dropped"] == 2 and stats["status_counts"] == {}


@pytest.mark.asyncio
async def test_cut_stream_ends_without_done(client, mock):
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, extra_headers={"x-mock-cut-after": "3"}
    )
    received = []
    with pytest.raises((openai.APIConnectionError, httpx.TransportError)):
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 1 + 3
    mock.configure(cut_stream_rate=1.0)  # random cuts land halfway: after chunks // 2 content chunks
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    received = []
    with pytest.raises((openai.APIConnectionError, httpx.TransportError)):
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 1 + 10
    stats = mock.stats()
    assert stats["streams_cut"] == 2 and stats["streams_started"] == 2 and stats["in_flight"] == 0


@pytest.mark.asyncio
async def test_config_changes_behaviour_at_run_time(client, mock):
    async with httpx.AsyncClient(base_url=mock.url.removesuffix("/v1")) as http:
        changed = (await http.post("/mock/config", json={"fail_first_n": 2, "fail_status": 500})).json()
        assert changed["fail_first_n"] == 2 and changed["served_model"] == "heavy-model"
        assert (await http.post("/mock/config", json={"nope": 1})).status_code == 400
        assert (await http.post("/mock/config", json={"chunks": "many"})).status_code == 400
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="m", messages=USER)
        await client.chat.completions.create(model="m", messages=USER)
        await http.post("/mock/config", json={"fail_first_n": 0, "fail_rate_429": 1, "retry_after_s": 0})
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="m", messages=USER)
        await http.post("/mock/config", json={"fail_rate_429": 0, "fail_every_n": 2, "fail_status": "drop"})
        await client.chat.completions.create(model="m", messages=USER)
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model="m", messages=USER)
        fast = await client.chat.completions.with_raw_response.create(
            model="m", messages=USER, extra_headers={"x-mock-hang-s": "0.01"}
        )  # headers beat the config
        assert fast.status_code == 200
        stats = (await http.get("/mock/stats")).json()
        assert stats["status_counts"] == {"500": 2, "200": 3, "429": 1} and stats["dropped"] == 1
        await http.post("/mock/reset")
        assert (await http.get("/mock/stats")).json()["requests"] == 0
        assert (await http.get("/mock/config")).json()["fail_status"] == "drop"


@pytest.mark.asyncio
async def test_random_faults_are_reproducible_with_a_seed(mock):
    async def statuses() -> list[int]:
        mock.configure(seed=3, fail_rate_500=0.3, fail_rate_429=0.2)
        async with httpx.AsyncClient() as http:
            return [
                (await http.post(f"{mock.url}/chat/completions", json={"messages": USER})).status_code
                for _ in range(30)
            ]

    first = await statuses()
    assert first == await statuses()
    assert {200, 429, 500} == set(first)


@pytest.mark.asyncio
async def test_timeout_hangs_until_the_client_gives_up(client, mock):
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(
            model="m", messages=USER, timeout=0.2, extra_headers={"x-mock-hang-s": "30"}
        )
    await wait_for(lambda: mock.stats()["requests_cancelled"] == 1)
    assert mock.stats()["in_flight"] == 0


@pytest.mark.asyncio
async def test_client_disconnect_mid_stream_is_counted(mock):
    mock.configure(tokens_per_second=200)  # 30 tokens: a 150 ms stream
    async with httpx.AsyncClient() as http:
        async with http.stream(
            "POST", f"{mock.url}/chat/completions", json={"messages": USER, "stream": True}
        ) as response:
            lines = response.aiter_lines()
            assert (await anext(lines)).startswith("data: ")
    await wait_for(lambda: mock.stats()["streams_cancelled"] == 1)
    stats = mock.stats()
    assert stats["streams_completed"] == 0 and stats["in_flight"] == 0


@pytest.mark.asyncio
async def test_api_key_and_bad_requests():
    running = await start_mock(MockSettings(api_key="upstream-key"))
    try:
        async with httpx.AsyncClient(base_url=running.url) as http:
            wrong = await http.post("/chat/completions", json={"messages": USER}, headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
            auth = {"Authorization": "Bearer upstream-key"}
            bad_json = await http.post("/chat/completions", content=b"{nope", headers=auth)
            no_messages = await http.post("/chat/completions", json={"model": "m"}, headers=auth)
            assert bad_json.status_code == no_messages.status_code == 400
            error = no_messages.json()["error"]
            assert error["type"] == "invalid_request_error" and error["param"] == "messages"
            assert set(error) == {"message", "type", "param", "code"}
        assert running.stats()["last_authorization"] == "Bearer upstream-key"
    finally:
        await running.stop()


def test_register_cli_sets_func_and_options():
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers())
    args = parser.parse_args(["mock-upstream", "--served-model", "light-model", "--fail-rate-429", "0.5"])
    assert callable(args.func) and args.port == 9100
    assert args.served_model == "light-model" and args.fail_rate_429 == 0.5 and args.chunks == 20
