"""Chaos tests of upstream resilience: the built-in mock upstream misbehaving, real Redis, real HTTP, the
official openai SDK. Retries, fallbacks, the circuit breaker, upstream budgets across two gateways,
priorities under scarcity, client disconnects, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from gateway.auth import hash_key
from gateway.mock_upstream import MockServerThread, MockSettings
from tests.conftest import REDIS_URL, TEST_KEY, async_wait_until, base_config, wait_until

REPO = Path(__file__).resolve().parents[2]
HELLO = [{"role": "user", "content": "Where is my parcel?"}]


@pytest.fixture
def primary():
    with MockServerThread(MockSettings(served_model="primary-model")) as mock:
        yield mock


@pytest.fixture
def backup():
    with MockServerThread(MockSettings(served_model="backup-model")) as mock:
        yield mock


def resilient_config(
    primary_url: str,
    backup_url: str,
    *,
    redis_prefix: str | None = None,
    retry=None,
    breaker=None,
    primary=None,
    backup=None,
    route=None,
    **sections,
):
    """Model `chat`: deployment `primary`, then `backup` (its base model); cache and embedding off."""
    timeout = {"connect": 1, "read": 5}
    deployments = {
        "primary": {"base_url": primary_url, "model": "primary-model", "timeout": timeout, **(primary or {})},
        "backup": {"base_url": backup_url, "model": "backup-model", "timeout": timeout, **(backup or {})},
    }
    models = {"chat": route or {"deployments": ["primary"], "fallbacks": ["backup"]}}
    resilience = {
        "retry": {"attempts": 3, "base_s": 0.02, "max_backoff_s": 0.5, "deadline_s": 5, **(retry or {})},
        "breaker": {"failures": 5, "window_s": 10, "cooldown_s": 1, **(breaker or {})},
    }
    if redis_prefix:
        sections["redis"] = {"url": REDIS_URL, "prefix": redis_prefix, "timeout_ms": 500}
    return base_config(
        primary_url,
        backup_url,
        deployments=deployments,
        models=models,
        resilience=resilience,
        cache={"enabled": False},
        embedding={"enabled": False},
        **sections,
    )


@pytest.fixture
async def sdk():
    """sdk(gw): an async openai client for that gateway, closed at the end of the test."""
    made: list[openai.AsyncOpenAI] = []

    def make(gw, api_key: str = TEST_KEY) -> openai.AsyncOpenAI:
        made.append(openai.AsyncOpenAI(base_url=gw.base_url, api_key=api_key, max_retries=0, timeout=20))
        return made[-1]

    yield make
    for client in made:
        await client.close()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.95) - 1)]


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def metric(gw, name: str, **labels) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in httpx.get(gw.url + "/metrics").text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            if line[len(name)] in "{ ":
                total += float(line.rsplit(" ", 1)[1])
    return total


async def test_primary_rate_limiting_everything_is_served_by_the_fallback(sdk, start_gateway, primary, backup):
    primary.configure(fail_rate_429=1.0, retry_after_s=0.05)
    gw = start_gateway(resilient_config(primary.url, backup.url))
    client, gate = sdk(gw), asyncio.Semaphore(50)
    latencies, served, models, errors = [], [], [], []

    async def one() -> None:
        async with gate:
            started = time.perf_counter()
            try:
                raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
            except openai.APIError as exc:
                errors.append(exc)
                return
            latencies.append(time.perf_counter() - started)
            served.append(raw.headers.get("x-gateway-served-by"))
            models.append(raw.parse().model)

    started = time.perf_counter()
    await asyncio.gather(*[one() for _ in range(1000)])
    elapsed = time.perf_counter() - started
    retries = metric(gw, "gateway_retries_total", deployment="primary", reason="429")
    print(
        f"\n429 storm: 1000 requests in {elapsed:.1f}s, errors {len(errors)}, p95 {p95(latencies) * 1000:.0f} ms, "
        f"primary saw {primary.stats()['requests']}, retries {retries:.0f}, "
        f"fallbacks {metric(gw, 'gateway_fallbacks_total'):.0f}"
    )
    assert errors == []
    assert set(served) == {"backup"} and set(models) == {"backup-model"}
    assert retries > 0
    assert p95(latencies) < 5  # the deadline
    # The breaker and the retry budget keep the storm from being amplified onto the failing primary.
    assert primary.stats()["requests"] < 1000 * 0.5
    assert metric(gw, "gateway_circuit_open", deployment="primary") in (0.0, 1.0)


async def test_chaos_no_gateway_500_no_hang_no_leaked_connection(sdk, start_gateway, primary, backup):
    primary.configure(
        fail_rate_500=0.15, fail_rate_timeout=0.1, fail_rate_drop=0.05, cut_stream_rate=0.3, hang_s=2.0, seed=11
    )
    backup.configure(fail_rate_500=0.1, cut_stream_rate=0.2, seed=12)
    timeout = {"connect": 1, "read": 0.5}
    gw = start_gateway(
        resilient_config(
            primary.url,
            backup.url,
            primary={"timeout": timeout},
            backup={"timeout": timeout},
            retry={"deadline_s": 4},
            breaker={"failures": 1000},
        )
    )
    client, gate = sdk(gw), asyncio.Semaphore(40)
    statuses: dict[str, int] = {}
    durations: list[float] = []

    def count(kind: str) -> None:
        statuses[kind] = statuses.get(kind, 0) + 1

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            try:
                if i % 2:
                    stream = await client.chat.completions.create(model="chat", messages=HELLO, stream=True)
                    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                    count("stream-ok" if text else "stream-empty")
                else:
                    answer = await client.chat.completions.create(model="chat", messages=HELLO)
                    count("ok" if answer.choices[0].message.content else "empty")
            except openai.APIStatusError as exc:
                count("rejected" if exc.code == "upstream_rejected_request" else str(exc.status_code))
            except openai.APIError:  # the error event that ends a stream cut after its first byte
                count("stream-error-event")
            durations.append(time.perf_counter() - started)

    await asyncio.gather(*[one(i) for i in range(300)])
    stats = primary.stats()
    retries = metric(gw, "gateway_retries_total")
    print(
        f"\nchaos: outcomes {statuses}; max {max(durations):.2f}s, p95 {p95(durations) * 1000:.0f} ms; "
        f"retries {retries:.0f}, fallbacks {metric(gw, 'gateway_fallbacks_total'):.0f}; primary {stats['status_counts']},"
        f" dropped {stats['dropped']}, cut {stats['streams_cut']}"
    )
    assert "500" not in statuses  # the gateway itself never fails
    assert max(durations) < 4 + 1.0  # the deadline, plus the time of a last stream
    served = statuses.get("ok", 0) + statuses.get("stream-ok", 0)
    cut = statuses.get("stream-error-event", 0)
    # 400 upstream_rejected_request: both deployments drew the same 500 on one request, which the dispatcher
    # takes for the request's fault by design (issue 12; the random draws here make it ~1.5% of requests)
    failed = sum(statuses.get(s, 0) for s in ("rejected", "502", "503", "504"))
    assert served + cut + failed == 300
    assert served >= 0.75 * 300
    assert retries > 0
    assert await async_wait_until(lambda: gw.state.transport.pool_stats()["in_use"] == 0, timeout=5), (
        gw.state.transport.pool_stats()
    )


async def test_breaker_opens_probes_and_closes(sdk, start_gateway, primary, backup, redis_prefix):
    primary.configure(fail_first_n=4, fail_status=500)  # 3 failures open it, then the first probe fails too
    gw = start_gateway(
        resilient_config(
            primary.url,
            backup.url,
            redis_prefix=redis_prefix,
            retry={"attempts": 1},
            breaker={"failures": 3, "window_s": 10, "cooldown_s": 2.5},
        )
    )
    client = sdk(gw)

    async def served_by() -> str:
        raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
        return raw.headers["x-gateway-served-by"]

    assert [await served_by() for _ in range(3)] == ["backup"] * 3  # each failed on primary, then fell back
    assert gw.state.dispatcher.breaker.state("primary") == "open"
    assert metric(gw, "gateway_circuit_open", deployment="primary") == 1
    assert [await served_by() for _ in range(5)] == ["backup"] * 5
    assert primary.stats()["requests"] == 3  # skipped while open
    # Shared through Redis: a second gateway on the same prefix skips the primary too.
    other = start_gateway(
        resilient_config(
            primary.url,
            backup.url,
            redis_prefix=redis_prefix,
            retry={"attempts": 1},
            breaker={"failures": 3, "cooldown_s": 2.5},
        )
    )
    raw = await sdk(other).chat.completions.with_raw_response.create(model="chat", messages=HELLO)
    assert raw.headers["x-gateway-served-by"] == "backup" and primary.stats()["requests"] == 3

    # After the cooldown one probe goes through; it fails (4th fault): open again. The next probe closes it.
    seen: list[str] = []

    async def until_primary() -> bool:
        seen.append(await served_by())
        return seen[-1] == "primary"

    deadline = time.monotonic() + 10
    while not await until_primary():
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.05)
    assert primary.stats()["requests"] == 5  # two probes, one at a time: a failed one and a good one
    assert gw.state.dispatcher.breaker.state("primary") == "closed"
    assert metric(gw, "gateway_circuit_open", deployment="primary") == 0
    assert [await served_by() for _ in range(3)] == ["primary"] * 3


async def test_budget_holds_across_two_gateways(sdk, start_gateway, primary, backup, redis_prefix):
    config = resilient_config(
        primary.url, backup.url, redis_prefix=redis_prefix, primary={"rpm": 30}, route={"deployments": ["primary"]}
    )
    gateways = [start_gateway(config), start_gateway(config)]
    clients = [sdk(gw) for gw in gateways]
    outcomes: list[tuple[int, str | None]] = []

    async def one(i: int) -> None:
        try:
            raw = await clients[i % 2].chat.completions.with_raw_response.create(
                model="chat", messages=HELLO, extra_headers={"x-gateway-priority": "critical"}
            )
            outcomes.append((200, raw.headers.get("x-gateway-served-by")))
        except openai.RateLimitError as exc:
            assert exc.response.headers.get("retry-after")
            assert exc.body["code"] == "rate_limit_exceeded"
            outcomes.append((429, None))

    started = time.perf_counter()
    await asyncio.gather(*[one(i) for i in range(80)])
    sent = primary.stats()["chat_requests"]
    print(
        f"\ntwo gateways, rpm 30: 80 requests in {time.perf_counter() - started:.1f}s, upstream saw {sent}, "
        f"{sum(s == 429 for s, _ in outcomes)} shed with 429"
    )
    assert sent == 30  # critical may use the whole budget, and never more, across both gateways
    assert sum(s == 200 for s, _ in outcomes) == 30 and sum(s == 429 for s, _ in outcomes) == 50
    assert all(metric(gw, "gateway_rate_limited_total", scope="upstream_budget") > 0 for gw in gateways)


async def test_priority_under_scarcity_critical_never_fails(sdk, start_gateway, primary, backup, redis_prefix):
    """Budget for half the traffic (primary 20 + heavy 10 rpm for 60 requests): batch keeps off the last 30%
    of the primary and never spills onto the heavy tier; critical uses all of it."""
    route = {"deployments": ["primary"], "heavy": ["backup"]}
    config = resilient_config(
        primary.url, backup.url, redis_prefix=redis_prefix, route=route, primary={"rpm": 20}, backup={"rpm": 10}
    )
    gw = start_gateway(config)
    client = sdk(gw)
    results: dict[str, list[int]] = {"critical": [], "batch": []}

    async def one(priority: str) -> None:
        try:
            await client.chat.completions.create(
                model="chat", messages=HELLO, extra_headers={"x-gateway-priority": priority}
            )
            results[priority].append(200)
        except openai.APIStatusError as exc:
            results[priority].append(exc.status_code)

    # The worst case for critical: the batch flood arrives first.
    await asyncio.gather(*[one("batch") for _ in range(44)])
    await asyncio.gather(*[one("critical") for _ in range(16)])
    print(
        f"\nscarcity: critical {results['critical'].count(200)}/16 served; batch "
        f"{results['batch'].count(200)}/44 served, {results['batch'].count(429)} shed"
    )
    assert results["critical"] == [200] * 16
    assert results["batch"].count(200) == 14 and results["batch"].count(429) == 30
    assert primary.stats()["chat_requests"] == 20 and backup.stats()["chat_requests"] == 10


async def test_key_limits_answer_429_with_retry_after(sdk, start_gateway, primary, backup, redis_prefix):
    keys = [{"name": "limited", "sha256": hash_key("sk-limited-0123456789"), "rpm": 3}]
    gw = start_gateway(resilient_config(primary.url, backup.url, redis_prefix=redis_prefix, auth={"keys": keys}))
    client = sdk(gw, api_key="sk-limited-0123456789")
    for _ in range(3):
        await client.chat.completions.create(model="chat", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="chat", messages=HELLO)
    assert caught.value.body["type"] == "rate_limit_error"
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 61
    assert metric(gw, "gateway_rate_limited_total", scope="key") == 1


async def test_a_long_retry_after_moves_on_at_once_and_keeps_the_deployment_out(
    sdk, start_gateway, primary, backup, redis_prefix
):
    """The primary answers every call 429 with Retry-After: 2, the backup is healthy: requests go to the
    backup at once (no 2 s sleep), and the primary is called about once per 2 s (a probe), not per request."""
    primary.configure(fail_every_n=1, fail_status=429, retry_after_s=2.0)
    gw = start_gateway(resilient_config(primary.url, backup.url, redis_prefix=redis_prefix))
    client, gate = sdk(gw), asyncio.Semaphore(20)
    durations: list[float] = []
    served: dict[str, int] = {}

    async def one() -> None:
        async with gate:
            started = time.perf_counter()
            raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
            durations.append(time.perf_counter() - started)
            served[raw.headers["x-gateway-served-by"]] = served.get(raw.headers["x-gateway-served-by"], 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*[one() for _ in range(300)])
    elapsed = time.perf_counter() - started
    calls = primary.stats()["requests"]
    print(
        f"\n429 Retry-After 2 on the primary: p99 {p99(durations) * 1000:.0f} ms over 300 requests, served {served}, "
        f"primary called {calls} times in {elapsed:.1f} s"
    )
    assert served == {"backup": 300}
    assert p99(durations) < 2.0  # nobody waited out the Retry-After (before: every request that met the primary
    # slept 2 s); idle, p99 is well under 1 s: the bound leaves room for a loaded machine
    assert calls <= 20 + elapsed / 2 + 2  # the first wave (up to 20 in flight), then one probe per Retry-After
    assert gw.state.dispatcher.breaker.state("primary") in ("open", "half-open")


async def test_client_disconnect_cancels_the_upstream_call(start_gateway, primary, backup):
    primary.configure(latency_ms=3000)
    gw = start_gateway(resilient_config(primary.url, backup.url))
    async with httpx.AsyncClient(timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                gw.base_url + "/chat/completions",
                headers={"authorization": f"Bearer {TEST_KEY}"},
                json={"model": "chat", "messages": HELLO},
            )
    assert await async_wait_until(lambda: primary.stats()["requests_cancelled"] == 1, timeout=2.5), primary.stats()

    primary.configure(latency_ms=0, tokens_per_second=20, chunks=40)
    async with httpx.AsyncClient(timeout=5) as http:
        async with http.stream(
            "POST",
            gw.base_url + "/chat/completions",
            headers={"authorization": f"Bearer {TEST_KEY}"},
            json={"model": "chat", "messages": HELLO, "stream": True},
        ) as response:
            async for _ in response.aiter_bytes():
                break
    assert await async_wait_until(lambda: primary.stats()["streams_cancelled"] == 1, timeout=2.5), primary.stats()
    assert await async_wait_until(lambda: gw.state.transport.pool_stats()["in_use"] == 0, timeout=2)


async def test_redis_down_never_fails_a_request(sdk, start_gateway, primary, backup):
    """Budgets, breaker and key limits fall back to in-process state when Redis is unreachable."""
    keys = [{"name": "limited", "sha256": hash_key(TEST_KEY), "rpm": 100, "tpm": 100_000}]
    config = resilient_config(
        primary.url,
        backup.url,
        primary={"rpm": 50, "tpm": 100_000},
        auth={"keys": keys},
        redis={"url": "redis://127.0.0.1:1", "prefix": "gwtest:down:", "timeout_ms": 100},
    )
    client = sdk(start_gateway(config))
    for _ in range(3):
        answer = await client.chat.completions.create(model="chat", messages=HELLO)
        assert answer.model == "primary-model"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_drains_in_flight_requests_and_streams(tmp_path, primary, backup):
    primary.configure(latency_ms=1500, tokens_per_second=10, chunks=10)  # a 1.5 s answer, a 2.5 s stream
    port = _free_port()
    config = {
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "shutdown_grace_s": 10,
            "drain_delay_s": 1.0,
            "log_level": "warning",
        },
        "auth": {"keys": [{"name": "test", "sha256": hash_key(TEST_KEY)}]},
        "deployments": {"primary": {"base_url": primary.url, "model": "primary-model"}},
        "models": {"chat": {"deployments": ["primary"]}},
        "embedding": {"enabled": False},
        "cache": {"enabled": False},
        "intents_file": str(REPO / "config" / "intents.yaml"),
        "pricing_file": str(REPO / "config" / "pricing.yaml"),
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(url + "/healthz", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(up, timeout=30), proc.stdout.read1().decode() if proc.poll() is not None else "not up"
        result: dict[str, object] = {}

        def slow() -> None:
            r = httpx.post(
                url + "/v1/chat/completions",
                headers={"authorization": f"Bearer {TEST_KEY}"},
                json={"model": "chat", "messages": HELLO},
                timeout=15,
            )
            result["status"], result["model"] = r.status_code, r.json().get("model")

        def slow_stream() -> None:
            with httpx.stream(
                "POST",
                url + "/v1/chat/completions",
                headers={"authorization": f"Bearer {TEST_KEY}"},
                json={"model": "chat", "messages": HELLO, "stream": True},
                timeout=15,
            ) as r:
                result["stream"] = b"".join(r.iter_bytes()).rstrip().endswith(b"data: [DONE]")

        threads = [threading.Thread(target=slow), threading.Thread(target=slow_stream)]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: primary.stats()["in_flight"] == 2, timeout=5)
        proc.send_signal(signal.SIGTERM)
        # Readiness turns 503 first, while the listener still accepts (load balancers stop sending), ...
        assert wait_until(lambda: httpx.get(url + "/readyz", timeout=2).status_code == 503, timeout=2)
        assert httpx.get(url + "/healthz", timeout=2).status_code == 200

        def refused() -> bool:
            try:
                httpx.get(url + "/healthz", timeout=0.5)
                return False
            except httpx.ConnectError:
                return True
            except httpx.HTTPError:
                return False

        # ... then, server.drain_delay_s later, new connections are refused while the slow ones drain.
        assert wait_until(refused, timeout=5)
        for thread in threads:
            thread.join(timeout=10)
        assert result == {"status": 200, "model": "primary-model", "stream": True}
        # uvicorn re-raises the signal once it has shut down cleanly: exit by SIGTERM (143 in a shell)
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_stream_still_running_when_the_grace_ends_gets_an_error_event(tmp_path, primary, backup):
    primary.configure(latency_ms=0, tokens_per_second=2, chunks=40)  # a 20 s stream
    port = _free_port()
    config = {
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "shutdown_grace_s": 1,
            "drain_delay_s": 0.5,
            "log_level": "warning",
        },
        "auth": {"keys": [{"name": "test", "sha256": hash_key(TEST_KEY)}]},
        "deployments": {"primary": {"base_url": primary.url, "model": "primary-model"}},
        "models": {"chat": {"deployments": ["primary"]}},
        "embedding": {"enabled": False},
        "cache": {"enabled": False},
        "intents_file": str(REPO / "config" / "intents.yaml"),
        "pricing_file": str(REPO / "config" / "pricing.yaml"),
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(url + "/healthz", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(up, timeout=30), proc.stdout.read1().decode() if proc.poll() is not None else "not up"
        received: list[bytes] = []
        with httpx.stream(
            "POST",
            url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {TEST_KEY}"},
            json={"model": "chat", "messages": HELLO, "stream": True},
            timeout=30,
        ) as response:
            for chunk in response.iter_bytes():
                received.append(chunk)
                if len(received) == 1:
                    proc.send_signal(signal.SIGTERM)
        body = b"".join(received)
        assert b"gateway_shutting_down" in body and b"data: [DONE]" not in body  # an error event, not a cut
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        log = proc.stdout.read().decode()
        assert "Traceback" not in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
