"""Errors leave in the OpenAI API's shape, with its status: bad input is 4xx (never 500), upstream failures
are 502/503/504 with a clear message, an upstream's own 4xx reaches the client with its status and body,
and the gateway's upstream key never shows in an answer or a log line.
"""

from __future__ import annotations

import logging
import socket

import httpx
import openai
import pytest

from gateway.mock_upstream import MockServerThread, MockSettings
from tests.conftest import LIGHT_MODEL, TEST_KEY, GatewayServer, base_config

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
HELLO = [{"role": "user", "content": "Where is my parcel?"}]
UPSTREAM_SECRET = "sk-upstream-SECRET-7f3a9c"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_openai_error(response: httpx.Response, status: int, type_: str, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error = body["error"]
    assert error["type"] == type_ and isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    assert "Traceback" not in response.text and UPSTREAM_SECRET not in response.text
    return error


@pytest.fixture(scope="module")
def light_mock():
    with MockServerThread(MockSettings(served_model=LIGHT_MODEL)) as mock:
        yield mock


@pytest.fixture(scope="module")
def gw(light_mock, embedder):
    """Besides the base models: `dead` (a closed port, with an upstream key set) and one model per fault
    the mock injects through a deployment header."""
    deployments = {
        "dead": {
            "base_url": f"http://127.0.0.1:{closed_port()}/v1",
            "model": "dead-model",
            "api_key_env": "DEAD_UPSTREAM_KEY",
            "timeout": {"connect": 1, "read": 2},
        }
    }
    models = {"dead": {"deployments": ["dead"]}}
    for name, headers in FAULTS.items():
        deployments[name] = {
            "base_url": light_mock.url,
            "model": LIGHT_MODEL,
            "headers": headers,
            "timeout": {"connect": 1, "read": 0.5},
        }
        models[name] = {"deployments": [name]}
    config = base_config(
        light_mock.url,
        light_mock.url,
        cache={"enabled": False},
        resilience=ONE_TRY,
        server={"max_body_bytes": 4096},
        deployments=deployments,
        models=models,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEAD_UPSTREAM_KEY", UPSTREAM_SECRET)  # read when the gateway starts
        with GatewayServer(config, embedder=embedder) as server:  # one gateway for the module: starts cost ~1 s
            yield server


# One attempt, no breaker: these tests are about how one failure is rendered (retries and breakers have theirs).
ONE_TRY = {"retry": {"attempts": 1}, "breaker": {"failures": 1000}}


FAULTS = {
    "upstream-400": {"x-mock-status": "400"},
    "upstream-404": {"x-mock-status": "404"},
    "upstream-429": {"x-mock-status": "429", "x-mock-retry-after": "0"},
    "upstream-500": {"x-mock-status": "500"},
    "upstream-503": {"x-mock-status": "503"},
    "upstream-drop": {"x-mock-drop": "1"},
    "upstream-hang": {"x-mock-hang-s": "3"},
}


@pytest.fixture(scope="module")
def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)


def post(gw, body, **kwargs) -> httpx.Response:
    kwargs.setdefault("headers", AUTH)
    if not isinstance(body, dict):
        return httpx.post(gw.base_url + "/chat/completions", content=body, timeout=20, **kwargs)
    return httpx.post(gw.base_url + "/chat/completions", json=body, timeout=20, **kwargs)


# --- bad input: 400 invalid_request_error, never 500 --------------------------------------------------------


def chat(**fields):
    return {"model": "gpt-3.5-turbo", "messages": HELLO, **fields}


BAD_BODIES = {
    "malformed JSON": (b'{"model": "gpt-3.5-turbo", "messages": [', None),
    "empty body": (b"", None),
    "not UTF-8": (b"\xff\xfe{}", None),
    "too deeply nested": (b"[" * 3000, None),
    "an array, not an object": (b"[]", None),
    "missing model": ({"messages": HELLO}, "model"),
    "model not a string": (chat(model=35), "model"),
    "missing messages": ({"model": "gpt-3.5-turbo"}, "messages"),
    "empty messages": (chat(messages=[]), "messages"),
    "messages not a list": (chat(messages="hello"), "messages"),
    "a message not an object": (chat(messages=["hello"]), "messages[0]"),
    "unknown role": (chat(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role"),
    "missing role": (chat(messages=[{"content": "hi"}]), "messages[0].role"),
    "content a number": (chat(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    "user content missing": (chat(messages=[{"role": "user"}]), "messages[0].content"),
    "temperature a string": (chat(temperature="0.5"), "temperature"),
    "temperature out of range": (chat(temperature=3), "temperature"),
    "stream a string": (chat(stream="yes"), "stream"),
    "stream_options a string": (chat(stream=True, stream_options="usage"), "stream_options"),
    "n zero": (chat(n=0), "n"),
    "n a float": (chat(n=1.5), "n"),
    "max_tokens negative": (chat(max_tokens=-1), "max_tokens"),
    "top_p a bool": (chat(top_p=True), "top_p"),
}


@pytest.mark.parametrize("body,param", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_input_is_a_400_in_openai_shape(gw, body, param):
    error = assert_openai_error(post(gw, body), 400, "invalid_request_error")
    assert error["param"] == param


@pytest.mark.parametrize(
    "fields,param",
    [
        ({"n": 0}, "n"),
        ({"temperature": "hot"}, "temperature"),
        ({"messages": []}, "messages"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_bad_input_through_the_sdk(sdk, fields, param):
    kwargs = {"model": "gpt-3.5-turbo", "messages": HELLO}
    extra = {k: fields.pop(k) for k in list(fields) if k != "messages"}
    kwargs.update(fields)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(**kwargs, extra_body=extra)
    assert caught.value.status_code == 400
    assert caught.value.type == "invalid_request_error" and caught.value.param == param


def test_a_body_over_the_limit_is_413(gw, sdk):
    big = chat(messages=[{"role": "user", "content": "x" * 5000}])
    assert_openai_error(post(gw, big), 413, "invalid_request_error", "request_too_large")

    def chunked():  # no content-length: the limit holds while reading
        yield b'{"model":"gpt-3.5-turbo","messages":[{"role":"user","content":"'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    assert_openai_error(post(gw, chunked()), 413, "invalid_request_error", "request_too_large")

    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(**big)
    assert caught.value.status_code == 413 and caught.value.code == "request_too_large"
    assert post(gw, chat()).status_code == 200  # the limit counts bytes, a normal request passes


def test_unknown_model_is_404_model_not_found(gw, sdk):
    error = assert_openai_error(post(gw, chat(model="gpt-9")), 404, "invalid_request_error", "model_not_found")
    assert "gpt-9" in error["message"] and error["param"] == "model"
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as caught:
            sdk.chat.completions.create(model="gpt-9", messages=HELLO, stream=stream)
        assert caught.value.code == "model_not_found"


def test_missing_or_invalid_key_is_401(gw):
    assert_openai_error(post(gw, chat(), headers={}), 401, "authentication_error", "invalid_api_key")
    assert_openai_error(post(gw, chat(), headers={"authorization": "Bearer"}), 401, "authentication_error")
    assert_openai_error(post(gw, chat(), headers={"authorization": "Basic dXNlcjpwYXNz"}), 401, "authentication_error")
    assert_openai_error(post(gw, chat(), headers={"authorization": "Bearer sk-nope"}), 401, "authentication_error")
    bad = openai.OpenAI(base_url=gw.base_url, api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO)
    assert caught.value.status_code == 401 and caught.value.type == "authentication_error"


def test_unknown_route_and_method_are_in_openai_shape(gw):
    assert_openai_error(httpx.get(gw.base_url + "/nothing-here", headers=AUTH), 404, "invalid_request_error")
    assert_openai_error(httpx.get(gw.base_url + "/chat/completions", headers=AUTH), 405, "invalid_request_error")


def test_bad_embeddings_input_is_400(gw):
    response = httpx.post(gw.base_url + "/embeddings", headers=AUTH, content=b"{oops")
    assert_openai_error(response, 400, "invalid_request_error")
    response = httpx.post(gw.base_url + "/embeddings", headers=AUTH, json={"model": "gpt-3.5-turbo"})
    assert assert_openai_error(response, 400, "invalid_request_error")["param"] == "input"


# --- upstream failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_unreachable_upstream_is_a_clear_502_without_the_key(gw, sdk, caplog, stream):
    caplog.set_level(logging.DEBUG)
    error = assert_openai_error(post(gw, chat(model="dead", stream=stream)), 502, "api_error")
    assert "reach the upstream" in error["message"]
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="dead", messages=HELLO, stream=stream)
    assert caught.value.status_code == 502
    assert UPSTREAM_SECRET not in caplog.text
    scrape = httpx.get(gw.url + "/metrics").text
    assert 'gateway_upstream_errors_total{deployment="dead",error="upstream_connect"}' in scrape
    assert UPSTREAM_SECRET not in scrape


def test_the_upstream_key_is_sent_upstream_and_never_shown(start_gateway, heavy_mock, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MOCK_UPSTREAM_KEY", UPSTREAM_SECRET)
    with MockServerThread(MockSettings(served_model=LIGHT_MODEL, api_key=UPSTREAM_SECRET)) as keyed:
        deployments = {
            "keyed": {"base_url": keyed.url, "model": LIGHT_MODEL, "api_key_env": "MOCK_UPSTREAM_KEY"},
            "wrong-key": {"base_url": keyed.url, "model": LIGHT_MODEL, "headers": {"authorization": "Bearer sk-wrong"}},
        }
        gw = start_gateway(
            base_config(
                keyed.url,
                heavy_mock.url,
                cache={"enabled": False},
                resilience=ONE_TRY,
                deployments=deployments,
                models={"keyed": {"deployments": ["keyed"]}, "wrong-key": {"deployments": ["wrong-key"]}},
            )
        )
        ok = post(gw, chat(model="keyed"))
        assert ok.status_code == 200 and UPSTREAM_SECRET not in ok.text
        assert keyed.stats()["last_authorization"] == f"Bearer {UPSTREAM_SECRET}"
        assert TEST_KEY not in keyed.stats()["last_authorization"]  # the client's key stays at the gateway

        # The upstream refusing the gateway's own credentials is not the caller's fault: a 502 that says so,
        # not a 401 that would make the client doubt its (valid) key.
        error = assert_openai_error(post(gw, chat(model="wrong-key")), 502, "api_error")
        assert "credentials" in error["message"]
        assert keyed.stats()["last_authorization"] == "Bearer sk-wrong"
    assert UPSTREAM_SECRET not in caplog.text


@pytest.mark.parametrize(
    "model,status,type_",
    [
        ("upstream-400", 400, "invalid_request_error"),
        ("upstream-404", 404, "invalid_request_error"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_4xx_keeps_its_status_and_reason_rebuilt(gw, light_mock, model, status, type_, stream):
    """Rebuilt by the gateway, never passed verbatim (issue 11): same status, type and code, its message."""
    direct = httpx.post(light_mock.url + "/chat/completions", json=chat(), headers={"x-mock-status": str(status)})
    response = post(gw, chat(model=model, stream=stream))
    assert_openai_error(response, status, type_)
    theirs, ours = direct.json()["error"], response.json()["error"]
    assert ours["code"] == theirs.get("code") and theirs["message"] in ours["message"]


@pytest.mark.parametrize(
    "model,status,type_,code",
    [
        ("upstream-429", 429, "rate_limit_error", "rate_limit_exceeded"),
        ("upstream-500", 502, "api_error", None),
        ("upstream-503", 502, "api_error", None),
        ("upstream-drop", 502, "api_error", None),
        ("upstream-hang", 504, "api_error", "upstream_timeout"),
    ],
)
def test_upstream_failures_map_to_gateway_statuses(gw, sdk, model, status, type_, code):
    response = post(gw, chat(model=model))
    assert_openai_error(response, status, type_, code)
    if status == 429:
        assert int(response.headers["retry-after"]) >= 1
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model=model, messages=HELLO)
    assert caught.value.status_code == status


def test_an_upstream_4xx_is_rebuilt_never_passed_verbatim():
    """A provider that echoes the request's headers (the gateway's upstream key) in its error, or adds fields
    of its own: the client gets the status, type, code and a scrubbed message, nothing else."""
    import orjson

    from gateway.api.render import error_answer
    from gateway.errors import UpstreamStatus

    echoed = orjson.dumps(
        {
            "error": {
                "message": "bad field 'foo'; request had Authorization: Bearer sk-upstream-secret-0123456789",
                "type": "invalid_request_error",
                "param": "foo",
                "code": "unknown_field",
                "internal": {"trace": "x" * 50},
            },
            "request_headers": {"authorization": "Bearer sk-upstream-secret-0123456789"},
        }
    )
    status, raw, _ = error_answer(UpstreamStatus(422, echoed))
    body = orjson.loads(raw)
    assert status == 422 and list(body) == ["error"]
    error = body["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "foo", "unknown_field")
    assert "secret" not in raw.decode() and "bad field 'foo'" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    html = error_answer(UpstreamStatus(404, b"<html>Not Found for key sk-abcdef0123456789</html>"))[1]
    assert orjson.loads(html)["error"] == {
        "message": "the upstream refused the request (404)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
