"""The intent cache through real HTTP: real mock upstreams, real gateways on real ports sharing the real Redis
(db 15, a prefix per test, deleted afterwards), the official openai SDK."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import httpx
import openai
import pytest
import redis.asyncio as aioredis
import yaml

from gateway.auth import hash_key
from tests.conftest import LIGHT_MODEL, REDIS_URL, TEST_KEY, base_config, sync_redis_client, wait_until

MODEL = "gpt-3.5-turbo"
ADMIN_KEY = "sk-admin-0123456789"
INTENTS_FILE = Path(__file__).resolve().parents[2] / "config" / "intents.yaml"


@pytest.fixture(autouse=True)
def prefix():
    """Autouse: set up first, torn down last, after the gateways have written their last counters."""
    value = f"gwtest:{uuid.uuid4().hex[:12]}:"
    yield value
    client = sync_redis_client()
    keys = list(client.scan_iter(match=value + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def sync_redis():
    client = sync_redis_client()
    yield client
    client.close()


def intents_with(**changes: dict) -> dict:
    """The configured intents, with some intents' settings changed."""
    data = yaml.safe_load(INTENTS_FILE.read_text(encoding="utf-8"))
    for spec in data["intents"]:
        spec.update(changes.get(spec["name"], {}))
    return data


def config(light_mock, heavy_mock, prefix: str, url: str = REDIS_URL, timeout_ms: int = 500, **sections):
    """Redis timeouts generous enough for a loaded machine: these tests are about the cache's behaviour
    (test_a_slow_redis_times_out_and_fails_open sets short ones)."""
    sections.setdefault("auth", {"admin_key_sha256": hash_key(ADMIN_KEY)})
    sections.setdefault("pricing", {LIGHT_MODEL: {"input_per_1m": 1.0, "output_per_1m": 2.0}})
    sections["cache"] = {"redis_timeout_ms": timeout_ms, **sections.get("cache", {})}
    return base_config(
        light_mock.url, heavy_mock.url, redis={"url": url, "prefix": prefix, "timeout_ms": timeout_ms}, **sections
    )


@pytest.fixture
def gw(start_gateway, light_mock, heavy_mock, prefix):
    return start_gateway(config(light_mock, heavy_mock, prefix))


def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)


def ask(client: openai.OpenAI, text: str, headers: dict | None = None, **params):
    raw = client.chat.completions.with_raw_response.create(
        model=params.pop("model", MODEL), messages=[{"role": "user", "content": text}], extra_headers=headers, **params
    )
    return raw.headers, raw.parse()


def upstream_calls(mock) -> int:
    return mock.stats()["chat_requests"]


def metric(server, name: str, labels: dict) -> float:
    return server.state.metrics.registry.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------------------------------------- hits


def test_a_repeat_is_an_exact_hit_that_costs_nothing(gw, light_mock):
    client = sdk(gw)
    headers, first = ask(client, "How do I get a refund?", temperature=0)
    assert headers["x-gateway-cache"] == "miss" and headers["x-gateway-intent"] == "refund"
    calls = upstream_calls(light_mock)

    headers, second = ask(client, "  how do I get a   REFUND? ", temperature=0)
    assert headers["x-gateway-cache"] == "hit-exact"
    assert upstream_calls(light_mock) == calls
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.choices[0].finish_reason == "stop"
    assert second.usage.prompt_tokens == second.usage.completion_tokens == second.usage.total_tokens == 0
    assert headers["x-gateway-saved-tokens"] == str(first.usage.total_tokens)
    assert second.id.startswith("chatcmpl-") and second.id != first.id
    assert second.model == first.model == LIGHT_MODEL
    assert second.object == "chat.completion"
    assert metric(gw, "gateway_cache_requests_total", {"intent": "refund", "result": "hit-exact"}) == 1
    assert wait_until(
        lambda: metric(gw, "gateway_cost_saved_usd_total", {"intent": "refund"}) > 0
    )  # recorded as the request ends


