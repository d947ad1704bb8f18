"""One request lifecycle: every request, whatever its end, is counted once with the status the client
received, settles what it held, and writes exactly one access line — with no message content unless the
request log is on. Through real HTTP, the openai SDK where a user would use it.
"""

from __future__ import annotations

import logging
import socket

import httpx
import openai
import orjson
import pytest

from gateway.auth import hash_key
from gateway.mock_upstream import MockServerThread, MockSettings
from tests.conftest import TEST_KEY, base_config, wait_until

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
SECRET_TEXT = "zanzibar-marmalade-question"  # a message content that must never reach the default logs


def requests_by_status(server, **labels: str) -> dict[str, float]:
    """gateway_requests_total by status, over the samples whose labels include `labels`."""
    out: dict[str, float] = {}
    for family in server.state.metrics.registry.collect():
        if family.name != "gateway_requests":
            continue
        for sample in family.samples:
            if (
                sample.name.endswith("_total")
                and sample.value
                and all(sample.labels.get(k) == v for k, v in labels.items())
            ):
                status = sample.labels["status"]
                out[status] = out.get(status, 0.0) + sample.value
    return out


def access_lines(caplog, request_id: str | None = None) -> list[logging.LogRecord]:
    """The access lines (of one request). A request's line is written just after its last byte is sent:
    wait for it."""

    def lines():
        return [
            r
            for r in caplog.records
            if r.name == "gateway.access" and (request_id is None or f"rid={request_id} " in r.getMessage() + " ")
        ]

    if request_id is not None:
        wait_until(lambda: bool(lines()), timeout=5)
    return lines()


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO)
    return caplog


def chat(server, content: str = "Where is my parcel?", **kwargs) -> httpx.Response:
    body = {"model": "support", "messages": [{"role": "user", "content": content}], **kwargs.pop("body", {})}
    kwargs.setdefault("timeout", 20)
    return httpx.post(
        server.base_url + "/chat/completions", json=body, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs
    )


# ------------------------------------------------------------------------------------------ counting
def test_an_unexpected_exception_is_a_counted_500(gateway, logs):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in a step")

    gateway.state.pipeline.intents.detect = broken
    response = chat(gateway)
    assert response.status_code == 500 and response.json()["error"]["type"] == "api_error"
    assert "x-request-id" in response.headers and "x-gateway-overhead-ms" in response.headers
    assert wait_until(lambda: requests_by_status(gateway) == {"500": 1.0}), requests_by_status(gateway)
    assert any("a bug in a step" in (r.exc_text or "") for r in logs.records)


def test_bad_requests_are_counted_with_their_status(start_gateway, light_mock, heavy_mock):
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url, server={"max_body_bytes": 2000}))
    assert httpx.post(gw.base_url + "/chat/completions", content=b"{nope", headers=AUTH).status_code == 400
    assert chat(gw, "x" * 5000).status_code == 413
    assert chat(gw, headers={"x-gateway-priority": "urgent"}).status_code == 400
    assert chat(gw, headers={"authorization": "Bearer sk-wrong"}).status_code == 401
    assert wait_until(lambda: requests_by_status(gw) == {"400": 2.0, "413": 1.0, "401": 1.0}), requests_by_status(gw)


def test_a_client_leaving_before_the_first_byte_is_counted(start_gateway, heavy_mock):
    with MockServerThread(MockSettings(latency_ms=3000)) as slow:
        gw = start_gateway(base_config(slow.url, heavy_mock.url, cache={"enabled": False}))
        with pytest.raises(httpx.ReadTimeout):
            chat(gw, timeout=0.5)
        assert wait_until(lambda: requests_by_status(gw) == {"499": 1.0})


def test_a_client_leaving_mid_body_is_counted(start_gateway, light_mock, heavy_mock):
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url))
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + TEST_KEY.encode() + b'\r\ncontent-length: 500\r\n\r\n{"model":'
        )
    assert wait_until(lambda: requests_by_status(gw) == {"499": 1.0})


