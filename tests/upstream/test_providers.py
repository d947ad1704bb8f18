"""Provider adapters against a mock that enforces each provider's URL, auth header and error shapes: the
Azure one through the gateway with the openai SDK (stream and non-stream, 429 with Azure's headers, a 404
logged with URL and deployment, never the key), and each adapter on its own."""

from __future__ import annotations

import logging

import openai
import orjson
import pytest

from gateway.config import build_config
from gateway.errors import UpstreamSkipped, UpstreamStatus
from gateway.mock_upstream import MockServerThread, MockSettings
from gateway.upstream.budget import MemoryWindows, UpstreamBudget
from gateway.upstream.client import make_transport
from gateway.upstream.providers import AzureOpenAI, Upstream
from gateway.upstream.retry import retry_after_s
from tests.conftest import TEST_KEY, base_config

AZURE_KEY = "az-secret-key-0123456789"
CHAT = orjson.dumps({"messages": [{"role": "user", "content": "hi"}]})
HELLO = [{"role": "user", "content": "Where is my parcel?"}]


@pytest.fixture
def azure_mock():
    with MockServerThread(
        MockSettings(served_model="gpt-4o-2024-08-06", api_key=AZURE_KEY, azure_deployments=("prod-4o",))
    ) as mock:
        yield mock


def azure_deployment(mock, **extra) -> dict:
    return {
        "provider": "azure",
        "base_url": mock.url.removesuffix("/v1"),
        "model": "gpt-4o",
        "azure_deployment": "prod-4o",
        "api_version": "2024-06-01",
        "api_key_env": "AZURE_TEST_KEY",
        "timeout": {"connect": 1, "read": 5},
        **extra,
    }


def azure_gateway(start_gateway, light_mock, heavy_mock, azure_mock, **extra):
    config = base_config(
        light_mock.url,
        heavy_mock.url,
        cache={"enabled": False},
        deployments={"az": azure_deployment(azure_mock, **extra)},
        models={"azure": {"deployments": ["az"]}},
    )
    return start_gateway(config)


def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)


@pytest.mark.parametrize("version", ["2024-06-01", "2024-10-21"])  # before and after Azure knew stream_options
def test_azure_through_the_gateway_non_stream_and_stream(
    start_gateway, light_mock, heavy_mock, azure_mock, monkeypatch, version
):
    monkeypatch.setenv("AZURE_TEST_KEY", AZURE_KEY)
    client = sdk(azure_gateway(start_gateway, light_mock, heavy_mock, azure_mock, api_version=version))
    answer = client.chat.completions.create(model="azure", messages=HELLO)
    assert answer.choices[0].message.content and answer.model == "gpt-4o-2024-08-06"
    stats = azure_mock.stats()
    assert stats["last_path"] == f"/openai/deployments/prod-4o/chat/completions?api-version={version}"
    assert stats["last_api_key"] == AZURE_KEY and stats["last_authorization"] is None

    chunks = list(client.chat.completions.create(model="azure", messages=HELLO, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer.choices[0].message.content
    assert all(c.usage is None for c in chunks)  # not asked for: not shown
    assert azure_mock.stats()["status_counts"] == {"200": 2}
    if version >= "2024-09-01":
        chunks = list(
            client.chat.completions.create(
                model="azure", messages=HELLO, stream=True, stream_options={"include_usage": True}
            )
        )
        assert chunks[-1].usage.total_tokens > 0


def test_azure_429_is_retried_after_the_wait_azure_asks_for(
    start_gateway, light_mock, heavy_mock, azure_mock, monkeypatch
):
    monkeypatch.setenv("AZURE_TEST_KEY", AZURE_KEY)
    azure_mock.configure(fail_first_n=1, fail_status=429, retry_after_s=1.0)
    client = sdk(azure_gateway(start_gateway, light_mock, heavy_mock, azure_mock))
    answer = client.chat.completions.with_raw_response.create(model="azure", messages=HELLO)
    assert answer.status_code == 200
    assert azure_mock.stats()["status_counts"] == {"429": 1, "200": 1}
    assert float(answer.headers["x-gateway-overhead-ms"]) >= 0  # served after the one retry


def test_azure_404_names_url_and_deployment_in_the_log_never_the_key(
    start_gateway, light_mock, heavy_mock, azure_mock, monkeypatch, caplog
):
    monkeypatch.setenv("AZURE_TEST_KEY", AZURE_KEY)
    caplog.set_level(logging.WARNING, logger="gateway.upstream")
    client = sdk(azure_gateway(start_gateway, light_mock, heavy_mock, azure_mock, azure_deployment="no-such"))
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="azure", messages=HELLO)
    assert caught.value.code == "DeploymentNotFound"  # Azure's code, in OpenAI's shape
    assert caught.value.body["type"] == "invalid_request_error"
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "gateway.upstream")
    assert "deployment az: the upstream answered 404" in logged
    assert f"{azure_mock.url.removesuffix('/v1')}/openai/deployments/no-such/chat/completions" in logged
    assert AZURE_KEY not in caplog.text


