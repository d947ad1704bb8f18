"""The retry policy with a fake sleep and a fake clock: nothing here waits."""

from __future__ import annotations

import email.utils
import random

import pytest

from gateway.config import RetryConfig
from gateway.errors import InvalidRequest, UpstreamConnectError, UpstreamStatus, UpstreamTimeout
from gateway.upstream.retry import RetryBudget, RetryPolicy, parse_duration, retry_after_s, retry_reason


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def policy(fake: FakeTime, budget: RetryBudget | None = None, **config) -> RetryPolicy:
    cfg = RetryConfig(**{"attempts": 3, "base_s": 0.1, "max_backoff_s": 5.0, "deadline_s": 30.0, **config})
    return RetryPolicy(
        cfg,
        budget=budget or RetryBudget(1.0, floor=100, clock=fake.clock),
        sleep=fake.sleep,
        clock=fake.clock,
        rng=random.Random(7),
    )


def failing(*errors, result="ok"):
    calls = []

    async def fn():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return fn, calls


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("200ms", 0.2),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("12", 12.0),
        ("", None),
        ("soon", None),
        ("1x", None),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_retry_after_headers_in_order_of_precision():
    assert retry_after_s({"retry-after-ms": "50", "Retry-After": "1"}) == 0.05
    assert retry_after_s({"Retry-After": "3"}) == 3.0
    date = email.utils.formatdate(1_000_010.0, usegmt=True)
    assert retry_after_s({"retry-after": date}, now=1_000_000.0) == pytest.approx(10.0)
    assert retry_after_s({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}) == 360.0
    assert retry_after_s({"x-ratelimit-reset-tokens": "200ms"}) == 0.2
    assert retry_after_s({"retry-after": "garbage"}) is None
    assert retry_after_s({}) is None


def test_retry_reason_labels():
    assert retry_reason(UpstreamStatus(429, b"")) == "429"
    assert retry_reason(UpstreamStatus(503, b"")) == "5xx"
    assert retry_reason(UpstreamTimeout("t")) == "timeout"
    assert retry_reason(UpstreamConnectError("c")) == "connect"


async def test_retries_5xx_then_succeeds_with_jittered_backoff():
    fake = FakeTime()
    fn, calls = failing(UpstreamStatus(500, b""), UpstreamTimeout("slow"))
    retried = []
    assert (
        await policy(fake).run(fn, deadline=fake.now + 30, deployment="d", on_retry=lambda *a: retried.append(a))
        == "ok"
    )
    assert len(calls) == 3
    assert [r[:2] for r in retried] == [("d", "5xx"), ("d", "timeout")]
    assert 0 <= fake.slept[0] <= 0.1 and 0 <= fake.slept[1] <= 0.2  # full jitter under base·2^n


async def test_never_retries_other_4xx():
    fake = FakeTime()
    fn, calls = failing(UpstreamStatus(400, b""))
    with pytest.raises(UpstreamStatus):
        await policy(fake).run(fn, deadline=fake.now + 30)
    fn2, calls2 = failing(InvalidRequest("no"))
    with pytest.raises(InvalidRequest):
        await policy(fake).run(fn2, deadline=fake.now + 30)
    assert len(calls) == len(calls2) == 1 and fake.slept == []


async def test_gives_up_after_attempts_with_the_last_error():
    fake = FakeTime()
    fn, calls = failing(*[UpstreamStatus(503, b"")] * 5)
    with pytest.raises(UpstreamStatus) as info:
        await policy(fake, attempts=3).run(fn, deadline=fake.now + 30)
    assert info.value.status == 503 and len(calls) == 3 and len(fake.slept) == 2


async def test_honours_retry_after_when_longer_than_backoff():
    fake = FakeTime()
    fn, calls = failing(UpstreamStatus(429, b"", {"retry-after-ms": "1500"}))
    assert await policy(fake).run(fn, deadline=fake.now + 30) == "ok"
    assert fake.slept == [1.5]


async def test_retry_after_past_the_deadline_falls_back_at_once():
    fake = FakeTime()
    fn, calls = failing(UpstreamStatus(429, b"", {"Retry-After": "3"}))
    with pytest.raises(UpstreamStatus):
        await policy(fake).run(fn, deadline=fake.now + 2)
    assert fake.slept == [] and len(calls) == 1


async def test_retry_after_longer_than_max_backoff_falls_back_at_once():
    fake = FakeTime()
    fn, calls = failing(UpstreamStatus(429, b"", {"x-ratelimit-reset-requests": "6m0s"}))
    with pytest.raises(UpstreamStatus):
        await policy(fake, max_backoff_s=5).run(fn, deadline=fake.now + 3600)
    assert fake.slept == [] and len(calls) == 1


async def test_retry_budget_caps_retries_to_a_share_of_requests():
    fake = FakeTime()
    budget = RetryBudget(0.2, window_s=10, floor=0, clock=fake.clock)
    p = policy(fake, budget=budget, attempts=2)
    retried = 0
    for _ in range(100):
        budget.record_request()
        fn, calls = failing(UpstreamStatus(503, b""), UpstreamStatus(503, b""))
        with pytest.raises(UpstreamStatus):
            await p.run(fn, deadline=fake.now + 30)
        retried += len(calls) - 1
        fake.now -= sum(fake.slept)  # keep the window still: only the budget decides
        fake.slept.clear()
    assert retried == 20


def test_retry_budget_window_slides():
    fake = FakeTime()
    budget = RetryBudget(0.5, window_s=10, floor=0, clock=fake.clock)
    for _ in range(4):
        budget.record_request()
    budget.spend(), budget.spend()
    assert not budget.can_retry()
    fake.now += 11
    for _ in range(2):
        budget.record_request()
    assert budget.can_retry()
