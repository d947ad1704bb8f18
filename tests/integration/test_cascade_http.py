"""Cascade over real HTTP with the openai SDK: uncertain-band requests are answered light first and escalated
to heavy when the light answer shows it could not cope (the mock light upstream echoes the prompt's start,
so a prompt that starts with "I'm not sure" gets an unsure light answer)."""

import httpx
import openai
import pytest

from gateway.routing.cascade import CascadeConfig, falls_short
from tests.conftest import HEAVY_MODEL, LIGHT_MODEL, TEST_KEY, base_config, metric

NO_CACHE = {"x-gateway-cache": "bypass"}


def cascade_gateway(start_gateway, light_mock, heavy_mock, **cascade):
    # threshold 1.0 with a band of 1.0: every request is in the uncertain band, whatever its score
    priced = {"base_url": light_mock.url, "model": LIGHT_MODEL, "price_as": "gpt-4o-mini"}
    config = base_config(
        light_mock.url,
        heavy_mock.url,
        deployments={"light": priced},
        models={
            "support": {
                "deployments": ["light"],
                "heavy": ["heavy"],
                "difficulty_threshold": 1.0,
                "sticky_heavy": False,
                "cascade": {"band": 1.0, **cascade},
            }
        },
    )
    gw = start_gateway(config)
    return gw, openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)


def ask(client, text, **kwargs):
    raw = client.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": text}], extra_headers=NO_CACHE, **kwargs
    )
    return raw.parse(), raw.headers


def test_a_light_answer_that_copes_is_kept(start_gateway, light_mock, heavy_mock):
    gw, client = cascade_gateway(start_gateway, light_mock, heavy_mock)
    answer, headers = ask(client, "Where can I download the invoice for my last order?")
    assert answer.model == LIGHT_MODEL and headers["x-gateway-tier"] == "light"
    scrape = httpx.get(gw.url + "/metrics").text
    assert metric(scrape, "gateway_cascade_total", model="support", outcome="kept") == 1
    assert metric(scrape, "gateway_cascade_total", outcome="escalated") == 0


def test_an_unsure_or_truncated_light_answer_is_escalated(start_gateway, light_mock, heavy_mock):
    gw, client = cascade_gateway(start_gateway, light_mock, heavy_mock)
    answer, headers = ask(client, "I'm not sure the neighbour who signed for my parcel is liable, is he?")
    assert answer.model == HEAVY_MODEL and headers["x-gateway-tier"] == "heavy"
    assert headers["x-gateway-served-by"] == "heavy"
    answer, headers = ask(client, "Where is my parcel?", max_tokens=2)  # the light answer is cut: length
    assert answer.model == HEAVY_MODEL
    scrape = httpx.get(gw.url + "/metrics").text
    assert metric(scrape, "gateway_cascade_total", outcome="escalated", reason="unsure") == 1
    assert metric(scrape, "gateway_cascade_total", outcome="escalated", reason="truncated") == 1
    assert metric(scrape, "gateway_cascade_added_seconds_count", model="support") == 2
    assert metric(scrape, "gateway_cascade_light_cost_usd_total", model="support") > 0


def test_streams_and_requests_outside_the_band_are_not_cascaded(start_gateway, light_mock, heavy_mock):
    gw, client = cascade_gateway(start_gateway, light_mock, heavy_mock, enabled=False)
    answer, _ = ask(client, "I'm not sure the neighbour who signed for my parcel is liable, is he?")
    assert answer.model == LIGHT_MODEL  # cascade configured but off
    gw, client = cascade_gateway(start_gateway, light_mock, heavy_mock)
    stream = client.chat.completions.create(
        model="support",
        stream=True,
        extra_headers=NO_CACHE,
        messages=[{"role": "user", "content": "I'm not sure the neighbour who signed for my parcel is liable, is he?"}],
    )
    assert {chunk.model for chunk in stream} == {LIGHT_MODEL}  # non-stream only
    assert metric(httpx.get(gw.url + "/metrics").text, "gateway_cascade_total") == 0


@pytest.mark.parametrize(
    ("choice", "reason"),
    [
        ({"finish_reason": "length", "message": {"content": "The answer is"}}, "truncated"),
        ({"finish_reason": "stop", "message": {"content": None, "refusal": "I can't help with that."}}, "refusal"),
        (
            {"finish_reason": "stop", "message": {"content": "Désolé, je ne peux pas vous aider sur ce point."}},
            "refusal",
        ),
        ({"finish_reason": "stop", "message": {"content": "Je ne suis pas sûr, cela dépend du contrat."}}, "unsure"),
        ({"finish_reason": "stop", "message": {"content": "  "}}, "empty"),
        (
            {
                "finish_reason": "stop",
                "message": {"content": "It is 42."},
                "logprobs": {"content": [{"token": "It", "logprob": -2.5}, {"token": " is", "logprob": -1.9}]},
            },
            "low_logprobs",
        ),
        (
            {
                "finish_reason": "stop",
                "message": {"content": "It is 42."},
                "logprobs": {"content": [{"token": "It", "logprob": -0.1}, {"token": " is", "logprob": -0.2}]},
            },
            None,
        ),
        ({"finish_reason": "tool_calls", "message": {"content": None, "tool_calls": [{"id": "t"}]}}, None),
    ],
)
def test_falls_short(choice, reason):
    assert falls_short({"choices": [choice]}, CascadeConfig()) == reason
    assert falls_short({"choices": []}, CascadeConfig()) == "malformed"
