"""The `gateway` command: `config check` names the file and the field of a bad config, a bad config stops
`serve` before it listens, and `gateway demo` starts and answers the openai SDK.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from gateway.auth import hash_key
from gateway.cli import main
from gateway.config import DEFAULT_CONFIG_PATH

ROOT = Path(__file__).resolve().parent.parent
GOOD = """
server: {port: 8080, upstream_client: aiohttp}
auth: {keys: [{name: ci, sha256: "%s"}]}
deployments:
  primary: {base_url: "http://127.0.0.1:9100/v1", model: gpt-3.5-turbo}
models:
  gpt-3.5-turbo: {deployments: [primary]}
intents_file: %s
""" % (hash_key("sk-ci"), DEFAULT_CONFIG_PATH.parent / "intents.yaml")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_config_check_accepts_the_demo_config(capsys):
    assert main(["config", "check", str(DEFAULT_CONFIG_PATH)]) == 0
    out = capsys.readouterr().out
    assert f"{DEFAULT_CONFIG_PATH}: valid" in out and "model support" in out


def test_config_check_accepts_a_small_config(tmp_path, capsys):
    assert main(["config", "check", str(write(tmp_path, GOOD))]) == 0
    assert "model gpt-3.5-turbo" in capsys.readouterr().out


@pytest.mark.parametrize(
    "old,new,field,words",
    [
        ("upstream_client: aiohttp", "upstream_client: curl", "server.upstream_client", "aiohttp"),
        ("port: 8080", "port: eighty", "server.port", "integer"),
        ("port: 8080", "prot: 8080", "server.prot", "unknown field 'prot' (did you mean 'port'?)"),
        ('base_url: "http://127.0.0.1:9100/v1"', 'base_url: "127.0.0.1:9100"', "deployments.primary.base_url", "URL"),
        ("deployments: [primary]", "deployments: [primry]", "models.gpt-3.5-turbo.deployments", "primry"),
        ('sha256: "', 'sha256: "abc', "auth.keys.0.sha256", "sha256"),
    ],
)
def test_config_check_names_the_file_and_the_field(tmp_path, capsys, old, new, field, words):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    assert main(["config", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and field in err and words in err


def test_config_check_on_unreadable_files(tmp_path, capsys):
    assert main(["config", "check", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml: file not found" in capsys.readouterr().err
    path = write(tmp_path, "server: [unclosed")
    assert main(["config", "check", str(path)]) == 1
    assert f"{path}: invalid YAML" in capsys.readouterr().err


def test_an_environment_override_is_validated_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GATEWAY_SERVER__MAX_BODY_BYTES", "-1")
    assert main(["config", "check", str(write(tmp_path, GOOD))]) == 1
    assert "server.max_body_bytes" in capsys.readouterr().err


def test_keys_hash(capsys):
    assert main(["keys", "hash", "sk-bench"]) == 0
    assert capsys.readouterr().out.strip() == hash_key("sk-bench")


def test_a_wrong_config_stops_the_start(tmp_path):
    path = write(tmp_path, GOOD.replace("upstream_client: aiohttp", "upstream_client: curl"))
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--port", str(port)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert str(path) in done.stderr and "server.upstream_client" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")


def test_demo_starts_and_answers():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert demo.poll() is None, demo.stdout.read()
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the demo did not become ready in 60 s"
            time.sleep(0.1)
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="demo", max_retries=0, timeout=20)
        answer = sdk.chat.completions.create(
            model="support", messages=[{"role": "user", "content": "Where is my refund?"}]
        )
        assert answer.choices[0].message.content and answer.usage.total_tokens > 0
        assert {m.id for m in sdk.models.list()} >= {"support", "gpt-3.5-turbo"}
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=20)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
        output = demo.stdout.read()
        print(output, file=sys.stderr)  # shown when the test fails
    assert f"listening on http://127.0.0.1:{port}" in output