def test_every_upstream_failing_is_recorded_with_the_status_the_client_got(start_gateway, logs):
    """Upstreams answering 503: the client gets a 502, and so do the metrics and the access line. Upstreams
    all answering the same 500: the request's own fault, a 400 (upstream_rejected), recorded as 400."""
    with MockServerThread(MockSettings(fail_every_n=1, fail_status=503)) as failing:
        gw = start_gateway(
            base_config(
                failing.url,
                failing.url,
                cache={"enabled": False},
                resilience={"retry": {"attempts": 2, "base_s": 0.01}},
            )
        )
        responses = [chat(gw) for _ in range(3)]
    assert [r.status_code for r in responses] == [502] * 3
    assert wait_until(lambda: requests_by_status(gw) == {"502": 3.0}), requests_by_status(gw)
    for response in responses:
        assert response.headers["x-request-id"] and "x-gateway-overhead-ms" in response.headers
        (line,) = access_lines(logs, response.headers["x-request-id"])
        assert "status=502" in line.getMessage() and "error=upstream_5xx" in line.getMessage()
    warnings = [r for r in logs.records if r.levelno == logging.WARNING and r.name.startswith("gateway")]
    assert warnings and len(warnings) < 10  # failures, retries and fallbacks are told, repeats throttled

    with MockServerThread(MockSettings(fail_rate_500=1.0)) as failing:
        gw = start_gateway(base_config(failing.url, failing.url, cache={"enabled": False}))
        statuses = [chat(gw).status_code for _ in range(2)]
    assert statuses[0] in (400, 502) and len(set(statuses)) == 1
    assert wait_until(lambda: requests_by_status(gw) == {str(statuses[0]): 2.0}), requests_by_status(gw)


def test_the_upstream_refusing_the_gateways_key_is_recorded_as_502(start_gateway, heavy_mock):
    with MockServerThread(MockSettings(api_key="sk-right")) as guarded:
        gw = start_gateway(base_config(guarded.url, heavy_mock.url, cache={"enabled": False}))
        assert chat(gw).status_code == 502
    assert wait_until(lambda: requests_by_status(gw) == {"502": 1.0}), requests_by_status(gw)


def test_embeddings_obey_the_keys_limits_and_are_recorded(start_gateway, light_mock, heavy_mock):
    keys = [{"name": "slow", "sha256": hash_key("sk-slow-0123456789"), "rpm": 1}]
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url, auth={"keys": keys}))
    client = openai.OpenAI(base_url=gw.base_url, api_key="sk-slow-0123456789", max_retries=0, timeout=20)
    client.embeddings.create(model="support", input="hello")
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            client.embeddings.create(model="support", input="hello")
    assert wait_until(lambda: requests_by_status(gw, intent="embeddings") == {"200": 1.0, "429": 2.0}), (
        requests_by_status(gw)
    )
    assert (
        gw.state.metrics.registry.get_sample_value(
            "gateway_tokens_total", {"model": "support", "intent": "embeddings", "kind": "prompt"}
        )
        or 0
    ) > 0


# ----------------------------------------------------------------------------------- headers, access log
def test_every_response_has_a_request_id_and_overhead_and_a_good_client_id_is_kept(gateway):
    own = "trace-01HF8-abc_42:7"
    for response in (
        chat(gateway, headers={"x-request-id": own}),
        chat(gateway, headers={"x-request-id": own, "authorization": "Bearer nope"}),
        httpx.get(gateway.base_url + "/models", headers={"x-request-id": own, **AUTH}),
        httpx.get(gateway.url + "/nowhere", headers={"x-request-id": own}),
    ):
        assert response.headers["x-request-id"] == own, response.request.url
        assert float(response.headers["x-gateway-overhead-ms"]) >= 0
    for bad in ("x" * 200, "a b", "<script>", "a/b", "-leading-dash"):
        response = chat(gateway, headers={"x-request-id": bad})
        assert response.headers["x-request-id"] != bad and len(response.headers["x-request-id"]) == 32


