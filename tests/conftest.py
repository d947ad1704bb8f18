"""Shared fixtures: real mock upstreams and a real gateway on real ports, the real openai SDK.

def test_x(gateway, client):            # gateway on the base config below, light + heavy mocks
    client.chat.completions.create(...)
def test_y(start_gateway, light_mock):  # a gateway on a config of the test's own
    gw = start_gateway(base_config(light_mock.url, ..., cache={"enabled": False}))
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import uuid
from typing import Any

import openai
import pytest
import uvicorn

from gateway.app import create_app
from gateway.config import GatewayConfig, build_config
from gateway.embeddings import Embedder
from gateway.mock_upstream import MockServerThread, MockSettings

LIGHT_MODEL = "light-model"
HEAVY_MODEL = "heavy-model"
BASE_MODEL = "base-model"
TEST_KEY = "sk-test-0123456789"

# The Redis of the tests: the local one (db 15), or GATEWAY_TEST_REDIS_URL; `cluster` starts a local 3-master
# Redis Cluster for the session (tests/redis_servers.py) and runs every Redis-using test against it.
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
_session_cluster = None


def pytest_configure(config) -> None:
    global REDIS_URL, _session_cluster
    if REDIS_URL == "cluster":
        from tests.redis_servers import LocalCluster

        _session_cluster = LocalCluster()
        REDIS_URL = _session_cluster.url


def pytest_unconfigure(config) -> None:
    if _session_cluster is not None:
        _session_cluster.stop()


def redis_url() -> str:
    return REDIS_URL


def async_redis(url: str | None = None):
    """A bare redis.asyncio client (plain, cluster or sentinel URL), as the gateway makes them."""
    from gateway.redisio import make_client

    return make_client(url or REDIS_URL, socket_timeout_s=2.0, pool_size=8)[0]


def sync_redis_client(url: str | None = None):
    """A blocking client for set-up and clean-up."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster

    url = url or REDIS_URL
    if url.startswith("redis+cluster://"):
        nodes = [ClusterNode(h, int(p)) for h, p in (n.split(":") for n in url.split("://", 1)[1].split(","))]
        return RedisCluster(startup_nodes=nodes, socket_timeout=5)
    return redis.Redis.from_url(url, socket_timeout=5)


def delete_prefix(prefix: str, url: str | None = None) -> None:
    client = sync_redis_client(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for key in keys:
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def redis_prefix():
    """A key prefix of the test's own on the test Redis, deleted afterwards."""
    prefix = f"gwtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
async def redis_io(redis_prefix):
    """The gateway's Redis access layer on the test Redis, with a prefix of its own (tests of components)."""
    from gateway.redisio import RedisIO

    client = async_redis()
    io = RedisIO(
        client,
        prefix=redis_prefix,
        kind="cluster" if REDIS_URL.startswith("redis+cluster") else "single",
        pool_size=8,
        timeout_s=1.0,
    )
    await io.start()  # as the app does (on a cluster: the slots known before the first command)
    yield io
    await io.close()


def base_config(light_url: str, heavy_url: str, **sections: Any) -> GatewayConfig:
    """A config with `support` (light → base fallback, heavy tier) and `gpt-3.5-turbo` (light only)."""
    from gateway.auth import hash_key

    data: dict[str, Any] = {
        "auth": {
            "keys": [
                {"name": "test", "sha256": hash_key(TEST_KEY), "allow_force_tier": True},
                {"name": "plain", "sha256": hash_key("sk-plain-0123456789")},
            ]
        },
        "deployments": {
            "light": {"base_url": light_url, "model": LIGHT_MODEL, "timeout": {"connect": 1, "read": 5}},
            "base": {"base_url": light_url, "model": BASE_MODEL, "timeout": {"connect": 1, "read": 5}},
            "heavy": {"base_url": heavy_url, "model": HEAVY_MODEL, "timeout": {"connect": 1, "read": 5}},
        },
        "models": {
            "support": {
                "deployments": ["light"],
                "fallbacks": ["base"],
                "heavy": ["heavy"],
                "difficulty_threshold": 0.5,
            },
            "gpt-3.5-turbo": {"deployments": ["light"]},
        },
        "pricing_file": "pricing.yaml",
        "intents_file": "intents.yaml",
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    return build_config(data)


class GatewayServer:
    """The gateway app under uvicorn, in a thread of its own, on a free port."""

    def __init__(self, config: GatewayConfig, embedder: Embedder | None = None, **app_kwargs: Any) -> None:
        self.app = create_app(config, embedder=embedder, **app_kwargs)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app, host="127.0.0.1", port=0, log_level="warning", access_log=False, loop="asyncio", lifespan="on"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "GatewayServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def state(self):
        return self.app.state


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    from gateway.config import EmbeddingConfig

    return Embedder.load(model=EmbeddingConfig().model)  # the model a gateway serves by default


@pytest.fixture
def light_mock():
    with MockServerThread(MockSettings(served_model=LIGHT_MODEL)) as mock:
        yield mock


@pytest.fixture
def heavy_mock():
    with MockServerThread(MockSettings(served_model=HEAVY_MODEL)) as mock:
        yield mock


@pytest.fixture
def start_gateway(embedder):
    servers: list[GatewayServer] = []

    def start(config: GatewayConfig, **kwargs: Any) -> GatewayServer:
        kwargs.setdefault("embedder", embedder)
        server = GatewayServer(config, **kwargs).__enter__()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.__exit__(None, None, None)


@pytest.fixture
def gateway(start_gateway, light_mock, heavy_mock) -> GatewayServer:
    return start_gateway(base_config(light_mock.url, heavy_mock.url))


@pytest.fixture
def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)


@pytest.fixture
def async_client(gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll a condition with a deadline (never a fixed sleep to pass)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


async def async_wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()
