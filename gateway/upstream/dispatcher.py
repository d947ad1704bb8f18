"""Sending a request down its chain of deployments: the first that answers serves it.

For each deployment of the chain, in order (the tier's deployments, then the base model, then heavy):

    breaker.allow      skipped while its circuit is open; one probe when the cooldown is over
    budget.acquire     skipped when its requests/tokens per minute would go over the provider's quota,
                       admitted in priority order (gateway.upstream.budget: batch yields first, then normal)
    policy.run         the call, retried on 429/5xx/timeouts/dropped connections with backoff and jitter,
                       honouring Retry-After, within the request's deadline and the retry budget; a
                       Retry-After longer than `retry.fallback_after_s` moves the request on at once and
                       holds the deployment's circuit open that long (every replica skips it, then probes)

A deployment that still fails, or is skipped, hands the request to the next one; any other 4xx is the
caller's error and goes straight back. So is a request that fails the same way (same status, same error)
on two deployments with an error other than 429/502/503/504 (a 500 on a field the upstream chokes on): no
further deployment is tried, no breaker counts those failures (they are counted only once another
deployment served the request, or the chain ran out), and the client gets a 400 with the upstream's
error rebuilt (UpstreamRejected). Before, three such requests opened every circuit of the chain. When
every deployment was skipped for its budget, the request waits for the earliest window to free if that
fits in its deadline, except batch, which is shed (429 with Retry-After). Batch traffic of the light tier
never spills onto the heavy tier's deployments, and waits `resilience.batch_hold_ms` (200) before it draws on
a budget: a burst's critical and normal requests reach the budgets first (a budget cannot take back what it
gave a batch request that came a few milliseconds earlier). A critical request whose whole chain refused it for budget
(and nothing failed) goes on, before any 429, to the other deployments that serve the same upstream model
(another route's provider of it: `_overflow`), so critical is not refused while one of them has room.

For a stream, moving on is only possible until the first byte: `open_stream` reads the first chunk before
it returns, so a failure there is still a clean fallback; the deadline bounds that first chunk, the
deployment's read timeout every chunk after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Sequence, TypeGuard

from gateway.config import Deployment, GatewayConfig
from gateway.errors import (
    RateLimited,
    UpstreamError,
    UpstreamRejected,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnavailable,
    upstream_error,
)
from gateway.errors import UpstreamSkipped as _Skip
from gateway.logs import Throttled
from gateway.metrics import Metrics
from gateway.request import ChatRequest
from gateway.upstream.breaker import CircuitBreaker, Permit
from gateway.upstream.budget import UpstreamBudget, estimate_tokens, make_windows
from gateway.upstream.client import Transport, UpstreamAnswer, UpstreamStream
from gateway.upstream.providers import Upstream
from gateway.upstream.retry import RetryBudget, RetryPolicy, retry_after_s
from gateway.verbatim import encode

Chain = Sequence[tuple[str, Deployment]]

log = logging.getLogger("gateway.upstream")


# Passed on to the client under OpenAI's names: the serving deployment's rate limits and timing. Its
# request id goes as x-upstream-request-id: x-request-id is the gateway's own (the one in its logs).
PASSED_HEADERS = tuple(
    f"x-ratelimit-{kind}-{unit}" for kind in ("limit", "remaining", "reset") for unit in ("requests", "tokens")
) + ("openai-processing-ms",)


def passed_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    lower = {k.lower(): v for k, v in headers.items()}
    out = [(name.encode(), lower[name].encode("latin-1", "replace")) for name in PASSED_HEADERS if name in lower]
    if "x-request-id" in lower:
        out.append((b"x-upstream-request-id", lower["x-request-id"].encode("latin-1", "replace")))
    return out


def upstream_body(req: ChatRequest, deployment: Deployment) -> bytes:
    changes: dict[str, Any] = {"model": deployment.model}
    if req.stream and deployment.stream_usage:
        # Ask for usage even when the client did not; the relay hides that chunk from such a client.
        changes["stream_options"] = {**(req.body.get("stream_options") or {}), "include_usage": True}
    return encode(req.body, changes)  # the client's bytes where re-serialising would change them


def _retry_after(exc: UpstreamError) -> float | None:
    """The wait a 429 asks for (Retry-After and the like), or None."""
    if not isinstance(exc, UpstreamStatus) or exc.status != 429 or not exc.upstream_headers:
        return None
    return retry_after_s(exc.upstream_headers)


class _Expiry:
    """Cancels a task when its time is up; remembers that it did (asyncio.timeout's job, at a third of the
    cost: ~1 µs instead of ~3.7 µs per call, and every upstream call has one)."""

    __slots__ = ("task", "fired")

    def __init__(self, task: asyncio.Task) -> None:
        self.task, self.fired = task, False

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()


async def _within(seconds: float, call: Awaitable[Any]) -> Any:
    """`await call`, or TimeoutError once `seconds` have passed."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # called from a coroutine, always in a task
    expiry = _Expiry(task)
    timer = loop.call_at(loop.time() + seconds, expiry)
    try:
        return await call
    except asyncio.CancelledError:
        if expiry.fired and expiry.task.uncancel() == 0:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()


