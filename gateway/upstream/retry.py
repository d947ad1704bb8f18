"""The retry policy of one deployment: tenacity's AsyncRetrying with the gateway's rules.

    policy = RetryPolicy(config.resilience.retry, budget=RetryBudget(0.2), sleep=asyncio.sleep)
    answer = await policy.run(send, deployment="light", deadline=req.started + 30, on_retry=count)

- Only `UpstreamError`s with `.retryable` are retried (429, 5xx, timeouts, refused or dropped
  connections); any other error, and any other 4xx, goes straight out.
- The wait before attempt n+1 is exponential backoff with full jitter, uniform(0, min(max, base·2ⁿ)),
  or the upstream's own hint when it gave one (`retry-after-ms`, `Retry-After` in seconds or as an
  HTTP date, `x-ratelimit-reset-requests/-tokens` such as "1s", "6m0s", "200ms"), whichever is longer.
- It stops after `attempts`, when the wait would end past the request's deadline, when the upstream asks
  for a wait longer than `max_backoff_s` (or than `fallback_after_s` when the caller has another
  deployment to go to: it will do better than waiting), and when the
  retry budget is spent: retries stay under `budget_ratio` of the requests of a sliding window, so a
  failing upstream does not see its traffic multiplied. Stopping re-raises the last error: the dispatcher
  then falls back to the next deployment.

`sleep` and `clock` are injectable: unit tests neither sleep nor depend on the wall clock.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from typing import Awaitable, Callable, Mapping, TypeVar

from tenacity import AsyncRetrying, RetryCallState

from gateway.config import RetryConfig
from gateway.errors import UpstreamError, UpstreamStatus

__all__ = ["RetryBudget", "RetryPolicy", "parse_duration", "retry_after_s", "retry_reason"]

T = TypeVar("T")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """Go-style durations as OpenAI sends them in x-ratelimit-reset-*: "1s", "6m0s", "200ms", "1h2m3.5s";
    a bare number is seconds. None when it cannot be read."""
    text = text.strip().lower()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total, end = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != end:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        end = match.end()
    return total if end == len(text) else None


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """How long the upstream asks us to wait, in seconds, or None when it does not say.

    `retry-after-ms` is the most precise and wins; then `Retry-After` (delta seconds or an HTTP date);
    then the longest of `x-ratelimit-reset-requests` / `-tokens`."""
    lower = {k.lower(): v for k, v in headers.items()}
    value = lower.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is not None:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None and when.tzinfo is not None:
                return max(0.0, when.timestamp() - (time.time() if now is None else now))
    parsed = (
        parse_duration(lower[name])
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if name in lower
    )
    resets = [r for r in parsed if r is not None]
    return max(resets) if resets else None


def retry_reason(exc: BaseException) -> str:
    """A low-cardinality label for gateway_retries{reason}."""
    if isinstance(exc, UpstreamStatus):
        return "429" if exc.status == 429 else "5xx"
    if isinstance(exc, UpstreamError):
        return exc.metric_label.removeprefix("upstream_")
    return "other"


class RetryBudget:
    """Retries may be at most `ratio` of the requests seen in the last `window_s` seconds (plus a small
    floor, so that a quiet gateway can still retry). Counted per process in one-second buckets."""

    def __init__(
        self, ratio: float, *, window_s: float = 10.0, floor: int = 3, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ratio = ratio
        self.window = max(1, int(window_s))
        self.floor = floor
        self.clock = clock
        self._requests: dict[int, int] = {}
        self._retries: dict[int, int] = {}

    def _trim(self, now: int) -> None:
        oldest = now - self.window + 1
        for counts in (self._requests, self._retries):
            for second in [s for s in counts if s < oldest]:
                del counts[second]

    def record_request(self) -> None:
        now = int(self.clock())
        self._requests[now] = self._requests.get(now, 0) + 1
        if len(self._requests) > self.window:
            self._trim(now)

    def can_retry(self) -> bool:
        self._trim(int(self.clock()))
        return sum(self._retries.values()) < self.floor + self.ratio * sum(self._requests.values())

    def spend(self) -> None:
        now = int(self.clock())
        self._retries[now] = self._retries.get(now, 0) + 1


class RetryPolicy:
    def __init__(
        self,
        config: RetryConfig,
        *,
        budget: RetryBudget | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.budget = budget or RetryBudget(config.budget_ratio)
        self.sleep = sleep
        self.clock = clock  # the clock of `deadline` (ChatRequest.started is perf_counter)
        self.rng = rng or random.Random()

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform(0, min(max_backoff, base · 2^(attempt-1))) after the attempt-th failure."""
        cap = min(self.config.max_backoff_s, self.config.base_s * (2 ** (attempt - 1)))
        return self.rng.uniform(0, cap)

    async def run(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        deadline: float,
        deployment: str = "",
        on_retry: Callable[[str, str, float], None] | None = None,
        can_fall_back: bool = False,
    ) -> T:
        """Call `fn` until it succeeds or the policy gives up; then its last error is raised as is.
        `on_retry(deployment, reason, wait_s)` is called before each wait. The caller counts each request
        once in `budget.record_request()`."""
        config = self.config
        hinted: dict[int, float | None] = {}

        def hint(state: RetryCallState) -> float | None:
            if state.attempt_number not in hinted:
                exc = state.outcome.exception() if state.outcome else None
                headers = getattr(exc, "upstream_headers", None)
                hinted[state.attempt_number] = retry_after_s(headers) if headers else None
            return hinted[state.attempt_number]

        def retryable(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            return isinstance(exc, UpstreamError) and exc.retryable

        def wait(state: RetryCallState) -> float:
            return max(self.backoff(state.attempt_number), hint(state) or 0.0)

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= config.attempts:
                return True
            asked = hint(state)
            if asked is not None and asked > (config.fallback_after_s if can_fall_back else config.max_backoff_s):
                return True  # a long Retry-After: fall back now rather than wait
            if self.clock() + state.upcoming_sleep >= deadline:
                return True  # the wait alone would overrun the deadline
            return not self.budget.can_retry()

        def before_sleep(state: RetryCallState) -> None:
            self.budget.spend()
            failure = state.outcome.exception() if state.outcome is not None else None
            if on_retry is not None and failure is not None:  # tenacity sleeps only after a failed attempt
                on_retry(deployment, retry_reason(failure), state.upcoming_sleep)

        # The first attempt runs bare: most calls succeed, and they should not pay for tenacity's
        # machinery (~20 µs). A failure is replayed as tenacity's first attempt, which then decides.
        try:
            return await fn()
        except UpstreamError as exc:
            if not exc.retryable:
                raise
            first: UpstreamError | None = exc

        async def replay_then_call() -> T:
            nonlocal first
            if first is not None:
                exc, first = first, None
                raise exc
            return await fn()

        retrying = AsyncRetrying(
            sleep=self.sleep, stop=stop, wait=wait, retry=retryable, before_sleep=before_sleep, reraise=True
        )
        return await retrying(replay_then_call)
