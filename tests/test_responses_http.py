"""/v1/responses through real HTTP with the official openai SDK (`client.responses.create`, whole and
streamed), against the demo-style gateway: the chat pipeline serves it (cache, routing, metrics)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import TEST_KEY


def test_create(client: openai.OpenAI, gateway):
    raw = client.responses.with_raw_response.create(
        model="support", input="Where is my parcel?", instructions="Be brief.", max_output_tokens=40
    )
    response = raw.parse()
    assert response.object == "response" and response.status == "completed" and response.store is False
    assert response.output_text and response.output[0].type == "message"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert raw.headers["x-gateway-intent"] and raw.headers["x-gateway-served-by"]


def test_stream(client: openai.OpenAI):
    with client.responses.stream(model="support", input=[{"role": "user", "content": "Where is my parcel?"}]) as s:
        deltas = [event.delta for event in s if event.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert deltas and "".join(deltas) == final.output_text
    assert final.status == "completed" and final.usage.total_tokens > 0


def test_stream_with_create(client: openai.OpenAI):
    events = list(client.responses.create(model="support", input="How do I get a refund?", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text


def test_same_question_both_ways_shares_the_cache(client: openai.OpenAI, gateway):
    question = "How do I reset my password?"
    client.chat.completions.create(model="support", messages=[{"role": "user", "content": question}], temperature=0)
    raw = client.responses.with_raw_response.create(model="support", input=question, temperature=0)
    assert raw.headers["x-gateway-cache"] == "hit-exact"
    assert raw.parse().output_text


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "support", "input": "hi", "previous_response_id": "resp_123"}, "previous_response_id"),
        ({"model": "support", "input": [{"role": {}, "content": "hi"}]}, "input[0].role"),
        ({"model": "support", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "support", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"model": "support"}, "input"),
    ],
)
def test_refusals_are_400_with_param(gateway, body, param):
    response = httpx.post(gateway.base_url + "/responses", json=body, headers={"authorization": f"Bearer {TEST_KEY}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_unknown_model_and_bad_key(gateway):
    response = httpx.post(
        gateway.base_url + "/responses",
        json={"model": "nope", "input": "hi"},
        headers={"authorization": f"Bearer {TEST_KEY}"},
    )
    assert response.status_code == 404
    assert httpx.post(gateway.base_url + "/responses", json={"model": "support", "input": "hi"}).status_code == 401


def test_retrieve_a_model(client: openai.OpenAI, gateway):
    model = client.models.retrieve("support")
    assert model.id == "support" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("nope")
    assert missing.value.body["code"] == "model_not_found" and missing.value.body["param"] == "model"
    assert httpx.get(gateway.base_url + "/models/support").status_code == 401
