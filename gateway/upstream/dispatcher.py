"""Sending a request down its chain of deployments: the first that answers serves it.

A deployment that fails in a way another might not (429, 5xx, timeout, refused or dropped connection)
hands the request to the next one in the chain; any other 4xx is the caller's error and goes straight back.
For a stream, moving on is only possible until the first byte: `open_stream` reads the first chunk before
it returns, so a failure there is still a clean fallback.
"""

from __future__ import annotations

import time
from typing import Sequence

import orjson

from gateway.config import Deployment, GatewayConfig
from gateway.errors import UpstreamError, UpstreamUnavailable
from gateway.metrics import Metrics
from gateway.request import ChatRequest
from gateway.upstream.client import Transport, UpstreamAnswer, UpstreamStream

Chain = Sequence[tuple[str, Deployment]]


def upstream_headers(deployment: Deployment) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": "application/json"}
    if deployment.api_key:
        headers["authorization"] = f"Bearer {deployment.api_key}"
    headers.update(deployment.headers)
    return headers


def upstream_body(req: ChatRequest, deployment: Deployment) -> bytes:
    body = {**req.body, "model": deployment.model}
    if req.stream:
        # Ask for usage even when the client did not; the relay hides that chunk from such a client.
        body["stream_options"] = {**(req.body.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(body)


class Dispatcher:
    def __init__(self, config: GatewayConfig, transport: Transport, metrics: Metrics) -> None:
        self.transport = transport
        self.metrics = metrics
        self._headers = {name: upstream_headers(d) for name, d in config.deployments.items()}

    async def complete(self, req: ChatRequest, chain: Chain, path: str = "/chat/completions",
                       body_for=None) -> UpstreamAnswer:
        """`body_for(deployment)` builds the upstream body; by default the chat body for `req`."""
        last_error: UpstreamError | None = None
        for i, (name, deployment) in enumerate(chain):
            started = time.perf_counter()
            try:
                body = upstream_body(req, deployment) if body_for is None else body_for(deployment)
                answer = await self.transport.post(deployment.base_url + path, body, self._headers[name],
                                                   deployment.timeout)
            except UpstreamError as exc:
                last_error = self._failed(exc, name, chain, i)
                continue
            finally:
                req.upstream_seconds += time.perf_counter() - started
            self._served(req, name, started)
            return answer
        raise last_error or UpstreamUnavailable("no deployment is configured for this model")

    async def open_stream(self, req: ChatRequest, chain: Chain) -> tuple[UpstreamStream, bytes]:
        """Open a stream and read its first chunk; returns both."""
        last_error: UpstreamError | None = None
        for i, (name, deployment) in enumerate(chain):
            started = time.perf_counter()
            stream = None
            try:
                stream = await self.transport.open_stream(deployment.base_url + "/chat/completions",
                                                          upstream_body(req, deployment), self._headers[name],
                                                          deployment.timeout)
                first = await anext(stream.chunks(), b"")
            except UpstreamError as exc:
                if stream is not None:
                    await stream.aclose()
                last_error = self._failed(exc, name, chain, i)
                continue
            finally:
                req.upstream_seconds += time.perf_counter() - started
            self._served(req, name, started)
            return stream, first
        raise last_error or UpstreamUnavailable("no deployment is configured for this model")

    def _failed(self, exc: UpstreamError, name: str, chain: Chain, i: int) -> UpstreamError:
        exc.deployment = name
        self.metrics.upstream_errors.labels(name, exc.metric_label).inc()
        if not exc.retryable:
            raise exc
        if i + 1 < len(chain):
            self.metrics.fallbacks.labels(name, chain[i + 1][0]).inc()
        return exc

    def _served(self, req: ChatRequest, name: str, started: float) -> None:
        req.served_by = name
        self.metrics.upstream_duration.labels(name).observe(time.perf_counter() - started)