def test_a_paraphrase_of_a_cacheable_intent_is_a_semantic_hit(gw, light_mock):
    client = sdk(gw)
    _, first = ask(client, "How do I get a refund?")
    calls = upstream_calls(light_mock)
    # the verifier serves a rewording with the same content words; "How can I get my money back?" is a
    # miss since the pooled eval showed such rewordings cost wrong answers (precision first)
    headers, second = ask(client, "Hi, how do I get a refund?")
    assert headers["x-gateway-cache"] == "hit-semantic" and headers["x-gateway-intent"] == "refund"
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.usage.total_tokens == 0 and int(headers["x-gateway-saved-tokens"]) > 0
    assert upstream_calls(light_mock) == calls


@pytest.mark.parametrize(
    "stored,asked",
    [
        ("Is the refund made to my card?", "Is the refund not made to my card?"),
        ("Do you deliver to Belgium?", "Do you deliver to Germany?"),
        ("How do I cancel my subscription?", "How do I renew my subscription?"),
    ],
)
def test_a_near_miss_is_a_miss(gw, light_mock, stored, asked):
    client = sdk(gw)
    ask(client, stored)
    calls = upstream_calls(light_mock)
    headers, answer = ask(client, asked)
    assert headers["x-gateway-cache"] == "miss"
    assert upstream_calls(light_mock) == calls + 1
    assert asked[:40] in answer.choices[0].message.content


def test_another_order_number_is_a_miss_even_where_order_ids_may_be_cached(
    start_gateway, light_mock, heavy_mock, prefix
):
    intents = intents_with(order_status={"allow_personal_data": True})
    server = start_gateway(config(light_mock, heavy_mock, prefix, intents=intents))
    client = sdk(server)
    ask(client, "Where is my order 48213?")
    assert ask(client, "where is my order 48213?")[0]["x-gateway-cache"] == "hit-exact"
    headers, answer = ask(client, "Where is my order 48231?")
    assert headers["x-gateway-cache"] == "miss" and "48231" in answer.choices[0].message.content


def test_a_stream_hit_is_a_proper_sse_stream(gw, light_mock, sync_redis, prefix):
    client = sdk(gw)
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Is shipping free?"}], stream=True
    )
    original = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert wait_until(lambda: any(sync_redis.scan_iter(match=prefix + "{c}:e:*")))  # stored after [DONE]
    calls = upstream_calls(light_mock)

    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Is shipping free?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-gateway-cache"] == "hit-exact"
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == original
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # a few chunks
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 0
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" and c.model == LIGHT_MODEL for c in chunks)

    plain = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Is shipping free?"}], stream=True
        )
    )
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason == "stop"
    _, whole = ask(client, "Is shipping free?")  # a stream's answer serves a plain request too
    assert whole.choices[0].message.content == original
    assert upstream_calls(light_mock) == calls


def test_identical_concurrent_misses_make_one_upstream_call(start_gateway, light_mock, heavy_mock, prefix):
    server = start_gateway(config(light_mock, heavy_mock, prefix))
    light_mock.configure(latency_ms=300)
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)

    async def burst():
        return await asyncio.gather(
            *[
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "What are your opening hours?"}]
                )
                for _ in range(6)
            ]
        )

    answers = asyncio.run(burst())
    assert upstream_calls(light_mock) == 1
    assert len({a.choices[0].message.content for a in answers}) == 1


def test_a_waiter_whose_leader_left_makes_its_own_call(start_gateway, light_mock, heavy_mock, prefix):
    """Identical misses wait on the first one; if its client leaves (and cancels it), they still get answered."""
    server = start_gateway(config(light_mock, heavy_mock, prefix))
    light_mock.configure(latency_ms=600)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "What are your opening hours?"}]}

    async def scenario():
        async with httpx.AsyncClient(base_url=server.url, headers={"authorization": f"Bearer {TEST_KEY}"}) as http:
            leader = asyncio.create_task(http.post("/v1/chat/completions", json=body, timeout=0.3))
            while light_mock.stats()["in_flight"] < 1:  # the leader's call has reached the upstream
                await asyncio.sleep(0.01)
            follower = await http.post("/v1/chat/completions", json=body, timeout=10)
            with pytest.raises(httpx.ReadTimeout):
                await leader
            return follower

    follower = asyncio.run(scenario())
    assert follower.status_code == 200, follower.text
    assert follower.json()["model"] == LIGHT_MODEL
    assert upstream_calls(light_mock) == 2


