"""Provider adapters: how one deployment is called — its URL, its auth header, its error shapes — and the
deployment as the dispatcher sees it (`Upstream`: adapter + key ring + per-key quotas).

    upstream = Upstream("light", deployment, transport, budget)
    answer = await upstream.post("/chat/completions", body, req)    # or "/embeddings"
    stream = await upstream.open_stream(body, req)

- `openai`: `{base_url}/chat/completions`, `Authorization: Bearer KEY`. Also vLLM, Together, Groq, Ollama,
  LiteLLM... any server that speaks the OpenAI API.
- `azure`: `{base_url}/openai/deployments/{azure_deployment}/chat/completions?api-version=V`, `api-key: KEY`.
  Its errors (`{"error": {"code": "429", "message": "... Please retry after 6 seconds ..."}}`) are turned
  into OpenAI's shape, and a 429 that only says when to retry in its message gets a Retry-After from it.

URLs and headers are computed once (per key: a rotated key gets new headers when the ring reads it), so
the hot path does a dict lookup. A key refused with 401/403 is set aside and the same request is sent
again at once with the next key; only when no key is left does the refusal go back. A 404 is logged with
the URL and the deployment (never a key): it means a wrong base_url, model or azure_deployment.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Awaitable, Callable, Protocol
from urllib.parse import quote, urlsplit

import orjson

from gateway.config import Deployment
from gateway.errors import UpstreamSkipped, UpstreamStatus
from gateway.upstream.budget import estimate_tokens
from gateway.upstream.client import Transport, UpstreamAnswer, UpstreamStream
from gateway.upstream.keys import KeyRing, LiveKey

__all__ = ["AzureOpenAI", "OpenAICompatible", "Provider", "Upstream", "make_provider"]

log = logging.getLogger("gateway.upstream")

PATHS = ("/chat/completions", "/embeddings")


class Provider(Protocol):
    def url(self, path: str) -> str: ...
    def auth_headers(self, secret: str) -> dict[str, str]: ...
    def normalise(self, error: UpstreamStatus) -> None: ...


class OpenAICompatible:
    def __init__(self, deployment: Deployment) -> None:
        self.base_url = deployment.base_url

    def url(self, path: str) -> str:
        return self.base_url + path

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"authorization": f"Bearer {secret}"}

    def normalise(self, error: UpstreamStatus) -> None:
        return None


_AZURE_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}
_RETRY_IN_MESSAGE = re.compile(r"retry after (\d+(?:\.\d+)?) second", re.IGNORECASE)


class AzureOpenAI:
    def __init__(self, deployment: Deployment) -> None:
        self.base_url = deployment.base_url
        self.deployment = deployment.azure_deployment or deployment.model
        self.api_version = deployment.api_version

    def url(self, path: str) -> str:
        return (
            f"{self.base_url}/openai/deployments/{quote(self.deployment, safe='')}{path}"
            f"?api-version={quote(self.api_version, safe='')}"
        )

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"api-key": secret}

    def normalise(self, error: UpstreamStatus) -> None:
        """Azure's {"error": {"code": "429", "message": ...}} in OpenAI's shape; a retry hint only given in
        the message becomes a Retry-After header."""
        try:
            data = orjson.loads(error.upstream_body)
        except orjson.JSONDecodeError:
            return
        inner = data.get("error") if isinstance(data, dict) else None
        if not isinstance(inner, dict):
            return
        message = str(inner.get("message") or f"the Azure OpenAI deployment answered {error.status}")
        code = inner.get("code")
        shaped = {
            **inner,
            "message": message,
            "type": inner.get("type") or _AZURE_TYPES.get(error.status, "api_error"),
            "param": inner.get("param"),
            "code": None if code == str(error.status) else code,
        }
        error.upstream_body = orjson.dumps({"error": shaped})
        lower = {k.lower() for k in error.upstream_headers}
        hint = _RETRY_IN_MESSAGE.search(message)
        if error.status == 429 and hint and not lower & {"retry-after", "retry-after-ms"}:
            error.upstream_headers = {**error.upstream_headers, "retry-after": hint.group(1)}


def make_provider(deployment: Deployment) -> Provider:
    return AzureOpenAI(deployment) if deployment.provider == "azure" else OpenAICompatible(deployment)


def _loggable(url: str) -> str:
    """The URL without user:password@ (keys are sent in headers, but a base_url may carry credentials)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


