"""Configuration errors name their source (the file and the field, or the environment variable), suggest
the nearest field name, and never end in a traceback; environment overrides are strings unless the
field's type says otherwise; every URL is checked when the config is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.auth import hash_key
from gateway.cli import main
from gateway.config import CONFIG_DIR, ConfigError, build_config, load_config

ROOT = Path(__file__).resolve().parent.parent
GOOD = """
auth: {keys: [{name: ci, sha256: "%s"}]}
deployments:
  primary: {base_url: "http://127.0.0.1:9100/v1", model: gpt-3.5-turbo}
models:
  gpt-3.5-turbo: {deployments: [primary]}
intents_file: %s
""" % (hash_key("sk-ci"), CONFIG_DIR / "intents.yaml")


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(GOOD)
    return path


def error_of(path, environ=None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    return str(caught.value)


def test_an_override_is_a_string_when_the_field_is_one(config_file):
    config = load_config(config_file, environ={"GATEWAY_REDIS__PREFIX": "gw:prod:"})
    assert config.redis.prefix == "gw:prod:"


def test_overrides_of_numbers_booleans_and_lists_follow_the_field_type(config_file):
    config = load_config(
        config_file,
        environ={
            "GATEWAY_SERVER__PORT": "9000",
            "GATEWAY_AUTH__OPEN": "true",
            "GATEWAY_CACHE__MAX_TEMPERATURE": "0.5",
            "GATEWAY_MODELS__GPT-3.5-TURBO__FALLBACKS": "[primary]",
            "GATEWAY_SERVER__HOST": "0.0.0.0",
        },
    )
    assert config.server.port == 9000 and config.auth.open is True and config.cache.max_temperature == 0.5
    assert config.server.host == "0.0.0.0"


def test_a_misspelt_override_names_the_variable_and_the_nearest_field(config_file):
    message = error_of(config_file, {"GATEWAY_SERVER__PROT": "9000"})
    assert message == "environment GATEWAY_SERVER__PROT: server has no field 'prot' (did you mean 'port'?)"
    assert str(config_file) not in message


def test_a_bad_override_value_names_the_variable(config_file):
    message = error_of(config_file, {"GATEWAY_SERVER__PORT": "eighty"})
    assert "server.port (from environment GATEWAY_SERVER__PORT): Input should be a valid integer" in message


def test_an_override_of_an_unknown_section_suggests_one(config_file):
    message = error_of(config_file, {"GATEWAY_SREVER__PORT": "1"})
    assert message.startswith("environment GATEWAY_SREVER__PORT: the configuration has no field 'srever'")
    assert "did you mean 'server'?" in message


def test_a_misspelt_field_in_the_file_gets_a_suggestion(config_file):
    config_file.write_text(GOOD + "cache: {max_temprature: 0.3}\n")
    message = error_of(config_file)
    assert f"{config_file}: invalid configuration" in message
    assert "cache.max_temprature: unknown field 'max_temprature' (did you mean 'max_temperature'?)" in message


def test_a_directory_as_config(tmp_path):
    message = error_of(tmp_path)
    assert message.startswith(f"{tmp_path}: is a directory, not a config file")


@pytest.mark.parametrize(
    "url", ["rediss//x", "http://localhost:6379", "redis://", "redis://host:port/0", "redis://localhost:6379/zero"]
)
def test_a_bad_redis_url_is_caught_at_check_time(config_file, url):
    config_file.write_text(GOOD + f"redis: {{url: '{url}'}}\n")
    message = error_of(config_file)
    assert "redis.url" in message and repr(url) in message


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://user:pw@cache.example:6380", "unix:///run/redis.sock", ""]
)
def test_good_redis_urls_pass(config_file, url):
    config_file.write_text(GOOD + f"redis: {{url: '{url}'}}\n")
    assert load_config(config_file, environ={}).redis.url == (url or None)


@pytest.mark.parametrize(
    "url,words",
    [
        ("127.0.0.1:9100", "not an http(s) URL"),
        ("http://", "not an http(s) URL"),
        ("http://host:99999/v1", "not a valid port"),
        ("https://x/v1?key=1", "has a query string"),
        ("https://res.openai.azure.com/openai/deployments/gpt4?api-version=2024-06-01", "set provider: azure"),
    ],
)
def test_bad_upstream_urls(url, words):
    with pytest.raises(ConfigError) as caught:
        build_config(
            {
                "auth": {"open": True},
                "deployments": {"d": {"base_url": url, "model": "m"}},
                "models": {"m": {"deployments": ["d"]}},
            },
            source="test.yaml",
        )
    assert "deployments.d" in str(caught.value) and words in str(caught.value)


@pytest.mark.parametrize("source", [{"env": "${UNSET_KEY_VARIABLE}"}, {"file": ""}])
def test_an_empty_upstream_key_source_is_a_config_error(source):
    # `env: ${UNSET}` expands to "": it used to validate, then the key ring raised TypeError at start
    with pytest.raises(ConfigError) as caught:
        build_config(
            {
                "auth": {"open": True},
                "deployments": {"d": {"base_url": "http://x/v1", "model": "m", "api_keys": [source]}},
                "models": {"m": {"deployments": ["d"]}},
            },
            source="test.yaml",
            environ={},
        )
    assert "deployments.d.api_keys" in str(caught.value)


def test_the_cli_prints_config_errors_without_a_traceback(tmp_path):
    (tmp_path / "gateway.yaml").write_text(GOOD + "redis: {url: 'rediss//x'}\n")
    for args in (
        ["config", "check", str(tmp_path)],
        ["config", "check", str(tmp_path / "gateway.yaml")],
        ["serve", "--config", str(tmp_path / "gateway.yaml"), "--port", "0"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0, args
        assert "Traceback" not in done.stderr and str(tmp_path) in done.stderr, done.stderr


def test_config_check_names_a_bad_override(config_file, monkeypatch, capsys):
    monkeypatch.setenv("GATEWAY_SERVER__PROT", "9000")
    assert main(["config", "check", str(config_file)]) == 1
    assert "GATEWAY_SERVER__PROT" in capsys.readouterr().err


def test_client_key_names_are_unique(config_file):
    digest = hash_key("sk-ci")
    config_file.write_text(
        GOOD.replace(
            'auth: {keys: [{name: ci, sha256: "%s"}]}' % digest,
            'auth: {keys: [{name: ci, sha256: "%s"}, {name: ci, sha256: "%s"}]}' % (digest, hash_key("sk-other")),
        )
    )
    assert "auth: keys: the name 'ci' is used by several keys" in error_of(config_file)


def test_an_error_in_the_intents_file_names_that_file(tmp_path):
    intents = tmp_path / "intents.yaml"
    intents.write_text((CONFIG_DIR / "intents.yaml").read_text() + "\nthreshhold: 0.8\n")
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(GOOD.replace(str(CONFIG_DIR / "intents.yaml"), "intents.yaml"))
    message = error_of(config_file)
    assert f"intents.threshhold (from file {intents}): unknown field 'threshhold'" in message
