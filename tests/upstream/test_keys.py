"""Upstream keys: several per deployment, one refused (401/403) is set aside while the others carry on,
keys are read again from their env var or file without a restart. The load test revokes a key at the
upstream mid-load and counts client errors (none)."""

from __future__ import annotations

import asyncio

import openai

from gateway.config import build_config
from gateway.upstream.keys import KeyRing
from tests.conftest import TEST_KEY, async_wait_until, base_config

HELLO = [{"role": "user", "content": "Where is my parcel?"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ring(deployment: dict, environ: dict, clock: Clock) -> KeyRing:
    config = build_config(
        {
            "auth": {"open": True},
            "deployments": {"d": {"base_url": "http://x/v1", "model": "m", **deployment}},
            "models": {"m": {"deployments": ["d"]}},
        }
    )
    return KeyRing(
        config.deployments["d"],
        lambda secret: {"authorization": f"Bearer {secret}"},
        name="d",
        environ=environ,
        clock=clock,
    )


def test_round_robin_set_aside_and_back():
    clock = Clock()
    keys = ring(
        {"api_keys": [{"env": "A"}, {"env": "B"}, {"env": "C"}], "key_aside_s": 60},
        {"A": "sk-a", "B": "sk-b", "C": "sk-c"},
        clock,
    )
    assert sorted(keys.pick().secret for _ in range(6)) == ["sk-a", "sk-a", "sk-b", "sk-b", "sk-c", "sk-c"]
    b = next(k for k in keys.keys if k.id == "B")
    keys.set_aside(b, 401)
    assert {keys.pick().secret for _ in range(6)} == {"sk-a", "sk-c"}
    assert [k.id for k in keys.candidates(after=b)] in (["A", "C"], ["C", "A"])
    clock.now += 61  # aside time over: back at the next refresh
    assert {keys.pick().secret for _ in range(6)} == {"sk-a", "sk-b", "sk-c"}


def test_every_key_aside_still_hands_one_out_and_a_new_value_comes_back_at_once():
    clock = Clock()
    env = {"A": "sk-a"}
    keys = ring({"api_key_env": "A", "keys_refresh_s": 5}, env, clock)
    keys.set_aside(keys.pick(), 401)
    assert keys.pick().secret == "sk-a"  # nothing else to try: the upstream decides
    env["A"] = "sk-a2"  # rotated
    clock.now += 5
    key = keys.pick()
    assert key.secret == "sk-a2" and key.aside_until == 0 and key.headers == {"authorization": "Bearer sk-a2"}


def test_a_key_file_is_read_again_and_may_hold_several_keys(tmp_path):
    clock = Clock()
    path = tmp_path / "keys"
    path.write_text("sk-one\n")
    keys = ring({"api_keys": [{"file": str(path), "rpm": 10}], "keys_refresh_s": 1}, {}, clock)
    assert [(k.id, k.secret, k.rpm) for k in keys.keys] == [("keys", "sk-one", 10)]
    path.write_text("# rotated\nsk-one\nsk-two\n")
    clock.now += 1
    keys.pick()
    assert [(k.id, k.secret) for k in keys.keys] == [("keys#1", "sk-one"), ("keys#2", "sk-two")]
    path.unlink()  # a file that cannot be read: the last keys stay
    clock.now += 1
    keys.pick()
    assert [k.secret for k in keys.keys] == ["sk-one", "sk-two"]


def test_keys_are_named_without_their_value():
    keys = ring({"api_keys": [{"env": "A"}]}, {"A": "sk-secret-value"}, Clock())
    assert "sk-secret" not in str(keys.keys[0]) and str(keys.keys[0]).startswith("A (sha256 ")


def upstream_keys(monkeypatch, light_mock, count: int) -> list[str]:
    keys = [f"sk-upstream-{i}" for i in range(count)]
    for i, key in enumerate(keys):
        monkeypatch.setenv(f"UPSTREAM_KEY_{i}", key)
    light_mock.configure(accepted_keys=tuple(keys))
    return keys


async def test_a_key_revoked_mid_load_costs_no_request(start_gateway, light_mock, heavy_mock, monkeypatch):
    keys = upstream_keys(monkeypatch, light_mock, 3)
    light = {
        "base_url": light_mock.url,
        "model": "light-model",
        "timeout": {"connect": 1, "read": 5},
        "api_keys": [{"env": f"UPSTREAM_KEY_{i}"} for i in range(3)],
    }
    gw = start_gateway(
        base_config(light_mock.url, heavy_mock.url, cache={"enabled": False}, deployments={"light": light})
    )
    client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)
    done, errors = 0, []

    async def worker(n: int) -> None:
        nonlocal done
        for _ in range(n):
            try:  # gpt-3.5-turbo: the light deployment alone, no fallback to hide a failure
                await client.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO)
            except openai.APIError as exc:
                errors.append(exc)
            done += 1

    load = [asyncio.create_task(worker(20)) for _ in range(10)]
    assert await async_wait_until(lambda: done >= 60, timeout=60)
    light_mock.configure(accepted_keys=(keys[0], keys[2]))  # key 1 revoked at the provider
    await asyncio.gather(*load)
    assert done == 200 and errors == []
    assert light_mock.stats()["status_counts"].get("401", 0) >= 1  # the revoked key was tried, and refused
    in_service = {k.id for k in gw.state.dispatcher.upstreams["light"].keys._in_service}
    assert in_service == {"UPSTREAM_KEY_0", "UPSTREAM_KEY_2"}


async def test_a_rotated_key_file_is_used_without_a_restart(start_gateway, light_mock, heavy_mock, tmp_path):
    path = tmp_path / "upstream-key"
    path.write_text("sk-old\n")
    light_mock.configure(accepted_keys=("sk-old",))
    light = {
        "base_url": light_mock.url,
        "model": "light-model",
        "api_keys": [{"file": str(path)}],
        "keys_refresh_s": 0.2,
    }
    gw = start_gateway(
        base_config(light_mock.url, heavy_mock.url, cache={"enabled": False}, deployments={"light": light})
    )
    client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)
    await client.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO)
    light_mock.configure(accepted_keys=("sk-old", "sk-new"))  # the provider issues a new key
    path.write_text("sk-new\n")  # the mounted secret changes

    async def uses_new_key() -> bool:
        await client.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO)
        return light_mock.stats()["last_authorization"] == "Bearer sk-new"

    for _ in range(200):
        if await uses_new_key():
            break
        await asyncio.sleep(0.05)
    assert light_mock.stats()["last_authorization"] == "Bearer sk-new"
    light_mock.configure(accepted_keys=("sk-new",))  # the old key is revoked
    for _ in range(5):
        await client.chat.completions.create(model="gpt-3.5-turbo", messages=HELLO)
