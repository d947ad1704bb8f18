"""Server-sent event streams through the gateway: intact content, a clean end, a client that goes away
closing the upstream request, a failure mid-stream ending the stream with an error event, and 200
concurrent streams all intact.
"""

from __future__ import annotations

import asyncio

import httpx
import openai
import orjson
import pytest

from gateway.mock_upstream import MockServerThread, MockSettings
from tests.conftest import LIGHT_MODEL, TEST_KEY, async_wait_until, base_config, wait_until

AUTH = {"authorization": f"Bearer {TEST_KEY}"}


def question(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Where is parcel number {i}?"}]


def expected_content(mock, messages) -> str:
    """The mock's answer is deterministic: its non-streamed content is what a stream must add up to."""
    direct = httpx.post(mock.url + "/chat/completions", json={"model": LIGHT_MODEL, "messages": messages})
    return direct.json()["choices"][0]["message"]["content"]


def events(raw: bytes) -> list[bytes]:
    return [event for event in raw.split(b"\n\n") if event]


@pytest.fixture
def gw(start_gateway, light_mock, heavy_mock):
    return start_gateway(base_config(light_mock.url, heavy_mock.url, cache={"enabled": False}))


def test_sdk_stream_adds_up_to_the_answer(gw, light_mock):
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)
    stream = sdk.chat.completions.create(model="gpt-3.5-turbo", messages=question(1), stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected_content(light_mock, question(1))
    assert (
        [c.choices[0].finish_reason for c in chunks].count("stop")
        == 1
        == (chunks[-1].choices[0].finish_reason == "stop")
    )
    assert len({c.id for c in chunks}) == 1 and chunks[0].model == LIGHT_MODEL


def test_raw_stream_is_well_formed_sse(gw):
    body = {"model": "gpt-3.5-turbo", "messages": question(2), "stream": True}
    with httpx.stream("POST", gw.base_url + "/chat/completions", headers=AUTH, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-request-id"]
        raw = response.read()
    parts = events(raw)
    assert parts[-1] == b"data: [DONE]" and raw.endswith(b"\n\n")
    for event in parts[:-1]:
        assert event.startswith(b"data: ") and orjson.loads(event[6:])["object"] == "chat.completion.chunk"


def test_a_client_disconnect_closes_the_upstream_stream(start_gateway, heavy_mock):
    with MockServerThread(MockSettings(served_model=LIGHT_MODEL, tokens_per_second=20, chunks=50)) as slow:
        gw = start_gateway(base_config(slow.url, heavy_mock.url, cache={"enabled": False}))
        body = {"model": "gpt-3.5-turbo", "messages": question(3), "stream": True}
        with httpx.stream("POST", gw.base_url + "/chat/completions", headers=AUTH, json=body) as response:
            received = b""
            for chunk in response.iter_bytes():
                received += chunk
                if received.count(b"\n\n") >= 3:
                    break  # leave mid-stream: the answer takes ~1.5 s at 20 tokens/s
        assert b"[DONE]" not in received
        assert wait_until(lambda: slow.stats()["streams_cancelled"] >= 1, timeout=10)
        stats = slow.stats()
        assert stats["streams_completed"] == 0 and stats["in_flight"] == 0
        assert wait_until(lambda: 'status="499"' in httpx.get(gw.url + "/metrics").text, timeout=10)


def test_an_upstream_cut_mid_stream_ends_with_an_error_event(start_gateway, light_mock, heavy_mock):
    deployments = {"cut": {"base_url": light_mock.url, "model": LIGHT_MODEL, "headers": {"x-mock-cut-after": "3"}}}
    gw = start_gateway(
        base_config(
            light_mock.url,
            heavy_mock.url,
            cache={"enabled": False},
            deployments=deployments,
            models={"cut": {"deployments": ["cut"]}},
        )
    )
    response = httpx.post(
        gw.base_url + "/chat/completions", headers=AUTH, json={"model": "cut", "messages": question(4), "stream": True}
    )
    assert response.status_code == 200  # the first bytes had already gone out
    parts = events(response.content)
    assert b"[DONE]" not in response.content
    error = orjson.loads(parts[-1][6:])["error"]
    assert error["type"] == "api_error" and "incomplete" in error["message"]
    assert light_mock.stats()["streams_cut"] == 1

    sdk = openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)
    with pytest.raises(openai.APIError, match="incomplete"):
        for _ in sdk.chat.completions.create(model="cut", messages=question(4), stream=True):
            pass


async def test_200_concurrent_streams_complete_intact(gw, light_mock):
    n = 200
    async with httpx.AsyncClient() as direct:

        async def expected(i):
            r = await direct.post(
                light_mock.url + "/chat/completions", json={"model": LIGHT_MODEL, "messages": question(i)}
            )
            return r.json()["choices"][0]["message"]["content"]

        wanted = await asyncio.gather(*(expected(i) for i in range(n)))
    assert len(set(wanted)) == n

    sdk = openai.AsyncOpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=60)

    async def one(i: int) -> tuple[str, str | None, int]:
        stream = await sdk.chat.completions.create(model="gpt-3.5-turbo", messages=question(i), stream=True)
        text, finish, count = [], None, 0
        async for chunk in stream:
            count += 1
            assert chunk.usage is None
            text.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        return "".join(text), finish, count

    results = await asyncio.gather(*(one(i) for i in range(n)))
    await sdk.close()
    for i, (text, finish, count) in enumerate(results):
        assert text == wanted[i] and finish == "stop" and count == 22  # role + 20 pieces + finish
    before = light_mock.stats()
    assert await async_wait_until(lambda: light_mock.stats()["in_flight"] == 0)
    assert before["streams_cancelled"] == 0 and before["streams_completed"] == n
