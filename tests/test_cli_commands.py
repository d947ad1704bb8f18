"""The CLI as a user meets it: --version, no traceback on a closed pipe or a busy port, the mock's options
checked and its key never printed, `cache stats|flush --url` against a running gateway (flush asks first),
`make demo PORT=...`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai

from gateway.auth import hash_key
from gateway.cli import main
from tests.conftest import TEST_KEY, base_config

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "sk-admin-cli-0123456789"


def gateway_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, **kwargs
    )


def test_version(capsys):
    done = gateway_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("gateway 0.")


def test_a_closed_pipe_is_not_a_traceback():
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "config", "check"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()  # like `| head` that has read enough: closed before the first line
    errors = process.stderr.read().decode()
    assert process.wait(timeout=60) != 0
    assert "Traceback" not in errors and "BrokenPipeError" not in errors


def test_demo_on_a_busy_port_fails_before_saying_it_listens():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = gateway_cli("demo", "--port", str(port))
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert "listening on" not in done.stdout and "gateway ready" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_make_demo_takes_a_port():
    done = subprocess.run(["make", "-n", "demo", "PORT=8091"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert "gateway demo --port 8091" in done.stdout


def test_mock_upstream_checks_its_options():
    done = gateway_cli("mock-upstream", "--fail-rate-429", "2")
    assert done.returncode == 2 and "'2' is not a rate in [0, 1]" in done.stderr and "Traceback" not in done.stderr
    done = gateway_cli("mock-upstream", "--latency-ms", "-5")
    assert done.returncode == 2 and "must be a number >= 0" in done.stderr
    done = gateway_cli("mock-upstream", "--fail-rate-429", "0.6", "--fail-rate-500", "0.6")
    assert done.returncode == 2 and "add up to 1.2" in done.stderr
    assert "share of requests answered 429" in gateway_cli("mock-upstream", "--help").stdout


def test_mock_upstream_never_prints_its_key():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "mock-upstream",
            "--port",
            "0",
            "--api-key",
            "sk-mock-secret",
            "--served-model",
            "m",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = line.split()[3].removesuffix("/v1")
        shown = httpx.get(url + "/mock/config", timeout=10).json()
        assert shown["api_key"] == "***" and shown["served_model"] == "m"
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert line.startswith("mock upstream on http://127.0.0.1:") and "API key required" in line
    assert "sk-mock-secret" not in line + process.stdout.read()


def test_cache_stats_and_flush_against_a_running_gateway(start_gateway, light_mock, heavy_mock, capsys):
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url, auth={"admin_key_sha256": hash_key(ADMIN_KEY)}))
    client = openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0)
    for _ in range(2):
        client.chat.completions.create(
            model="support", messages=[{"role": "user", "content": "How do I get a refund?"}]
        )
    url = ["--url", gw.url, "--admin-key", ADMIN_KEY]
    assert main(["cache", "stats", *url, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert sum(row["hits"] for row in stats["intents"].values()) == 1
    assert main(["cache", "stats", *url]) == 0
    assert "total: 1 entries" in capsys.readouterr().out

    assert main(["cache", "flush", *url]) == 1  # not a terminal: no confirmation, nothing deleted
    assert "add --yes" in capsys.readouterr().err
    assert main(["cache", "flush", *url, "--yes"]) == 0
    assert "flushed 1 cached answers" in capsys.readouterr().out

    assert main(["cache", "stats", "--url", gw.url, "--admin-key", "sk-wrong"]) == 1
    assert "error 401" in capsys.readouterr().err


def test_serve_on_a_busy_port_fails_before_saying_it_is_ready():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = gateway_cli("serve", "--port", str(port))
    assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "gateway ready" not in done.stderr and "Traceback" not in done.stderr