def test_each_request_writes_exactly_one_access_line_without_content(gateway, logs):
    responses = [
        chat(gateway, SECRET_TEXT),  # a miss
        chat(gateway, SECRET_TEXT),  # an exact hit
        chat(gateway, SECRET_TEXT + " stream", body={"stream": True}),
        chat(gateway, SECRET_TEXT, headers={"authorization": "Bearer sk-nope-" + SECRET_TEXT}),
        chat(gateway, SECRET_TEXT, body={"model": "no-such-model"}),
        httpx.post(gateway.base_url + "/embeddings", json={"model": "support", "input": SECRET_TEXT}, headers=AUTH),
        httpx.get(gateway.base_url + "/models", headers=AUTH),
        httpx.get(gateway.url + "/nowhere"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 401, 404, 200, 200, 404]
    assert responses[1].headers["x-gateway-cache"] == "hit-exact"
    for response in responses:
        lines = access_lines(logs, response.headers["x-request-id"])
        assert len(lines) == 1, (response.request.url, response.status_code, [r.getMessage() for r in logs.records])
        assert f"status={response.status_code}" in lines[0].getMessage()
    assert len(access_lines(logs)) == len(responses)
    first = access_lines(logs, responses[0].headers["x-request-id"])[0].getMessage()
    for field in (
        "key=test",
        "model=support",
        "intent=",
        "tier=light",
        "variant=stable",
        "cache=miss",
        "served_by=light",
        "ms=",
        "overhead_ms=",
        "prompt_tokens=",
        "completion_tokens=",
        "cost_usd=",
    ):
        assert field in first, field
    everything = "\n".join(logging.Formatter().format(r) for r in logs.records)
    assert SECRET_TEXT not in everything and TEST_KEY not in everything and "sk-nope" not in everything
    httpx.get(gateway.url + "/healthz")
    assert len(access_lines(logs)) == len(responses)  # probes write none


def test_the_request_log_is_opt_in_and_redacts(start_gateway, light_mock, heavy_mock, logs):
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url, server={"request_log": True}))
    question = f"{SECRET_TEXT}: my e-mail is jane.doe@example.com and my card 4111 1111 1111 1111"
    response = chat(gw, question)
    assert response.status_code == 200
    assert wait_until(lambda: any(r.name == "gateway.requests" for r in logs.records))
    (line,) = [r.getMessage() for r in logs.records if r.name == "gateway.requests"]
    assert SECRET_TEXT in line and "[EMAIL]" in line and "[CARD]" in line
    assert "jane.doe@example.com" not in line and "4111" not in line
    assert response.json()["choices"][0]["message"]["content"][:20] in line.replace("\\", "")


def test_the_json_log_format_has_one_object_per_line(gateway):
    from gateway.logs import AccessLog, JsonFormatter

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("gateway.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        response = chat(gateway)
        assert wait_until(lambda: len(lines) == 1)
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    entry = orjson.loads(lines[0])
    assert entry["logger"] == "gateway.access" and entry["level"] == "INFO" and entry["ts"].endswith("Z")
    assert entry["rid"] == response.headers["x-request-id"] and entry["status"] == 200
    assert entry["key"] == "test" and entry["model"] == "support" and isinstance(entry["ms"], float)
    assert AccessLog().enabled


def test_holds_are_settled_when_a_request_ends(start_gateway, light_mock, heavy_mock):
    """The key's token estimate (256 when max_tokens is not set) is replaced by the real usage (~35 from the
    mock) once the request ends: three requests fit a 600 tokens-a-minute key; errors give theirs back."""
    keys = [{"name": "t", "sha256": hash_key("sk-tpm-0123456789"), "tpm": 600}]
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url, auth={"keys": keys}, cache={"enabled": False}))
    headers = {"authorization": "Bearer sk-tpm-0123456789"}
    windows = gw.state.limits.windows
    for _ in range(3):
        assert chat(gw, headers=headers).status_code == 200
        assert wait_until(lambda: windows.used("key:t")[1] < 256), windows.used("key:t")
    used = windows.used("key:t")[1]
    assert chat(gw, headers=headers, body={"model": "no-such-model"}).status_code == 404  # refused before admit
    assert chat(gw, headers=headers, body={"temperature": 7}).status_code == 400
    assert windows.used("key:t")[1] == used