def test_two_gateways_on_one_redis_share_entries(start_gateway, light_mock, heavy_mock, prefix):
    first = start_gateway(config(light_mock, heavy_mock, prefix))
    second = start_gateway(config(light_mock, heavy_mock, prefix))
    _, original = ask(sdk(first), "How do I reset my password?")
    calls = upstream_calls(light_mock)
    headers, answer = ask(sdk(second), "How do I reset my password?")
    assert headers["x-gateway-cache"] == "hit-exact"
    assert answer.choices[0].message.content == original.choices[0].message.content
    headers, _ = ask(sdk(second), "How can I reset my password?")
    assert headers["x-gateway-cache"] == "hit-semantic"
    assert upstream_calls(light_mock) == calls


# ------------------------------------------------------------------------------------------- controls


def test_controls(gw, light_mock):
    client = sdk(gw)
    ask(client, "Can I pay with PayPal?")
    calls = upstream_calls(light_mock)

    headers, _ = ask(client, "Can I pay with PayPal?", {"Cache-Control": "no-cache"})
    assert headers["x-gateway-cache"] == "miss" and upstream_calls(light_mock) == calls + 1

    headers, _ = ask(client, "Can I pay with PayPal?", {"Cache-Control": "no-store"})
    assert headers["x-gateway-cache"] == "hit-exact"  # no-store may be served from the cache

    headers, _ = ask(client, "Can I pay with PayPal?", {"x-gateway-cache": "bypass"})
    assert headers["x-gateway-cache"] == "bypass" and upstream_calls(light_mock) == calls + 2

    # no-cache still stores: a new question asked with no-cache is a hit the next time
    ask(client, "Do you accept credit cards?", {"Cache-Control": "no-cache"})
    assert ask(client, "Do you accept credit cards?")[0]["x-gateway-cache"] == "hit-exact"
    # no-store and bypass never store
    for control in ({"Cache-Control": "no-store"}, {"x-gateway-cache": "bypass"}):
        question = f"What are your opening hours on {uuid.uuid4().hex[:6]} day?"
        ask(client, question, control)
        assert ask(client, question)[0]["x-gateway-cache"] == "miss"


