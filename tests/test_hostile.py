"""Hostile probes through real HTTP: no body makes a 500. What OpenAI would refuse gets its 400 with `param`;
what it accepts reaches the upstream exactly (big integers, deep nesting)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import TEST_KEY, base_config
from tests.recording_upstream import RecordingUpstream

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def upstream():
    with RecordingUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def gw(upstream, embedder):
    from tests.conftest import GatewayServer

    with GatewayServer(base_config(upstream.url, upstream.url), embedder=embedder) as server:
        yield server


def post(gw, body, path="/chat/completions", headers: dict | None = None) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(
        gw.base_url + path,
        content=content,
        timeout=30,
        headers={**AUTH, "content-type": "application/json", **(headers or {})},
    )


def assert_400(response: httpx.Response, param: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


@pytest.mark.parametrize("role", [{}, [], ["user"], 1, None, True, "robot"])
def test_a_role_that_is_not_a_known_string_is_a_400(gw, role):
    assert_400(post(gw, {"model": "support", "messages": [{"role": role, "content": "hi"}]}), "messages[0].role")


@pytest.mark.parametrize(
    "content, param",
    [
        ([{"type": "text", "text": 5}], "messages[0].content[0].text"),
        ([{"type": "text", "text": {"a": 1}}], "messages[0].content[0].text"),
        ([{"type": "text"}], "messages[0].content[0].text"),
        (["hi"], "messages[0].content[0]"),
        ([{"text": "hi"}], "messages[0].content[0].type"),
        ([{"type": "image_url", "image_url": "x"}], "messages[0].content[0].image_url"),
        ({"type": "text", "text": "hi"}, "messages[0].content"),
    ],
)
def test_bad_content_parts_are_a_400(gw, content, param):
    assert_400(post(gw, {"model": "support", "messages": [{"role": "user", "content": content}]}), param)


def test_big_integers_reach_the_upstream_exactly(gw, upstream):
    raw = (
        '{"model": "support", "seed": 99999999999999999999999, "temperature": 0, '
        '"messages": [{"role": "user", "content": "hi"}]}'
    )
    response = post(gw, raw)
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-cache"] == "bypass"
    sent = upstream.bodies[-1]
    assert b'"seed": 99999999999999999999999' in sent and b"1e+23" not in sent
    assert json.loads(sent)["model"] != "support"  # the deployment's model replaced the alias


@pytest.mark.parametrize("headers", [{}, {"x-gateway-cache": "bypass"}])
@pytest.mark.parametrize("stream", [False, True])
def test_nesting_1000_deep_is_forwarded(gw, upstream, headers, stream):
    deep = "[" * 1000 + "]" * 1000
    raw = (
        '{"model": "support", "stream": %s, "metadata": {"deep": %s}, "messages": [{"role": "user", '
        '"content": "hi"}]}' % ("true" if stream else "false", deep)
    )
    response = post(gw, raw, headers=headers)
    assert response.status_code == 200, response.text
    assert deep.encode() in upstream.bodies[-1]
    if stream:
        assert b"data: [DONE]" in response.content


def test_nesting_beyond_what_json_parsers_read_is_a_400(gw):
    deep = "[" * 5000 + "]" * 5000
    response = post(gw, '{"model": "support", "messages": %s}' % deep)
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "support", "input": 5}, "input"),
        ({"model": "support", "input": {"a": 1}}, "input"),
        ({"model": "support", "input": []}, "input"),
        ({"model": "support", "input": ""}, "input"),
        ({"model": "support", "input": [1, "a"]}, "input"),
        ({"model": "support", "input": [[1, 2], [-1]]}, "input"),
        ({"model": "support", "input": ["a"] * 2049}, "input"),
        ({"model": "support", "input": "hi", "dimensions": 74_601_598_333_297}, "dimensions"),
        ({"model": "support", "input": "hi", "dimensions": 0}, "dimensions"),
        ({"model": "support", "input": "hi", "dimensions": "8"}, "dimensions"),
        ({"model": "support", "input": "hi", "encoding_format": "utf8"}, "encoding_format"),
        ({"model": 5, "input": "hi"}, "model"),
    ],
)
def test_embedding_inputs_openai_refuses_are_a_400(gw, body, param):
    assert_400(post(gw, body, path="/embeddings"), param)


@pytest.mark.parametrize("value", ["hi", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
def test_embedding_inputs_openai_accepts_are_forwarded(gw, upstream, value):
    response = post(gw, {"model": "support", "input": value, "dimensions": 256}, path="/embeddings")
    assert response.status_code == 200, response.text
    assert json.loads(upstream.bodies[-1])["input"] == value


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"null",
        b"[]",
        b"\xff\xfe",
        b'{"model": "support"',
        b"1" * 400,
        b'{"model": "support", "messages": [{"role": "user", "content": "\\ud800"}]}',
    ],
)
@pytest.mark.parametrize("path", ["/chat/completions", "/embeddings"])
def test_malformed_bodies_are_a_4xx(gw, raw, path):
    response = post(gw, raw, path=path)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


# -------------------------------------------------------------------------------------- the breaker case


def poison_config(url: str, **breaker):
    """Model `chat` on three deployments of one upstream, one try each, breakers that open after 3 failures."""
    timeout = {"connect": 1, "read": 5}
    deployments = {name: {"base_url": url, "model": f"{name}-model", "timeout": timeout} for name in ("a", "b", "c")}
    return base_config(
        url,
        url,
        deployments=deployments,
        models={"chat": {"deployments": ["a"], "fallbacks": ["b", "c"]}},
        resilience={
            "retry": {"attempts": 1, "deadline_s": 10},
            "breaker": {"failures": 3, "window_s": 30, "cooldown_s": 30, **breaker},
        },
        cache={"enabled": False},
        embedding={"enabled": False},
    )


def test_a_request_that_fails_the_same_way_twice_is_its_own_fault(start_gateway):
    with RecordingUpstream() as up:
        up.answer = lambda body: (
            (
                500,
                {
                    "error": {
                        "message": "bad field sk-abcdef123456 in request",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
            if "poison" in json.dumps(body)
            else (200, None)
        )
        gw = start_gateway(poison_config(up.url))
        poison = {"model": "chat", "messages": [{"role": "user", "content": "poison"}]}
        for _ in range(3):
            calls = len(up.bodies)
            response = post(gw, poison)
            assert_400(response, None)
            error = response.json()["error"]
            assert error["code"] == "upstream_rejected_request"
            assert "a and b both failed" in error["message"] and "bad field" in error["message"]
            assert "sk-abcdef" not in response.text
            assert len(up.bodies) - calls == 2  # two deployments, not the whole chain
        breaker = gw.state.dispatcher.breaker
        assert [breaker.state(name) for name in "abc"] == ["closed"] * 3
        ok = post(gw, {"model": "chat", "messages": HI})
        assert ok.status_code == 200 and ok.headers["x-gateway-served-by"] == "a"


def test_a_deployment_that_fails_where_another_serves_is_still_counted(start_gateway):
    with RecordingUpstream() as up:
        up.answer = lambda body: (
            (500, {"error": {"message": "boom", "type": "server_error"}})
            if body.get("model") == "a-model"
            else (200, None)
        )
        gw = start_gateway(poison_config(up.url))
        for _ in range(3):
            response = post(gw, {"model": "chat", "messages": HI})
            assert response.status_code == 200 and response.headers["x-gateway-served-by"] == "b"
        assert gw.state.dispatcher.breaker.state("a") == "open"


def test_an_open_circuit_says_so_and_not_deadline(start_gateway):
    with RecordingUpstream() as up:
        up.answer = lambda body: (503, {"error": {"message": "overloaded", "type": "server_error"}})
        gw = start_gateway(poison_config(up.url))
        for _ in range(3):
            assert post(gw, {"model": "chat", "messages": HI}).status_code == 502  # each deployment fails once
        calls = len(up.bodies)
        response = post(gw, {"model": "chat", "messages": HI})
        assert len(up.bodies) == calls  # nobody called
        assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
        error = response.json()["error"]
        assert error["code"] == "circuit_open" and "circuit of a is open" in error["message"]
        assert "no deployment was called" in error["message"] and "deadline" not in error["message"]


def test_405_says_which_methods_are_allowed(gw):
    response = httpx.get(gw.base_url + "/chat/completions", headers=AUTH)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_logprobs_requests_are_not_cached(gw):
    body = {
        "model": "support",
        "messages": [{"role": "user", "content": "How do I reset my password?"}],
        "logprobs": True,
        "top_logprobs": 2,
        "temperature": 0,
    }
    assert post(gw, body).headers["x-gateway-cache"] == "bypass"


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_rate_limit_headers_and_request_id_are_passed_on(gw, upstream, stream):
    upstream.headers = {
        "x-ratelimit-remaining-requests": "99",
        "x-ratelimit-reset-tokens": "6m0s",
        "x-request-id": "req_upstream_1",
        "openai-processing-ms": "12",
    }
    try:
        response = post(
            gw, {"model": "support", "stream": stream, "messages": [{"role": "user", "content": f"headers {stream}"}]}
        )
    finally:
        upstream.headers = {}
    assert response.status_code == 200
    assert response.headers["x-ratelimit-remaining-requests"] == "99"
    assert response.headers["x-ratelimit-reset-tokens"] == "6m0s" and response.headers["openai-processing-ms"] == "12"
    assert response.headers["x-upstream-request-id"] == "req_upstream_1"
    assert response.headers["x-request-id"] != "req_upstream_1"


def test_a_cached_answer_keeps_openais_shape(gw):
    body = {
        "model": "support",
        "temperature": 0,
        "service_tier": "flex",
        "messages": [{"role": "user", "content": "What are your opening hours?"}],
    }
    first = post(gw, body)
    second = post(gw, body)
    assert first.status_code == second.status_code == 200 and second.headers["x-gateway-cache"] == "hit-exact"
    answer = second.json()
    assert answer["service_tier"] == "flex" and "system_fingerprint" in answer
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert answer["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
