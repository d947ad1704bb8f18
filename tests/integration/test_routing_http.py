"""Difficulty routing over real HTTP with the openai SDK: hard requests reach the heavy upstream."""

import httpx
import openai
import pytest

from gateway.cli import main as cli_main
from gateway.embeddings import Embedder
from tests.conftest import HEAVY_MODEL, LIGHT_MODEL, REDIS_URL, TEST_KEY, base_config, sync_redis_client

EASY = "Hi, where can I download the invoice for my last order?"
HARD = (
    "Under EU consumer law, can a shop legally refuse a refund for a defective digital product that I "
    "already downloaded? Explain the legal reasoning and the exceptions."
)
NO_CACHE = {"x-gateway-cache": "bypass"}


def ask(client, text, **headers):
    raw = client.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": text}], extra_headers={**NO_CACHE, **headers}
    )
    return raw.parse(), raw.headers


@pytest.fixture
def sdk(gateway):
    return openai.OpenAI(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0)


def test_hard_request_reaches_the_heavy_model_and_says_why(sdk):
    answer, headers = ask(sdk, HARD)
    assert answer.model == HEAVY_MODEL
    assert headers["x-gateway-tier"] == "heavy"
    assert float(headers["x-gateway-difficulty"]) >= 0.5
    assert headers["x-gateway-served-by"] == "heavy"

    answer, headers = ask(sdk, EASY)
    assert answer.model == LIGHT_MODEL
    assert headers["x-gateway-tier"] == "light"
    assert float(headers["x-gateway-difficulty"]) < 0.5


def test_the_configured_threshold_decides(start_gateway, light_mock, heavy_mock, gateway, sdk):
    _, headers = ask(sdk, EASY)
    score = float(headers["x-gateway-difficulty"])
    for threshold, expected in ((max(score - 0.01, 0.0), HEAVY_MODEL), (min(score + 0.01, 1.0), LIGHT_MODEL)):
        config = base_config(
            light_mock.url,
            heavy_mock.url,
            models={"support": {"deployments": ["light"], "heavy": ["heavy"], "difficulty_threshold": threshold}},
        )
        gw = start_gateway(config)
        client = openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0)
        assert ask(client, EASY)[0].model == expected, threshold


def test_a_conversation_that_went_heavy_stays_heavy(sdk):
    assert ask(sdk, HARD, **{"x-session-id": "conv-42"})[0].model == HEAVY_MODEL
    answer, headers = ask(sdk, EASY, **{"x-session-id": "conv-42"})
    assert answer.model == HEAVY_MODEL and headers["x-gateway-tier"] == "heavy"
    assert ask(sdk, EASY, **{"x-session-id": "another"})[0].model == LIGHT_MODEL


def test_only_allowed_keys_may_force_a_tier(gateway, sdk):
    assert ask(sdk, EASY, **{"x-gateway-tier": "heavy"})[0].model == HEAVY_MODEL  # the test key may
    plain = openai.OpenAI(base_url=gateway.base_url, api_key="sk-plain-0123456789", max_retries=0)
    assert ask(plain, EASY, **{"x-gateway-tier": "heavy"})[0].model == LIGHT_MODEL  # header ignored
    with pytest.raises(openai.BadRequestError):
        ask(sdk, EASY, **{"x-gateway-tier": "medium"})


def test_without_the_embedding_model_routing_falls_back_to_features(start_gateway, light_mock, heavy_mock):
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url), embedder=Embedder(None))
    assert "features only" in httpx.get(f"{gw.url}/readyz").json()["checks"]["routing"]
    client = openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0)
    assert ask(client, HARD)[0].model == HEAVY_MODEL
    assert ask(client, EASY)[0].model == LIGHT_MODEL
    scorer = gw.state.router.scorer
    assert scorer.score([{"role": "user", "content": HARD}], None).method == "features"


def test_route_explain_prints_score_tier_and_reasons(capsys):
    assert cli_main(["route", "explain", HARD]) == 0
    out = capsys.readouterr().out
    assert "heavy" in out and "legal" in out.lower()


def test_stickiness_is_shared_by_replicas_through_redis(start_gateway, light_mock, heavy_mock):
    import uuid

    prefix = f"gwtest:{uuid.uuid4().hex}:"
    # A generous cache.redis_timeout_ms: on a loaded machine a Redis wait can take longer and the turn is
    # then routed on its own, which is what production wants, not this test.
    config = base_config(
        light_mock.url, heavy_mock.url, cache={"redis_timeout_ms": 2000}, redis={"url": REDIS_URL, "prefix": prefix}
    )
    first, second = start_gateway(config), start_gateway(config)
    try:
        one = openai.OpenAI(base_url=first.base_url, api_key=TEST_KEY, max_retries=0)
        two = openai.OpenAI(base_url=second.base_url, api_key=TEST_KEY, max_retries=0)
        assert ask(one, HARD, **{"x-session-id": "conv-7"})[0].model == HEAVY_MODEL
        answer, headers = ask(two, EASY, **{"x-session-id": "conv-7"})  # the other replica
        assert answer.model == HEAVY_MODEL and headers["x-gateway-tier"] == "heavy"
        assert ask(two, EASY, **{"x-session-id": "conv-8"})[0].model == LIGHT_MODEL
    finally:
        client = sync_redis_client()
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()