async def upstream_for(mock, deployment: dict, budget=None, environ=None) -> Upstream:
    config = build_config(
        {"auth": {"open": True}, "deployments": {"d": deployment}, "models": {"m": {"deployments": ["d"]}}}
    )
    return Upstream("d", config.deployments["d"], make_transport("aiohttp", 10), budget, environ=environ)


async def test_azure_errors_come_back_in_openai_shape_with_azure_headers(azure_mock):
    upstream = await upstream_for(azure_mock, azure_deployment(azure_mock), environ={"AZURE_TEST_KEY": AZURE_KEY})
    try:
        answer = await upstream.post("/chat/completions", CHAT)
        assert answer.status == 200
        with pytest.raises(UpstreamStatus) as caught:
            await upstream.post("/chat/completions", orjson.dumps({"messages": []}))
        body = orjson.loads(caught.value.upstream_body)["error"]
        assert caught.value.status == 400 and body["type"] == "invalid_request_error" and body["message"]
        azure_mock.configure(fail_first_n=1, fail_status=429, retry_after_s=2.0)
        with pytest.raises(UpstreamStatus) as caught:
            await upstream.post("/chat/completions", CHAT)
        error = caught.value
        assert error.status == 429 and error.retryable
        headers = {k.lower(): v for k, v in error.upstream_headers.items()}
        assert headers["retry-after"] == "2" and headers["x-ratelimit-remaining-tokens"] == "0"
        assert retry_after_s(error.upstream_headers) == 2.0
        body = orjson.loads(error.upstream_body)["error"]
        assert body["type"] == "rate_limit_error" and "Please retry after 2 seconds" in body["message"]
    finally:
        await upstream.transport.aclose()


async def test_azure_refuses_a_bearer_key_and_a_missing_api_version(azure_mock):
    transport = make_transport("aiohttp", 10)
    base = azure_mock.url.removesuffix("/v1") + "/openai/deployments/prod-4o/chat/completions"
    timeouts = (
        build_config(
            {
                "auth": {"open": True},
                "deployments": {"d": {"base_url": "http://x", "model": "m"}},
                "models": {"m": {"deployments": ["d"]}},
            }
        )
        .deployments["d"]
        .timeout
    )
    try:
        with pytest.raises(UpstreamStatus) as caught:
            await transport.post(
                base + "?api-version=2024-06-01", CHAT, {"authorization": f"Bearer {AZURE_KEY}"}, timeouts
            )
        assert caught.value.status == 401 and orjson.loads(caught.value.upstream_body)["error"]["code"] == "401"
        with pytest.raises(UpstreamStatus) as caught:
            await transport.post(base, CHAT, {"api-key": AZURE_KEY}, timeouts)
        assert caught.value.status == 404
    finally:
        await transport.aclose()


def test_an_azure_429_with_only_a_message_gets_a_retry_after():
    adapter = AzureOpenAI(
        build_config(
            {
                "auth": {"open": True},
                "deployments": {
                    "d": {"provider": "azure", "base_url": "https://res.openai.azure.com", "model": "gpt-4o"}
                },
                "models": {"m": {"deployments": ["d"]}},
            }
        ).deployments["d"]
    )
    error = UpstreamStatus(
        429,
        orjson.dumps(
            {
                "error": {
                    "code": "429",
                    "message": ("Requests to the ChatCompletions_Create Operation ... Please retry after 7 seconds."),
                }
            }
        ),
        {},
    )
    adapter.normalise(error)
    assert retry_after_s(error.upstream_headers) == 7.0
    assert orjson.loads(error.upstream_body)["error"]["code"] is None


