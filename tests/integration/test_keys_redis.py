"""Client keys kept in Redis: created and revoked with the CLI, no deploy, limits applied."""

import uuid

import openai
import pytest
import yaml

from gateway.cli import main as cli_main
from gateway.config import CONFIG_DIR, load_config
from tests.conftest import LIGHT_MODEL, REDIS_URL, sync_redis_client, wait_until


@pytest.fixture
def config_file(tmp_path, light_mock):
    prefix = f"gwtest:{uuid.uuid4().hex}:"
    data = {
        "redis": {"url": REDIS_URL, "prefix": prefix},
        "auth": {"redis_keys": True, "redis_keys_ttl_s": 0.05},
        "deployments": {"light": {"base_url": light_mock.url, "model": LIGHT_MODEL}},
        "models": {"support": {"deployments": ["light"]}},
        "cache": {"enabled": False},
        "pricing_file": str(CONFIG_DIR / "pricing.yaml"),
        "intents_file": str(CONFIG_DIR / "intents.yaml"),
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    yield path
    client = sync_redis_client()
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def ask(gw, key):
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)
    return client.chat.completions.create(model="support", messages=[{"role": "user", "content": "Hello"}])


def test_keys_created_in_redis_work_at_once_and_revoking_them_locks_out(config_file, start_gateway, capsys):
    gw = start_gateway(load_config(config_file))
    with pytest.raises(openai.AuthenticationError):
        ask(gw, "sk-gw-not-a-key")

    assert cli_main(["keys", "create", "team-a", "--rpm", "2", "--config", str(config_file)]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("sk-gw-")
    assert wait_until(lambda: _works(gw, key), timeout=5)  # the unknown-key memo expires in 0.05 s

    assert cli_main(["keys", "list", "--config", str(config_file)]) == 0
    listing = capsys.readouterr().out
    assert "team-a" in listing and key not in listing  # only hashes are stored

    with pytest.raises(openai.RateLimitError):  # the key's own rpm (2) comes from Redis too
        for _ in range(3):
            ask(gw, key)

    assert cli_main(["keys", "revoke", key, "--config", str(config_file)]) == 0
    assert wait_until(lambda: _refused(gw, key), timeout=5)


def _works(gw, key) -> bool:
    try:
        return ask(gw, key).model == LIGHT_MODEL
    except openai.AuthenticationError:
        return False


def _refused(gw, key) -> bool:
    try:
        ask(gw, key)
    except openai.AuthenticationError:
        return True
    except openai.RateLimitError:
        return False
    return False
