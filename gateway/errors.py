"""Errors, rendered in the OpenAI API's shape: {"error": {"message", "type", "param", "code"}}.

    GatewayError                      500 api_error
    ├── InvalidRequest                400 invalid_request_error
    │   ├── BodyTooLarge              413
    │   ├── ModelNotFound             404 (code model_not_found)
    │   └── UpstreamRejected          400 two deployments failed the same way on this request
    ├── AuthenticationFailed          401 authentication_error
    ├── PermissionDenied              403 permission_error
    ├── RateLimited                   429 rate_limit_error, Retry-After
    └── UpstreamError                 502 api_error (the upstream failed; nothing of it leaks)
        ├── UpstreamConnectError      502 could not connect / connection dropped
        ├── UpstreamTimeout           504
        ├── UpstreamUnavailable       503 no deployment can take the request now (breakers, budgets)
        │   └── UpstreamSkipped       a deployment not tried: circuit open, budget (or every key's) spent
        └── UpstreamStatus            the upstream's own status; 4xx bodies pass through (401/403: 502)

Each class has a low-cardinality `metric_label` for metrics. `retryable` says whether trying again (or
another deployment) may help. What the client receives for each (status, JSON) is written in one place,
api/render.py's `error_answer`.
"""

from __future__ import annotations

import re

import orjson


class GatewayError(Exception):
    status = 500
    type = "api_error"
    code: str | None = None
    metric_label = "internal"
    retryable = False

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    metric_label = "invalid_request"


class BodyTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"
    metric_label = "body_too_large"


class ModelNotFound(InvalidRequest):
    status = 404
    code = "model_not_found"
    metric_label = "model_not_found"


class UpstreamRejected(InvalidRequest):
    """Two deployments failed on this request the same way (a 500 on a field the upstream chokes on): the
    request's fault, not theirs. A 4xx, so that SDKs do not send it again (they retry 5xx)."""

    code = "upstream_rejected_request"
    metric_label = "upstream_rejected"

    @classmethod
    def rebuilt(cls, exc: "UpstreamStatus", deployments: tuple[str, ...]) -> "UpstreamRejected":
        """The upstream's error, rebuilt: only its message, shortened, with anything like a key masked."""
        error = upstream_error(exc.upstream_body) or {}
        said = error.get("message")
        said = f": {_KEYLIKE.sub('[redacted]', said)[:300]}" if isinstance(said, str) and said else ""
        return cls(
            f"deployments {' and '.join(deployments)} both failed on this request with {exc.status}{said}; "
            "it was not sent further: the same request will fail again"
        )


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"
    metric_label = "auth"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    metric_label = "permission"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    metric_label = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s
        self.headers.setdefault("retry-after", str(max(1, round(retry_after_s + 0.499))))


class UpstreamError(GatewayError):
    status = 502
    type = "api_error"
    code = "upstream_error"
    metric_label = "upstream"
    retryable = True
    deployment: str | None = None


class UpstreamConnectError(UpstreamError):
    metric_label = "upstream_connect"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
    metric_label = "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"
    metric_label = "upstream_unavailable"


class UpstreamSkipped(UpstreamUnavailable):
    """A deployment not tried (again): its circuit is open, its budget or every one of its keys' quotas is
    spent. Never retried; the dispatcher moves on (and may wait `wait_s` for a budget)."""

    retryable = False

    def __init__(self, message: str, reason: str, wait_s: float = 0.0) -> None:
        super().__init__(message)
        self.reason, self.wait_s = reason, wait_s


class UpstreamStatus(UpstreamError):
    """The upstream answered with an error status. 429 and 5xx are retryable; other 4xx are the caller's."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.upstream_body = body
        self.upstream_headers = headers or {}
        self.retryable = status == 429 or status >= 500
        self.metric_label = f"upstream_{status // 100}xx" if status != 429 else "upstream_429"
        super().__init__(f"the upstream answered {status}")


_WORD = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}")  # a type, code or param worth passing on


def rebuilt_upstream_error(status: int, body: bytes) -> bytes:
    """An upstream 4xx in OpenAI's shape made by the gateway: the upstream's type, code and param when they
    are short words, its message shortened with anything like a key masked. A provider that echoes request
    headers (the gateway's upstream key) or returns HTML shows the client nothing of it."""
    error = upstream_error(body) or {}
    word = lambda value: value if isinstance(value, str) and _WORD.fullmatch(value) else None  # noqa: E731
    said = error.get("message")
    said = _KEYLIKE.sub("[redacted]", said)[:500] if isinstance(said, str) and said.strip() else None
    message = (
        f"the upstream refused the request ({status}): {said}"
        if said
        else f"the upstream refused the request ({status})"
    )
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": word(error.get("type")) or "invalid_request_error",
                "param": word(error.get("param")),
                "code": word(error.get("code")),
            }
        }
    )


_KEYLIKE = re.compile(r"\b(?:sk|pk|rk|key|api)[-_][A-Za-z0-9_-]{6,}|\bBearer\s+\S+", re.I)


def upstream_error(body: bytes) -> dict | None:
    """The `error` object of an OpenAI-shaped error body, or None."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else None
