"""Hostile inputs against a real gateway (mock upstream, embedding on): per message, the gateway's own
overhead (x-gateway-overhead-ms) and the slowest /healthz answer while it was being served.

    .venv/bin/python loadtests/hostile.py [--repeat 3] [--no-embedding]

Each message is new to the gateway (no memoised embedding). Figures go to loadtests/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateway.config import EmbeddingConfig
from gateway.embeddings import Embedder
from gateway.mock_upstream import MockServerThread, MockSettings
from tests.conftest import LIGHT_MODEL, TEST_KEY, GatewayServer, base_config

MESSAGES = {
    "short question": lambda i: f"Where is my parcel number {i}?",
    "64 KiB of 'y'": lambda i: f"{i} " + "y" * 65_536,
    "64 KiB prose": lambda i: (f"{i} Where is my order 12345? Write to a@b.co. " * 1600)[:65_536],
    "1 MB prose": lambda i: (f"{i} Where is my order 12345? Write to a@b.co. " * 25_000)[:1_000_000],
    "1 MB of 'a-'": lambda i: f"{i} " + "a-" * 499_000,
}


def measure(gw, text: str) -> tuple[float, float, float]:
    worst, stop = [0.0], threading.Event()

    def poll() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.get(gw.url + "/healthz")
                worst[0] = max(worst[0], time.perf_counter() - started)
                stop.wait(0.002)

    thread = threading.Thread(target=poll)
    thread.start()
    started = time.perf_counter()
    body = {"model": "support", "messages": [{"role": "user", "content": text}], "max_tokens": 5}
    response = httpx.post(
        gw.base_url + "/chat/completions", timeout=120, json=body, headers={"authorization": f"Bearer {TEST_KEY}"}
    )
    total = time.perf_counter() - started
    stop.set()
    thread.join()
    assert response.status_code == 200, response.text
    return float(response.headers["x-gateway-overhead-ms"]), total * 1000, worst[0] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-embedding", action="store_true", help="the gateway's own work only")
    args = parser.parse_args()
    embedder = Embedder.load(enabled=not args.no_embedding, model=EmbeddingConfig().model)  # the served default
    with MockServerThread(MockSettings(served_model=LIGHT_MODEL)) as mock:
        config = base_config(mock.url, mock.url, embedding={"enabled": not args.no_embedding})
        with GatewayServer(config, embedder=embedder) as gw:
            measure(gw, "warm up")
            print(
                f"{'message':<16} {'overhead ms':>12} {'total ms':>10} {'healthz worst ms':>17}"
                f"  (median of {args.repeat})"
            )
            for name, make in MESSAGES.items():
                rows = [measure(gw, make(i)) for i in range(args.repeat)]
                overhead, total, health = (statistics.median(col) for col in zip(*rows))
                print(f"{name:<16} {overhead:>12.1f} {total:>10.1f} {health:>17.1f}")


if __name__ == "__main__":
    main()