@pytest.mark.parametrize(
    "params",
    [
        {"n": 2},
        {"temperature": 1.2},
        {"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]},
        {"max_tokens": 3},  # finish_reason "length"
    ],
    ids=["n", "temperature", "tools", "length"],
)
def test_never_cached_requests(gw, light_mock, params):
    client = sdk(gw)
    before = upstream_calls(light_mock)
    for _ in range(2):
        headers, _ = ask(client, "How do I change my delivery address?", **params)
        assert headers["x-gateway-cache"] in ("miss", "bypass")
    assert upstream_calls(light_mock) == before + 2


@pytest.mark.parametrize(
    "text",
    [
        "My email is jane.doe@example.com, how do I get a refund?",
        "Refund for order 48213 please",
        "Call me at +33 6 12 34 56 78 about my refund",
    ],
)
def test_personal_data_is_not_cached(gw, light_mock, text):
    client = sdk(gw)
    before = upstream_calls(light_mock)
    ask(client, text)
    assert ask(client, text)[0]["x-gateway-cache"] == "miss"
    assert upstream_calls(light_mock) == before + 2


def test_other_is_cached_semantically_too_but_only_the_same_question(gw, light_mock):
    # issue 9: questions outside the configured intents may hit; the verifier decides, not the intent
    client = sdk(gw)
    ask(client, "Tell me a joke about penguins")
    headers, _ = ask(client, "tell me a joke about penguins")
    assert headers["x-gateway-intent"] == "other" and headers["x-gateway-cache"] == "hit-exact"
    assert ask(client, "Tell me a joke about penguins!")[0]["x-gateway-cache"] == "hit-semantic"
    assert ask(client, "Tell me a funny joke about penguins")[0]["x-gateway-cache"] == "miss"
    assert ask(client, "Tell me a joke about giraffes")[0]["x-gateway-cache"] == "miss"


def test_a_non_cacheable_intent_is_never_cached(start_gateway, light_mock, heavy_mock, prefix):
    server = start_gateway(config(light_mock, heavy_mock, prefix, intents=intents_with(refund={"cacheable": False})))
    client = sdk(server)
    ask(client, "How do I get a refund?")
    assert ask(client, "How do I get a refund?")[0]["x-gateway-cache"] == "miss"


def test_upstream_errors_and_cut_streams_are_not_cached(gw, light_mock, sync_redis, prefix):
    client = sdk(gw)
    light_mock.configure(fail_first_n=1, fail_status=400)
    with pytest.raises(openai.APIStatusError):
        ask(client, "How long does delivery take?")
    light_mock.configure(fail_first_n=0, fail_status=429)
    assert ask(client, "How long does delivery take?")[0]["x-gateway-cache"] == "miss"

    light_mock.reset()
    light_mock.configure(cut_stream_rate=1.0)
    with pytest.raises(openai.APIError):
        list(
            client.chat.completions.create(
                model=MODEL, stream=True, messages=[{"role": "user", "content": "Do you offer express delivery?"}]
            )
        )
    light_mock.configure(cut_stream_rate=0.0)
    assert wait_until(lambda: light_mock.stats()["in_flight"] == 0)
    assert ask(client, "Do you offer express delivery?")[0]["x-gateway-cache"] == "miss"


# ---------------------------------------------------------------------------------------- fail open


def test_a_dead_redis_fails_open_and_is_counted(start_gateway, light_mock, heavy_mock, prefix):
    server = start_gateway(config(light_mock, heavy_mock, prefix, url="redis://127.0.0.1:1/15"))
    client = sdk(server)
    for _ in range(3):
        headers, answer = ask(client, "How do I get a refund?")
        assert headers["x-gateway-cache"] == "miss" and answer.choices[0].message.content
    assert upstream_calls(light_mock) == 3
    errors = sum(
        metric(server, "gateway_cache_errors_total", {"operation": op}) for op in ("lookup", "lookup_semantic", "store")
    )
    assert errors >= 3
    assert metric(server, "gateway_cache_requests_total", {"intent": "refund", "result": "error"}) >= 1


def test_redis_stopping_mid_test_and_coming_back(gw, light_mock):
    client = sdk(gw)
    ask(client, "How do I delete my account?")
    assert ask(client, "How do I delete my account?")[0]["x-gateway-cache"] == "hit-exact"
    store = gw.state.cache.backend
    # the first answer's write in Redis before Redis "stops": on a loaded machine it may still be in flight,
    # and a lookup meanwhile is served from the write itself (hit-exact with Redis away: 2 of 5 stressed runs)
    assert wait_until(lambda: store.pending == 0)
    live = store.redis
    store.redis = aioredis.from_url("redis://127.0.0.1:1/15", socket_timeout=0.05, socket_connect_timeout=0.05)
    calls = upstream_calls(light_mock)
    for _ in range(3):  # Redis "stopped": served from the upstream
        headers, answer = ask(client, "How do I delete my account?")
        assert headers["x-gateway-cache"] == "miss" and answer.choices[0].message.content
    assert upstream_calls(light_mock) == calls + 3
    assert metric(gw, "gateway_cache_errors_total", {"operation": "lookup"}) >= 1
    store.redis = live  # "restarted": hits again once the backoff is over
    assert wait_until(
        lambda: ask(client, "How do I delete my account?")[0]["x-gateway-cache"] == "hit-exact",
        timeout=10,
        interval=0.1,
    )


def test_a_slow_redis_times_out_and_fails_open(start_gateway, light_mock, heavy_mock, prefix):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts connections (the kernel does), never answers
    try:
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/15"
        server = start_gateway(config(light_mock, heavy_mock, prefix, url=url, timeout_ms=50))
        headers, answer = ask(sdk(server), "How do I get a refund?")
        assert headers["x-gateway-cache"] == "miss" and answer.choices[0].message.content
        assert float(headers["x-gateway-overhead-ms"]) < 250  # cache.redis_timeout_ms (50), then the backoff
        assert metric(server, "gateway_cache_errors_total", {"operation": "lookup"}) == 1
    finally:
        silent.close()


# -------------------------------------------------------------------------------------- stats, admin


def test_admin_stats_and_flush(gw, light_mock):
    client = sdk(gw)
    ask(client, "How do I get a refund?")
    ask(client, "How do I get a refund?")
    ask(client, "Hi, how do I get a refund?")
    ask(client, "Where can I download my invoice?")
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    import httpx

    assert httpx.get(gw.url + "/admin/cache/stats").status_code == 401
    assert httpx.get(gw.url + "/admin/cache/stats", headers={"Authorization": "Bearer nope"}).status_code == 401
    stats = httpx.get(gw.url + "/admin/cache/stats", headers=admin).json()
    refund = stats["intents"]["refund"]
    assert stats["store"] == "RedisStore"
    # vectors live in language partitions since issue 9, not under an intent
    assert refund["entries"] == 1 and refund["vectors"] == 0
    assert refund["hits_exact"] == 1 and refund["hits_semantic"] == 1 and refund["misses"] == 1
    assert refund["hit_rate"] == pytest.approx(2 / 3, abs=1e-3) and refund["saved_usd"] > 0
    assert stats["intents"]["invoice"]["entries"] == 1

    assert httpx.delete(gw.url + "/admin/cache", params={"intent": "nope"}, headers=admin).status_code == 400
    flushed = httpx.delete(gw.url + "/admin/cache", params={"intent": "refund"}, headers=admin).json()
    assert flushed["flushed"] == 1
    assert ask(client, "How do I get a refund?")[0]["x-gateway-cache"] == "miss"
    assert ask(client, "Where can I download my invoice?")[0]["x-gateway-cache"] == "hit-exact"
    assert httpx.delete(gw.url + "/admin/cache", headers=admin).json()["flushed"] == 2
    assert ask(client, "Where can I download my invoice?")[0]["x-gateway-cache"] == "miss"


def test_cli_stats_and_flush(gw, prefix, tmp_path, capsys):
    import argparse

    import httpx

    from gateway.cache.commands import add_commands, run_flush, run_stats

    client = sdk(gw)
    ask(client, "How do I get a refund?")
    ask(client, "How do I get a refund?")
    # counters reach Redis at most once a second; the admin endpoint pushes them now
    httpx.get(gw.url + "/admin/cache/stats", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    source = yaml.safe_load((INTENTS_FILE.parent / "gateway.yaml").read_text())
    source.update(
        redis={"url": REDIS_URL, "prefix": prefix},
        intents_file=str(INTENTS_FILE),
        pricing_file=str(INTENTS_FILE.parent / "pricing.yaml"),
    )
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(yaml.safe_dump(source))

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    assert run_stats(parser.parse_args(["stats", "--config", str(cfg)])) == 0
    out = capsys.readouterr().out
    refund = next(line for line in out.splitlines() if line.startswith("refund"))
    assert refund.split()[1:4] == ["1", "0", "1"]  # entries, vectors (in language partitions), hits
    assert run_flush(parser.parse_args(["flush", "--intent", "refund", "--config", str(cfg)])) == 1
    assert "without confirmation: add --yes" in capsys.readouterr().err  # stdin is not a terminal here
    assert run_flush(parser.parse_args(["flush", "--intent", "refund", "--config", str(cfg), "--yes"])) == 0
    assert "flushed 1" in capsys.readouterr().out
    assert ask(client, "How do I get a refund?")[0]["x-gateway-cache"] == "miss"