class Upstream:
    """One deployment, ready to call: URLs and per-key headers computed once, keys rotated."""

    def __init__(
        self,
        name: str,
        deployment: Deployment,
        transport: Transport,
        budget=None,
        *,
        environ=None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.deployment = deployment
        self.transport = transport
        self.budget = budget
        self.provider = make_provider(deployment)
        self.urls = {path: self.provider.url(path) for path in PATHS}
        self.keys = KeyRing(deployment, self._headers_for, name=name, environ=environ, clock=clock)
        self._logged: dict[int, float] = {}  # status -> when last logged (404s under load: one line per minute)

    def _headers_for(self, secret: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if secret:
            headers.update(self.provider.auth_headers(secret))
        headers.update(self.deployment.headers)
        return headers

    def url(self, path: str) -> str:
        return self.urls.get(path) or self.provider.url(path)

    async def post(self, path: str, body: bytes, req=None) -> UpstreamAnswer:
        url = self.urls.get(path) or self.provider.url(path)
        key = self.keys.pick()
        if key.limited:
            key = await self._key_with_room(req, [key] + self.keys.candidates(after=key))
        try:  # the hot path: one dict lookup, one pick, the call
            return await self.transport.post(url, body, key.headers, self.deployment.timeout)
        except UpstreamStatus as error:
            send = lambda other: self.transport.post(url, body, other.headers, self.deployment.timeout)  # noqa: E731
            return await self._refused_key(error, key, send, url, req)

    async def open_stream(self, body: bytes, req=None) -> UpstreamStream:
        url = self.urls["/chat/completions"]
        key = self.keys.pick()
        if key.limited:
            key = await self._key_with_room(req, [key] + self.keys.candidates(after=key))
        try:
            return await self.transport.open_stream(url, body, key.headers, self.deployment.timeout)
        except UpstreamStatus as error:
            send = lambda other: self.transport.open_stream(url, body, other.headers, self.deployment.timeout)  # noqa: E731
            return await self._refused_key(error, key, send, url, req)

    async def _refused_key(
        self, error: UpstreamStatus, key: LiveKey, send: Callable[[LiveKey], Awaitable[Any]], url: str, req
    ) -> Any:
        """After an error status: a key refused (401/403) is set aside and the request goes again at once
        with the next keys; any other status goes back (normalised, logged when it is a 404)."""
        while error.status in (401, 403):
            self.keys.set_aside(key, error.status)
            following = await self._next_key(req, key)
            if following is None:
                break
            key = following
            try:
                return await send(key)
            except UpstreamStatus as again:
                error = again
        self._refused(error, url)
        raise error

    async def _next_key(self, req, after: LiveKey) -> LiveKey | None:
        for other in self.keys.candidates(after=after):
            if not other.limited or (await self._acquire(req, other)).ok:
                return other
        return None

    async def _acquire(self, req, key: LiveKey):
        tokens = estimate_tokens(req.body) if key.tpm and req is not None else 0
        window = f"{self.name}:{key.id}"
        grant = await self.budget.acquire(window, key, getattr(req, "priority", "normal"), tokens)
        if grant.ok and tokens and self.deployment.tpm is None:
            # held on the request under this deployment's name, so the pipeline settles the estimate to the
            # real usage (gateway.context.settle_holds: the last hold of the deployment that served gets it;
            # with a deployment tpm too, that hold is the deployment's own and the key keeps its estimate)
            req.hold(self.budget.windows, f"budget:{window}", grant.bucket, tokens, self.name)
        return grant

    async def _key_with_room(self, req, keys: list[LiveKey]) -> LiveKey:
        """The first key whose own quota has room; every key spent: skip this deployment for now."""
        if self.budget is None:
            return keys[0]
        waits = []
        for key in keys:
            grant = await self._acquire(req, key)
            if grant.ok:
                return key
            waits.append(grant.wait_s)
        fits = [w for w in waits if w >= 0]
        raise UpstreamSkipped(
            f"every key of {self.name} has spent its quota for now", "budget", min(fits) if fits else -1.0
        )

    def _refused(self, error: UpstreamStatus, url: str) -> None:
        self.provider.normalise(error)
        if error.status in (401, 403, 404):
            now = time.monotonic()
            if now - self._logged.get(error.status, -60.0) >= 60.0:
                self._logged[error.status] = now
                hint = (
                    ("check base_url, model" + (" and azure_deployment" if self.deployment.provider == "azure" else ""))
                    if error.status == 404
                    else "check its keys"
                )
                log.warning(
                    "deployment %s: the upstream answered %d for POST %s (%s provider, model %s); %s",
                    self.name,
                    error.status,
                    _loggable(url),
                    self.deployment.provider,
                    self.deployment.model,
                    hint,
                )
