"""Pooled HTTP clients for the upstreams, behind one small interface.

    transport = make_transport("aiohttp", max_connections=1000)
    answer = await transport.post(url, body, headers, timeouts)          # UpstreamAnswer
    stream = await transport.open_stream(url, body, headers, timeouts)   # UpstreamStream
    async for chunk in stream.chunks(): ...
    await stream.aclose()

One client (one connection pool) serves every deployment. Two implementations: aiohttp, the default
because it is what meets the throughput goal (loadtests/README.md), and httpx (optionally over the
httpx-aiohttp transport), kept to compare. Both map their exceptions onto the gateway's:
UpstreamConnectError (refused, reset, dropped mid-answer), UpstreamTimeout, and UpstreamStatus for a
non-2xx answer — a stream's error body is read before raising, so no half-open stream escapes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Protocol

import aiohttp
import httpx

from gateway.config import Timeouts
from gateway.errors import UpstreamConnectError, UpstreamStatus, UpstreamTimeout


@dataclass(slots=True)
class UpstreamAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


class UpstreamStream:
    def __init__(
        self, status: int, headers: dict[str, str], chunks: AsyncIterator[bytes], close: Callable[[], Awaitable[None]]
    ) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._close = close
        self.closed = False

    def chunks(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self._close()


class Transport(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str], timeouts: Timeouts) -> UpstreamAnswer: ...
    async def open_stream(
        self, url: str, body: bytes, headers: dict[str, str], timeouts: Timeouts
    ) -> UpstreamStream: ...
    def pool_stats(self) -> dict[str, int]: ...
    async def aclose(self) -> None: ...


class _MapErrors:
    """Turns a client library's timeouts and connection errors into the gateway's, in one place per library
    and phase. Stateless, so one instance serves every call."""

    __slots__ = ("timeouts", "connection", "timeout_message", "connection_message")

    def __init__(self, timeouts: tuple, connection: tuple, timeout_message: str, connection_message: str) -> None:
        self.timeouts, self.connection = timeouts, connection
        self.timeout_message, self.connection_message = timeout_message, connection_message

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> None:  # never suppresses: maps, or lets the error through
        if kind is None:
            return
        cause = exc.__context__
        if isinstance(cause, aiohttp.ClientError) and not isinstance(cause, asyncio.TimeoutError):
            # httpx-aiohttp reports refused and dropped connections as httpx.ConnectTimeout
            raise UpstreamConnectError(f"{self.connection_message} ({type(cause).__name__})") from exc
        if issubclass(kind, self.timeouts):
            raise UpstreamTimeout(self.timeout_message) from exc
        if issubclass(kind, self.connection):
            raise UpstreamConnectError(f"{self.connection_message} ({kind.__name__})") from exc


_AIOHTTP_CALL = _MapErrors(
    (asyncio.TimeoutError,),
    (aiohttp.ClientError,),
    "the upstream did not answer in time",
    "could not reach the upstream",
)
_AIOHTTP_STREAM = _MapErrors(
    (asyncio.TimeoutError,),
    (aiohttp.ClientError,),
    "the upstream stalled mid-stream",
    "the upstream dropped the stream",
)
_HTTPX_CALL = _MapErrors(
    (httpx.TimeoutException,),
    (httpx.TransportError,),
    "the upstream did not answer in time",
    "could not reach the upstream",
)
_HTTPX_STREAM = _MapErrors(
    (httpx.TimeoutException,),
    (httpx.TransportError,),
    "the upstream stalled mid-stream",
    "the upstream dropped the stream",
)


def _raise_for_status(status: int, body: bytes, headers: dict[str, str]) -> None:
    if status >= 400:
        raise UpstreamStatus(status, body, headers)


class AiohttpTransport:
    def __init__(self, max_connections: int = 1000) -> None:
        self._connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=self._connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
        )
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(timeouts)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect, sock_read=timeouts.read)
            self._timeouts[timeouts] = timeout
        return timeout

    async def post(self, url, body, headers, timeouts) -> UpstreamAnswer:
        with _AIOHTTP_CALL:
            async with self._session.post(url, data=body, headers=headers, timeout=self._timeout(timeouts)) as r:
                answer = UpstreamAnswer(r.status, dict(r.headers), await r.read())
        _raise_for_status(answer.status, answer.body, answer.headers)
        return answer

    async def open_stream(self, url, body, headers, timeouts) -> UpstreamStream:
        with _AIOHTTP_CALL:
            response = await self._session.post(url, data=body, headers=headers, timeout=self._timeout(timeouts))
        if response.status >= 400:
            try:
                data = await response.read()
            except (TimeoutError, aiohttp.ClientError):
                data = b""
            finally:
                response.release()
            raise UpstreamStatus(response.status, data, dict(response.headers))

        async def chunks() -> AsyncIterator[bytes]:
            with _AIOHTTP_STREAM:
                async for chunk in response.content.iter_any():
                    yield chunk

        async def close() -> None:
            response.close() if not response.content.at_eof() else response.release()

        return UpstreamStream(response.status, dict(response.headers), chunks(), close)

    def pool_stats(self) -> dict[str, int]:
        acquired = len(getattr(self._connector, "_acquired", ()))
        idle = sum(len(v) for v in getattr(self._connector, "_conns", {}).values())
        return {"in_use": acquired, "idle": idle}

    async def aclose(self) -> None:
        await self._session.close()


class HttpxTransport:
    def __init__(self, max_connections: int = 1000, over_aiohttp: bool = False) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        transport = None
        if over_aiohttp:
            from httpx_aiohttp import AiohttpTransport as _AiohttpTransport

            transport = _AiohttpTransport(
                client=lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max_connections))
            )
        self._client = httpx.AsyncClient(limits=limits, transport=transport, timeout=None)

    @staticmethod
    def _timeout(timeouts: Timeouts) -> httpx.Timeout:
        return httpx.Timeout(connect=timeouts.connect, read=timeouts.read, write=timeouts.read, pool=timeouts.connect)

    async def post(self, url, body, headers, timeouts) -> UpstreamAnswer:
        with _HTTPX_CALL:
            r = await self._client.post(url, content=body, headers=headers, timeout=self._timeout(timeouts))
        answer = UpstreamAnswer(r.status_code, dict(r.headers), r.content)
        _raise_for_status(answer.status, answer.body, answer.headers)
        return answer

    async def open_stream(self, url, body, headers, timeouts) -> UpstreamStream:
        request = self._client.build_request(
            "POST", url, content=body, headers=headers, timeout=self._timeout(timeouts)
        )
        with _HTTPX_CALL:
            response = await self._client.send(request, stream=True)
            if response.status_code >= 400:
                data = await response.aread()
                await response.aclose()
                raise UpstreamStatus(response.status_code, data, dict(response.headers))

        async def chunks() -> AsyncIterator[bytes]:
            with _HTTPX_STREAM:
                async for chunk in response.aiter_raw():
                    yield chunk

        return UpstreamStream(response.status_code, dict(response.headers), chunks(), response.aclose)

    def pool_stats(self) -> dict[str, int]:
        pool = getattr(self._client._transport, "_pool", None)
        connections = getattr(pool, "connections", [])
        in_use = sum(1 for c in connections if not c.is_idle())
        return {"in_use": in_use, "idle": len(connections) - in_use}

    async def aclose(self) -> None:
        await self._client.aclose()


def make_transport(kind: str, max_connections: int = 1000) -> Transport:
    if kind == "aiohttp":
        return AiohttpTransport(max_connections)
    if kind == "httpx":
        return HttpxTransport(max_connections)
    if kind == "httpx-aiohttp":
        return HttpxTransport(max_connections, over_aiohttp=True)
    raise ValueError(f"unknown upstream client {kind!r}")
