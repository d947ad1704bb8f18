"""Canary over real HTTP: the admin API flips the split at run time, users stick, a bad canary rolls back."""

import httpx
import openai
import pytest

from gateway.auth import hash_key
from gateway.cli import main as cli_main
from gateway.mock_upstream import MockServerThread, MockSettings
from tests.conftest import LIGHT_MODEL, TEST_KEY, base_config

CANARY_MODEL = "canary-model"
ADMIN_KEY = "sk-admin-0123456789"


@pytest.fixture
def canary_mock():
    with MockServerThread(MockSettings(served_model=CANARY_MODEL)) as mock:
        yield mock


@pytest.fixture
def canary_gateway(start_gateway, light_mock, heavy_mock, canary_mock):
    timeout = {"connect": 1, "read": 5}
    config = base_config(
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
                "canary": {"deployments": ["canary"], "percent": 0, "rollback_window": 10, "rollback_error_rate": 0.5},
            }
        },
        resilience={"breaker": {"failures": 1000}},
    )
    return start_gateway(config)


def ask(client, user):
    # The cache serves every variant alike: bypass it to see which deployment answers.
    return client.chat.completions.with_raw_response.create(
        model="support",
        user=user,
        messages=[{"role": "user", "content": "Where is my parcel?"}],
        extra_headers={"x-gateway-cache": "bypass"},
    )


def set_percent(gateway, percent, key=ADMIN_KEY):
    return httpx.put(
        f"{gateway.url}/admin/canary/support", json={"percent": percent}, headers={"authorization": f"Bearer {key}"}
    )


def test_percent_changes_at_run_time_and_users_stick(canary_gateway):
    client = openai.OpenAI(base_url=canary_gateway.base_url, api_key=TEST_KEY, max_retries=0)
    assert ask(client, "u1").parse().model == LIGHT_MODEL

    assert set_percent(canary_gateway, 100).json()["models"]["support"]["percent"] == 100
    raw = ask(client, "u1")
    assert raw.parse().model == CANARY_MODEL
    assert raw.headers["x-gateway-variant"] == "canary"

    assert set_percent(canary_gateway, 50).status_code == 200
    variants = {}
    for user in [f"user-{i}" for i in range(40)]:
        first = ask(client, user).parse().model
        assert all(ask(client, user).parse().model == first for _ in range(2))  # sticky
        variants[user] = first
    assert 5 < sum(v == CANARY_MODEL for v in variants.values()) < 35


def test_admin_api_needs_the_admin_key_and_a_valid_percent(canary_gateway):
    assert set_percent(canary_gateway, 10, key=TEST_KEY).status_code == 401
    bad = set_percent(canary_gateway, 150)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    unknown = httpx.put(
        f"{canary_gateway.url}/admin/canary/nope", json={"percent": 5}, headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert unknown.status_code == 404


def test_cli_sets_and_reads_the_percentage(canary_gateway, capsys):
    assert cli_main(["canary", "set", "support", "12.5", "--url", canary_gateway.url, "--admin-key", ADMIN_KEY]) == 0
    assert cli_main(["canary", "get", "--url", canary_gateway.url, "--admin-key", ADMIN_KEY]) == 0
    out = capsys.readouterr().out
    assert "support: 12.5% to canary" in out
    assert canary_gateway.state.canary.get("support") == 12.5


def test_failing_canary_is_rolled_back_and_users_never_see_its_errors(canary_gateway, canary_mock):
    canary_mock.configure(fail_rate_500=1.0)
    set_percent(canary_gateway, 100)
    client = openai.OpenAI(base_url=canary_gateway.base_url, api_key=TEST_KEY, max_retries=0)
    for i in range(12):
        assert ask(client, f"user-{i}").parse().model == LIGHT_MODEL  # fell back to stable, no error
    assert canary_gateway.state.canary.get("support") == 0.0
    metrics = httpx.get(f"{canary_gateway.url}/metrics").text
    assert 'gateway_canary_rollbacks_total{model="support"} 1.0' in metrics