def test_a_pasted_azure_url_fills_deployment_and_version():
    config = build_config(
        {
            "auth": {"open": True},
            "deployments": {
                "d": {
                    "provider": "azure",
                    "model": "gpt-4o",
                    "base_url": "https://res.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-06-01",
                }
            },
            "models": {"m": {"deployments": ["d"]}},
        }
    )
    deployment = config.deployments["d"]
    assert (deployment.base_url, deployment.azure_deployment, deployment.api_version) == (
        "https://res.openai.azure.com",
        "prod-4o",
        "2024-06-01",
    )
    assert (
        AzureOpenAI(deployment).url("/chat/completions")
        == "https://res.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-06-01"
    )


async def test_openai_compatible_sends_a_bearer_key_to_base_url():
    with MockServerThread(MockSettings(api_key="sk-up")) as mock:
        upstream = await upstream_for(
            mock, {"base_url": mock.url, "model": "m", "api_key_env": "UP"}, environ={"UP": "sk-up"}
        )
        try:
            assert (await upstream.post("/chat/completions", CHAT)).status == 200
            assert (
                mock.stats()["last_authorization"] == "Bearer sk-up"
                and mock.stats()["last_path"] == "/v1/chat/completions"
            )
        finally:
            await upstream.transport.aclose()


async def test_each_key_has_its_own_quota():
    with MockServerThread(MockSettings(accepted_keys=("sk-a", "sk-b"))) as mock:
        deployment = {
            "base_url": mock.url,
            "model": "m",
            "api_keys": [{"env": "KEY_A", "rpm": 3}, {"env": "KEY_B", "rpm": 3}],
        }  # 2 each for normal traffic
        config = build_config(
            {"auth": {"open": True}, "deployments": {"d": deployment}, "models": {"m": {"deployments": ["d"]}}}
        )
        budget = UpstreamBudget(config, MemoryWindows())
        upstream = await upstream_for(mock, deployment, budget, environ={"KEY_A": "sk-a", "KEY_B": "sk-b"})
        try:
            used = []
            for _ in range(4):
                await upstream.post("/chat/completions", CHAT)
                used.append(mock.stats()["last_authorization"])
            assert sorted(used) == ["Bearer sk-a"] * 2 + ["Bearer sk-b"] * 2
            with pytest.raises(UpstreamSkipped) as caught:
                await upstream.post("/chat/completions", CHAT)
            assert caught.value.reason == "budget" and caught.value.wait_s > 0
        finally:
            await upstream.transport.aclose()


async def test_a_keys_token_estimate_is_corrected_by_the_real_usage():
    from gateway.context import settle_holds
    from gateway.request import ChatRequest

    with MockServerThread(MockSettings(accepted_keys=("sk-a",))) as mock:
        deployment = {"base_url": mock.url, "model": "m", "api_keys": [{"env": "KEY_A", "tpm": 100_000}]}
        config = build_config(
            {"auth": {"open": True}, "deployments": {"d": deployment}, "models": {"m": {"deployments": ["d"]}}}
        )
        windows = MemoryWindows()
        budget = UpstreamBudget(config, windows)
        upstream = await upstream_for(mock, deployment, budget, environ={"KEY_A": "sk-a"})
        req = ChatRequest(
            body={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 500},
            alias="m",
            headers={},
        )
        try:
            answer = await upstream.post("/chat/completions", CHAT, req)
            assert windows.used("budget:d:KEY_A") == (1, 501)  # the estimate: 1 prompt token + max_tokens
            await settle_holds(req.holds, orjson.loads(answer.body)["usage"], "d")
            real = orjson.loads(answer.body)["usage"]["total_tokens"]
            assert windows.used("budget:d:KEY_A") == (1, real) and real < 501
        finally:
            await upstream.transport.aclose()
