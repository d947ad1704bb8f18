"""What the metrics say, through a real gateway and real Redis: counters exist at 0 before their first event,
canary and stable are both measured, latency is split by stream and cache outcome, circuit gauges follow
the shared state, and the histograms reach past a second."""

from __future__ import annotations

import httpx
import openai
import pytest

from gateway.auth import hash_key
from gateway.config import BreakerConfig, build_config
from gateway.gauges import GaugeRefresher
from gateway.metrics import Metrics
from gateway.mock_upstream import MockServerThread, MockSettings
from gateway.report import quantile, samples
from gateway.upstream.breaker import CircuitBreaker
from gateway.upstream.budget import UpstreamBudget, make_windows
from tests.conftest import LIGHT_MODEL, TEST_KEY, base_config

CANARY_MODEL = "canary-model"
ADMIN_KEY = "sk-admin-0123456789"


def series(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.fixture
def canary_mock():
    with MockServerThread(MockSettings(served_model=CANARY_MODEL)) as mock:
        yield mock


@pytest.fixture
def canary_gateway(start_gateway, light_mock, heavy_mock, canary_mock):
    timeout = {"connect": 1, "read": 5}
    return start_gateway(
        base_config(
            light_mock.url,
            heavy_mock.url,
            auth={"admin_key_sha256": hash_key(ADMIN_KEY)},
            deployments={
                "light": {"base_url": light_mock.url, "model": LIGHT_MODEL, "timeout": timeout},
                "heavy": {"base_url": heavy_mock.url, "model": "heavy-model", "timeout": timeout},
                "canary": {"base_url": canary_mock.url, "model": CANARY_MODEL, "timeout": timeout},
            },
            models={
                "support": {
                    "deployments": ["light"],
                    "heavy": ["heavy"],
                    "canary": {
                        "deployments": ["canary"],
                        "percent": 0,
                        "rollback_window": 10,
                        "rollback_error_rate": 0.5,
                    },
                }
            },
            resilience={"breaker": {"failures": 1000}},
        )
    )


def test_counters_that_alerts_read_exist_at_zero_before_any_request(canary_gateway):
    """increase() of a counter first seen at 1 is 0: the first rollback or 5xx would never fire an alert."""
    s = series(canary_gateway.url)
    assert s['gateway_canary_rollbacks_total{model="support"}'] == 0
    for variant in ("stable", "canary"):
        for outcome in ("ok", "failed"):
            assert s[f'gateway_canary_requests_total{{model="support",outcome="{outcome}",variant="{variant}"}}'] == 0
        assert s[f'gateway_variant_duration_seconds_count{{model="support",variant="{variant}"}}'] == 0
    assert s['gateway_errors_total{intent="other",model="support",status_class="5xx"}'] == 0
    assert s['gateway_errors_total{intent="refund",model="support",status_class="4xx"}'] == 0
    assert s['gateway_route_decisions_total{model="support",tier="heavy"}'] == 0
    assert s['gateway_upstream_errors_total{deployment="canary",error="upstream_5xx"}'] == 0
    assert s['gateway_rate_limited_total{scope="upstream_budget"}'] == 0
    assert s['gateway_circuit_open{deployment="canary"}'] == 0
    assert s['gateway_deployment_state{deployment="light"}'] == 0
    assert any(name.startswith("gateway_build_info{") and value == 1 for name, value in s.items())


def test_canary_and_stable_are_both_measured_and_the_rollback_counted(canary_gateway, canary_mock):
    client = openai.OpenAI(base_url=canary_gateway.base_url, api_key=TEST_KEY, max_retries=0)

    def ask(user: str):
        return client.chat.completions.with_raw_response.create(
            model="support",
            user=user,
            messages=[{"role": "user", "content": "Where is my parcel?"}],
            extra_headers={"x-gateway-cache": "bypass"},
        )

    for i in range(4):
        ask(f"stable-{i}")
    canary_mock.configure(fail_rate_500=1.0)
    httpx.put(
        f"{canary_gateway.url}/admin/canary/support",
        json={"percent": 100},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    ).raise_for_status()
    for i in range(10):
        assert ask(f"canary-{i}").parse().model == LIGHT_MODEL  # fell back to stable
    s = series(canary_gateway.url)
    assert s['gateway_canary_requests_total{model="support",outcome="ok",variant="stable"}'] == 4
    assert s['gateway_canary_requests_total{model="support",outcome="failed",variant="canary"}'] == 10
    assert s['gateway_variant_duration_seconds_count{model="support",variant="stable"}'] == 4
    assert s['gateway_variant_duration_seconds_count{model="support",variant="canary"}'] == 10
    assert s['gateway_canary_rollbacks_total{model="support"}'] == 1
    assert s['gateway_canary_percent{model="support"}'] == 0


def test_latency_is_split_by_stream_and_cache_outcome_and_refusals_are_not_timed(gateway, client):
    question = [{"role": "user", "content": "Where is my refund?"}]
    client.chat.completions.create(model="support", messages=question, temperature=0)
    client.chat.completions.create(model="support", messages=question, temperature=0)  # exact hit
    for _ in client.chat.completions.create(
        model="support",
        stream=True,
        temperature=0,
        messages=[{"role": "user", "content": "How do I reset my password?"}],
    ):
        pass
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.base_url, api_key="sk-wrong-0123456789", max_retries=0).chat.completions.create(
            model="support", messages=question
        )
    data = samples(httpx.get(gateway.url + "/metrics", timeout=10).text)
    counts = {
        (labels["stream"], labels["cache"]): value
        for labels, value in data["gateway_request_duration_seconds_count"]
        if value
    }
    assert counts == {("false", "miss"): 1, ("false", "hit-exact"): 1, ("true", "miss"): 1}
    errors = {labels["status_class"]: value for labels, value in data["gateway_errors_total"] if value}
    assert errors == {"4xx": 1}


