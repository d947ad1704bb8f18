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
    def __init__(self, status: int, headers: dict[str, str], chunks: AsyncIterator[bytes],
                 close: Callable[[], Awaitable[None]]) -> None:
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
    async def open_stream(self, url: str, body: bytes, headers: dict[str, str],
                          timeouts: Timeouts) -> UpstreamStream: ...
    def pool_stats(self) -> dict[str, int]: ...
    async def aclose(self) -> None: ...


def _raise_for_status(status: int, body: bytes, headers: dict[str, str]) -> None:
    if status >= 400:
        raise UpstreamStatus(status, body, headers)


class AiohttpTransport:
    def __init__(self, max_connections: int = 1000) -> None:
        self._connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=self._connector, auto_decompress=True,
                                              skip_auto_headers=("User-Agent",))
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(timeouts)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect, sock_read=timeouts.read)
            self._timeouts[timeouts] = timeout
        return timeout

    async def post(self, url, body, headers, timeouts) -> UpstreamAnswer:
        try:
            async with self._session.post(url, data=body, headers=headers, timeout=self._timeout(timeouts)) as r:
                data = await r.read()
                answer = UpstreamAnswer(r.status, dict(r.headers), data)
        except asyncio.TimeoutError as exc:
            raise UpstreamTimeout("the upstream did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError(f"could not reach the upstream ({type(exc).__name__})") from exc
        _raise_for_status(answer.status, answer.body, answer.headers)
        return answer

    async def open_stream(self, url, body, headers, timeouts) -> UpstreamStream:
        try:
            response = await self._session.post(url, data=body, headers=headers, timeout=self._timeout(timeouts))
        except asyncio.TimeoutError as exc:
            raise UpstreamTimeout("the upstream did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError(f"could not reach the upstream ({type(exc).__name__})") from exc
        if response.status >= 400:
            try:
                data = await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                data = b""
            finally:
                response.release()
            raise UpstreamStatus(response.status, data, dict(response.headers))

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.content.iter_any():
                    yield chunk
            except asyncio.TimeoutError as exc:
                raise UpstreamTimeout("the upstream stalled mid-stream") from exc
            except aiohttp.ClientError as exc:
                raise UpstreamConnectError("the upstream dropped the stream") from exc

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

            transport = _AiohttpTransport(client=lambda: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=max_connections)))
        self._client = httpx.AsyncClient(limits=limits, transport=transport, timeout=None)

    @staticmethod
    def _timeout(timeouts: Timeouts) -> httpx.Timeout:
        return httpx.Timeout(connect=timeouts.connect, read=timeouts.read, write=timeouts.read, pool=timeouts.connect)

    async def post(self, url, body, headers, timeouts) -> UpstreamAnswer:
        try:
            r = await self._client.post(url, content=body, headers=headers, timeout=self._timeout(timeouts))
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("the upstream did not answer in time") from exc
        except httpx.TransportError as exc:
            raise UpstreamConnectError(f"could not reach the upstream ({type(exc).__name__})") from exc
        answer = UpstreamAnswer(r.status_code, dict(r.headers), r.content)
        _raise_for_status(answer.status, answer.body, answer.headers)
        return answer

    async def open_stream(self, url, body, headers, timeouts) -> UpstreamStream:
        request = self._client.build_request("POST", url, content=body, headers=headers,
                                             timeout=self._timeout(timeouts))
        try:
            response = await self._client.send(request, stream=True)
            if response.status_code >= 400:
                data = await response.aread()
                await response.aclose()
                raise UpstreamStatus(response.status_code, data, dict(response.headers))
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("the upstream did not answer in time") from exc
        except httpx.TransportError as exc:
            raise UpstreamConnectError(f"could not reach the upstream ({type(exc).__name__})") from exc

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            except httpx.TimeoutException as exc:
                raise UpstreamTimeout("the upstream stalled mid-stream") from exc
            except httpx.TransportError as exc:
                raise UpstreamConnectError("the upstream dropped the stream") from exc

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