class Dispatcher:
    def __init__(
        self,
        config: GatewayConfig,
        transport: Transport,
        metrics: Metrics,
        *,
        redis=None,
        breaker_redis=None,
        breaker: CircuitBreaker | None = None,
        budget: UpstreamBudget | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.transport = transport
        self.metrics = metrics
        resilience = config.resilience
        self.deadline_s = resilience.retry.deadline_s
        self.fallback_after_s = resilience.retry.fallback_after_s
        self.batch_hold_s = resilience.batch_hold_ms / 1000
        # `redis`, `breaker_redis`: gateway.redisio uses for the budgets and the breaker (None: in process)
        self.breaker = breaker or CircuitBreaker(resilience.breaker, redis=breaker_redis or redis, metrics=metrics)
        self.budget = budget or UpstreamBudget(config, make_windows(redis))
        self.policy = policy or RetryPolicy(
            resilience.retry, budget=RetryBudget(resilience.retry.budget_ratio), sleep=sleep
        )
        self.sleep = sleep
        # URLs, headers and keys of each deployment, by provider (openai, azure), computed once
        self.upstreams = {name: Upstream(name, d, transport, self.budget) for name, d in config.deployments.items()}
        self._last_errors: dict[str, UpstreamError] = {}  # per deployment, to explain an open circuit
        self.warnings = Throttled(log)  # failures, retries, fallbacks: one line per kind per 10 s
        self._count_tokens = any(d.tpm for d in config.deployments.values())
        # Deployments that only the heavy tier owns: batch requests of the light tier stay off them.
        self._heavy_only = {
            alias: frozenset(route.heavy) - frozenset(route.deployments + route.fallbacks)
            for alias, route in config.models.items()
        }
        self._overflows: dict[tuple[str, ...], Chain] = {}

    async def complete(
        self, req: ChatRequest, chain: Chain, path: str = "/chat/completions", body_for=None
    ) -> UpstreamAnswer:
        """`body_for(deployment)` builds the upstream body; by default the chat body for `req`."""

        async def send(name: str, deployment: Deployment) -> UpstreamAnswer:
            body = upstream_body(req, deployment) if body_for is None else body_for(deployment)
            return await self.upstreams[name].post(path, body, req)

        return await self._dispatch(req, chain, send)

    async def open_stream(self, req: ChatRequest, chain: Chain) -> tuple[UpstreamStream, bytes]:
        """Open a stream and read its first chunk; returns both."""

        async def send(name: str, deployment: Deployment) -> tuple[UpstreamStream, bytes]:
            stream = await self.upstreams[name].open_stream(upstream_body(req, deployment), req)
            try:
                return stream, await anext(stream.chunks(), b"")
            except BaseException:
                await stream.aclose()
                raise

        return await self._dispatch(req, chain, send)

    def chain_for(self, req: ChatRequest, chain: Chain) -> Chain:
        heavy_only = self._heavy_only.get(req.alias)
        if req.priority != "batch" or req.tier == "heavy" or not heavy_only:
            return chain
        return [(name, d) for name, d in chain if name not in heavy_only] or chain

    def _overflow(self, chain: Chain) -> Chain:
        """Deployments outside `chain` that serve one of its upstream models: where a critical request goes
        when the chain's budgets are spent."""
        names = tuple(name for name, _ in chain)
        overflow = self._overflows.get(names)
        if overflow is None:
            models = {deployment.model for _, deployment in chain}
            overflow = self._overflows[names] = [
                (name, d) for name, d in self.config.deployments.items() if name not in names and d.model in models
            ]
        return overflow

    async def _dispatch(self, req: ChatRequest, chain: Chain, send: Callable[[str, Deployment], Awaitable[Any]]) -> Any:
        deadline = req.started + self.deadline_s
        chain = self.chain_for(req, chain)
        if not chain:
            raise UpstreamUnavailable("no deployment is configured for this model")
        if req.priority == "batch" and self.batch_hold_s and any(d.rpm or d.tpm for _, d in chain):
            await self.sleep(self.batch_hold_s)  # the same burst's higher priorities go first
            req.upstream_seconds += self.batch_hold_s
        routed = len(chain)  # past this index: the overflow, tried only after budget refusals
        if req.priority == "critical":
            chain = [*chain, *self._overflow(chain)]
        tokens = estimate_tokens(req.body) if self._count_tokens else 0
        self.policy.budget.record_request()
        last_error: UpstreamError | None = None
        previous: str | None = None  # the deployment we are falling back from
        skipped: str | None = None  # the first deployment skipped for its open circuit
        suspects = _Suspects()  # failures that may be the request's own fault: not yet counted
        while True:
            waits: list[float] = []
            for index, (name, deployment) in enumerate(chain):
                if time.perf_counter() >= deadline or (index >= routed and (last_error is not None or not waits)):
                    break
                permit = await self.breaker.allow(name, deployment.timeout.connect + deployment.timeout.read + 1)
                if permit is None:
                    previous, skipped = name, skipped or name
                    continue
                grant = await self.budget.acquire(name, deployment, req.priority, tokens)
                if not grant.ok:
                    await self.breaker.release(permit)
                    waits.append(grant.wait_s)
                    previous = name
                    continue
                self.budget.hold(req, name, deployment, grant, tokens)
                if previous is not None:
                    self.metrics.fallbacks.labels(previous, name).inc()
                    self.warnings.warning(f"fallback:{previous}:{name}", "falling back from %s to %s", previous, name)
                started = time.perf_counter()
                try:
                    result = await self.policy.run(
                        self._attempts(req, name, deployment, permit, send, deadline, tokens, suspects),
                        deadline=deadline,
                        deployment=name,
                        on_retry=self._on_retry,
                        can_fall_back=index < len(chain) - 1,
                    )
                except _Skip as skip:
                    if skip.reason == "budget":
                        waits.append(skip.wait_s)
                    previous = name
                    continue
                except UpstreamError as exc:
                    if not exc.retryable:
                        await self._settle(suspects)
                        raise
                    rejected = suspects.same_elsewhere(exc, name)
                    if rejected is not None:
                        await self._settle(suspects, counted=False)
                        raise rejected from exc
                    last_error, previous = exc, name
                    continue
                finally:
                    req.upstream_seconds += time.perf_counter() - started
                await self._settle(suspects)
                self._served(req, name, started)
                req.upstream_headers = passed_headers(
                    result.headers if isinstance(result, UpstreamAnswer) else result[0].headers
                )
                return result
            if waits and last_error is None and req.priority != "batch":
                fits = [w for w in waits if w >= 0]
                if fits and time.perf_counter() + min(fits) < deadline:
                    pause = max(min(fits), 0.01)
                    await self.sleep(pause)
                    req.upstream_seconds += pause
                    continue
            await self._settle(suspects)
            if waits and last_error is None:
                self.metrics.rate_limited.labels("upstream_budget").inc()
                fits = [w for w in waits if w >= 0]
                raise RateLimited(
                    "the upstream request budget of this model is spent for now",
                    retry_after_s=min(fits) if fits else 60.0,
                )
            if last_error is None and skipped is not None:
                raise self._circuit_open_error(skipped)
            if last_error is not None:
                raise last_error
            if time.perf_counter() >= deadline:
                raise UpstreamTimeout(
                    f"the request's deadline ({self.deadline_s:g} s) passed before any deployment was called"
                )
            raise UpstreamUnavailable("no deployment can take the request now")

    def _circuit_open_error(self, name: str) -> UpstreamError:
        """No deployment was called: the circuits are open. Says so, with the error that opened the first
        one and when it will be tried again (Retry-After)."""
        last = self._last_errors.get(name)
        cause = f" after repeated failures (last: {last.metric_label.replace('_', ' ')})" if last else ""
        wait_s = max(1.0, self.breaker.open_for_s(name))
        return UpstreamUnavailable(
            f"no deployment was called: the circuit of {name} is open{cause}, and no other deployment of this "
            f"model could take the request; it will be tried again in about {wait_s:.0f} s",
            code="circuit_open",
            headers={"retry-after": str(round(wait_s + 0.499))},
        )

    async def _settle(self, suspects: _Suspects, counted: bool = True) -> None:
        """Count (or forget, when the request was at fault) the failures held back from the breakers."""
        for permit in suspects.take():
            if counted:
                await self.breaker.failure(permit)
            else:
                await self.breaker.release(permit)

    def _attempts(
        self,
        req: ChatRequest,
        name: str,
        deployment: Deployment,
        permit: Permit,
        send: Callable[[str, Deployment], Awaitable[Any]],
        deadline: float,
        tokens: int,
        suspects: _Suspects,
    ) -> Callable[[], Awaitable[Any]]:
        """One call to `name` per invocation; the retry policy invokes it again for each retry."""
        attempts = 0

        async def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            if attempts > 1:  # a retry: the circuit may have opened meanwhile, and it draws on the budget
                if self.breaker.is_open(name):
                    raise _Skip(f"the circuit of {name} opened", "breaker")
                grant = await self.budget.acquire(name, deployment, req.priority, tokens)
                if not grant.ok:
                    raise _Skip(f"the budget of {name} is spent", "budget", grant.wait_s)
                self.budget.hold(req, name, deployment, grant, tokens)
            remaining = deadline - time.perf_counter()
            try:
                if remaining <= 0:
                    raise TimeoutError
                result = await _within(remaining, send(name, deployment))
            except TimeoutError:
                await self.breaker.release(permit)  # the request's deadline, not the deployment's fault
                exc = UpstreamTimeout("the request's deadline passed while waiting on the upstream")
                self._failed(exc, name)
                raise exc from None
            except _Skip:  # every key of the deployment has spent its own quota: not the deployment's fault
                await self.breaker.release(permit)
                raise
            except UpstreamError as exc:
                self._failed(exc, name)
                asked = _retry_after(exc)
                if asked is not None and asked > self.fallback_after_s:
                    await self.breaker.hold(name, asked)  # not a failure: the provider said when to come back
                    permit.done = True
                elif _may_be_the_request(exc):
                    suspects.hold(permit)  # counted once the dispatch knows whose fault it was
                elif exc.retryable:
                    await self.breaker.failure(permit)
                else:
                    await self.breaker.release(permit)
                raise
            except BaseException:  # cancelled: the client went away
                await self.breaker.release(permit)
                raise
            await self.breaker.success(permit)
            return result

        return attempt

    def _failed(self, exc: UpstreamError, name: str) -> None:
        exc.deployment = name
        if exc.retryable:
            self._last_errors[name] = exc
            self.warnings.warning(
                f"failed:{name}:{exc.metric_label}", "upstream %s failed: %s (%s)", name, exc.message, exc.metric_label
            )
        self.metrics.upstream_errors.labels(name, exc.metric_label).inc()

    def _on_retry(self, deployment: str, reason: str, wait_s: float) -> None:
        self.metrics.retries.labels(deployment, reason).inc()
        self.warnings.warning(
            f"retry:{deployment}:{reason}", "retrying %s after %s in %.2fs", deployment, reason, wait_s
        )

    def _served(self, req: ChatRequest, name: str, started: float) -> None:
        req.served_by = name
        self.metrics.upstream_duration.labels(name).observe(time.perf_counter() - started)


def _may_be_the_request(exc: UpstreamError) -> TypeGuard[UpstreamStatus]:
    """An error status that a bad request can cause: 5xx other than the gateway-ish 502/503/504."""
    return isinstance(exc, UpstreamStatus) and exc.status >= 500 and exc.status not in (502, 503, 504)


class _Suspects:
    """One dispatch's failures that may be the request's fault: their breaker permits, held back, and the
    way each deployment failed."""

    __slots__ = ("permits", "ways")

    def __init__(self) -> None:
        self.permits: list[Permit] = []
        self.ways: dict[str, tuple] = {}  # deployment -> (status, error type, code, message)

    def hold(self, permit: Permit) -> None:
        self.permits.append(permit)

    def take(self) -> list[Permit]:
        permits, self.permits = self.permits, []
        return permits

    def same_elsewhere(self, exc: UpstreamError, name: str) -> UpstreamRejected | None:
        """The rejection to send when `exc` from `name` repeats how another deployment failed, else None."""
        if _may_be_the_request(exc):
            way = _way(exc)
            for other, seen in self.ways.items():
                if seen == way and other != name:
                    return UpstreamRejected.rebuilt(exc, (other, name))
            self.ways[name] = way
        return None


def _way(exc: UpstreamStatus) -> tuple:
    error = upstream_error(exc.upstream_body)
    return (
        (exc.status, error.get("type"), error.get("code"), error.get("message"))
        if error
        else (exc.status, exc.upstream_body[:500])
    )