def test_overhead_and_latency_histograms_reach_a_minute():
    metrics = Metrics()
    for seconds in (0.3, 0.636, 0.7, 0.9):
        metrics.overhead.labels("support", "miss").observe(seconds)
        metrics.request_duration.labels("support", "other", "false", "miss").observe(seconds * 50)
    data = samples(metrics.exposition().decode())
    assert 0.5 < quantile(data, "gateway_overhead_seconds", 0.95) <= 1.0  # was flat at the 0.1 s top bucket
    assert 30 < quantile(data, "gateway_request_duration_seconds", 0.95) <= 60


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_circuit_gauges_follow_the_shared_state_not_this_process_calls(redis_io):
    """Another replica opens the breaker; this one reads it on its timer, and sees it close after the
    cooldown although it never calls the deployment (the alert kept firing 16 minutes after recovery)."""
    config = build_config(
        {
            "auth": {"open": True},
            "deployments": {"fallback": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "rpm": 100, "tpm": 5000}},
            "models": {"m": {"deployments": ["fallback"]}},
            "pricing_file": "pricing.yaml",
            "intents_file": "intents.yaml",
        }
    )
    breaker_config = BreakerConfig(failures=2, window_s=10, cooldown_s=5)
    clock = Clock()
    other = CircuitBreaker(breaker_config, redis=redis_io.use("breaker"), clock=clock, sync_s=0)
    mine = CircuitBreaker(breaker_config, redis=redis_io.use("breaker"), clock=clock, sync_s=0)
    metrics = Metrics()
    budget = UpstreamBudget(config, make_windows(redis_io.use("budget")))
    refresher = GaugeRefresher(config, metrics, mine, budget, redis_io.client)

    await refresher.refresh()
    assert metrics.circuit_open.labels("fallback")._value.get() == 0
    for _ in range(2):
        await other.failure(await other.allow("fallback"))
    await refresher.refresh()
    assert metrics.circuit_open.labels("fallback")._value.get() == 1
    assert metrics.deployment_state.labels("fallback")._value.get() == 2
    clock.now += 6  # cooldown over, nobody calls it: no longer open (the next request will probe)
    await refresher.refresh()
    assert metrics.circuit_open.labels("fallback")._value.get() == 0
    assert metrics.deployment_state.labels("fallback")._value.get() == 1

    grant = await budget.acquire("fallback", config.deployments["fallback"], "normal", 40)
    assert grant.ok
    await refresher.refresh()
    assert metrics.quota_remaining.labels("fallback", "requests")._value.get() == 99
    assert metrics.quota_remaining.labels("fallback", "tokens")._value.get() == 4960
    assert metrics.redis_up._value.get() == 1
    assert metrics.process_memory._value.get() > 0 and metrics.process_cpu._value.get() > 0
