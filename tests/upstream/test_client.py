"""Each upstream client maps its library's failures onto the gateway's errors, the same way."""

import socket

import orjson
import pytest

from gateway.config import Timeouts
from gateway.errors import UpstreamConnectError, UpstreamStatus, UpstreamTimeout
from gateway.mock_upstream import MockServerThread, MockSettings
from gateway.upstream.client import make_transport

KINDS = ["aiohttp", "httpx", "httpx-aiohttp"]
QUICK = Timeouts(connect=1, read=0.3)
CHAT = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
STREAM = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def mock():
    with MockServerThread(MockSettings(served_model="m", chunks=10)) as server:
        yield server


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", KINDS)
async def test_answers_and_failures_map_alike(kind, mock):
    transport = make_transport(kind, 10)
    url = mock.url + "/chat/completions"
    try:
        answer = await transport.post(url, CHAT, JSON, QUICK)
        assert answer.status == 200 and orjson.loads(answer.body)["model"] == "m"
        with pytest.raises(UpstreamStatus) as status:
            await transport.post(url, CHAT, {**JSON, "x-mock-status": "503"}, QUICK)
        assert status.value.status == 503 and status.value.retryable
        with pytest.raises(UpstreamTimeout):
            await transport.post(url, CHAT, {**JSON, "x-mock-hang-s": "2"}, QUICK)
        with pytest.raises(UpstreamConnectError):
            await transport.post(url, CHAT, {**JSON, "x-mock-drop": "1"}, QUICK)
        with pytest.raises(UpstreamConnectError):
            await transport.post(f"http://127.0.0.1:{closed_port()}/v1/chat/completions", CHAT, JSON, QUICK)
    finally:
        await transport.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_cut_midway_is_a_connection_error(kind, mock):
    transport = make_transport(kind, 10)
    try:
        stream = await transport.open_stream(
            mock.url + "/chat/completions", STREAM, {**JSON, "x-mock-cut-after": "3"}, QUICK
        )
        received = []
        with pytest.raises(UpstreamConnectError):
            async for chunk in stream.chunks():
                received.append(chunk)
        await stream.aclose()
        assert b"".join(received).count(b"data: ") >= 1
        with pytest.raises(UpstreamStatus):
            await transport.open_stream(mock.url + "/chat/completions", STREAM, {**JSON, "x-mock-status": "429"}, QUICK)
    finally:
        await transport.aclose()
