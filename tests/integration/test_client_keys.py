"""Client keys in Redis managed by id: unique names; revoke by name, id or the hash prefix `keys list`
shows; rotation with a grace period (the old key works until it ends); limits counted per key, not per
name. Through the CLI, a real Redis and a real gateway."""

from __future__ import annotations

import uuid

import openai
import pytest
import yaml

from gateway.auth import ClientKey
from gateway.cli import main as cli_main
from gateway.client_keys import KeyStore, KeyStoreError
from gateway.config import CONFIG_DIR, load_config
from gateway.errors import RateLimited
from gateway.limits import KeyLimits
from gateway.request import ChatRequest
from gateway.upstream.budget import MemoryWindows
from tests.conftest import LIGHT_MODEL, delete_prefix, redis_url, sync_redis_client, wait_until


@pytest.fixture
def prefix():
    prefix = f"gwtest:{uuid.uuid4().hex}:"
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
def store(prefix):
    client = sync_redis_client()
    yield KeyStore(client, prefix)
    client.close()


@pytest.fixture
def config_file(tmp_path, light_mock, prefix):
    data = {
        "redis": {"url": redis_url(), "prefix": prefix},
        "auth": {"redis_keys": True, "redis_keys_ttl_s": 0.05},
        "deployments": {"light": {"base_url": light_mock.url, "model": LIGHT_MODEL}},
        "models": {"support": {"deployments": ["light"]}},
        "cache": {"enabled": False},
        "pricing_file": str(CONFIG_DIR / "pricing.yaml"),
        "intents_file": str(CONFIG_DIR / "intents.yaml"),
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def works(gw, key) -> bool:
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)
    try:
        client.chat.completions.create(model="support", messages=[{"role": "user", "content": "Hello"}])
    except openai.AuthenticationError:
        return False
    return True


def test_names_are_unique(store):
    store.create("team-a", rpm=5)
    with pytest.raises(KeyStoreError, match="a key named 'team-a' exists already"):
        store.create("team-a")
    with pytest.raises(KeyStoreError, match="invalid key name"):
        store.create("two words")


def test_revoke_by_name_id_listed_prefix_key_or_hash(store):
    refs = {
        "name": lambda key, r: r.name,
        "id": lambda key, r: r.id,
        "prefix": lambda key, r: r.prefix + "…",
        "key": lambda key, r: key,
        "sha256": lambda key, r: r.digest,
    }
    for n, (kind, ref_of) in enumerate(refs.items()):
        key, record = store.create(f"team-{n}")
        assert [r.id for r in store.revoke(ref_of(key, record))] == [record.id], kind
        assert not store.find(record.id)
    with pytest.raises(KeyStoreError, match="no key matches 'nobody'"):
        store.revoke("nobody")
    key, record = store.create("team-0")  # a revoked name is free again
    with pytest.raises(KeyStoreError, match="no key matches"):
        store.revoke(record.digest[:4])  # too short a prefix to be trusted


def test_cli_revoke_takes_what_list_shows(config_file, capsys):
    assert cli_main(["keys", "create", "team-b", "--config", str(config_file)]) == 0
    capsys.readouterr()
    assert cli_main(["keys", "list", "--config", str(config_file)]) == 0
    listed_prefix = capsys.readouterr().out.split()[2]
    assert listed_prefix.endswith("…")
    assert cli_main(["keys", "revoke", listed_prefix, "--config", str(config_file)]) == 0
    assert "revoked team-b" in capsys.readouterr().out
    assert cli_main(["keys", "revoke", "team-b", "--config", str(config_file)]) == 2
    assert "no key matches 'team-b'" in capsys.readouterr().err
    assert cli_main(["keys", "create", "team-b", "--config", str(config_file)]) == 0
    assert cli_main(["keys", "create", "team-b", "--config", str(config_file)]) == 2
    assert "exists already" in capsys.readouterr().err


def test_rotate_keeps_the_old_key_for_the_grace(config_file, start_gateway, capsys):
    gw = start_gateway(load_config(config_file))
    assert cli_main(["keys", "create", "team-c", "--rpm", "100", "--config", str(config_file)]) == 0
    old = capsys.readouterr().out.strip()
    assert wait_until(lambda: works(gw, old), timeout=5)
    assert cli_main(["keys", "rotate", "team-c", "--grace", "1h", "--config", str(config_file)]) == 0
    new = capsys.readouterr().out.strip()
    assert new != old and works(gw, new) and works(gw, old)
    assert cli_main(["keys", "list", "--config", str(config_file)]) == 0
    listing = capsys.readouterr().out
    assert listing.count("team-c") == 2 and "rotated out, works 60m more" in listing and "rpm 100" in listing

    assert cli_main(["keys", "rotate", "team-c", "--grace", "1s", "--config", str(config_file)]) == 0
    newest = capsys.readouterr().out.strip()
    assert wait_until(lambda: not works(gw, new), timeout=10)  # its grace (1 s) is over
    assert works(gw, newest)
    assert cli_main(["keys", "rotate", "team-c", "--grace", "soon", "--config", str(config_file)]) != 0


def chat(key: ClientKey) -> ChatRequest:
    return ChatRequest(
        body={"model": "m", "messages": [{"role": "user", "content": "hi"}]}, alias="m", headers={}, key=key
    )


async def test_limits_are_counted_per_key_not_per_name():
    limits = KeyLimits(MemoryWindows())
    first, second = ClientKey("team-c", rpm=2, id="key_1"), ClientKey("team-c", rpm=2, id="key_2")
    for key in (first, first, second, second):
        await limits.admit(chat(key))
    for key in (first, second):
        with pytest.raises(RateLimited):
            await limits.admit(chat(key))
