"""Shadow traffic costs users nothing: the same open-loop load against the gateway with shadow off and with
shadow at 100%, alternating rounds in one run; the client's p50/p95 and the answers compared.

    .venv/bin/python loadtests/bench_shadow.py [--rate 150] [--seconds 15] [--rounds 3]

Upstreams: two copies of the shared Node mock (../shared/bench/mock_upstream.js, 30 ms latency), one the
primary and one the candidate; the judge is off (cheap signals only), as the judge's own upstream call would
be one more background call of the same kind. One uvicorn worker, no Redis. The load is open-loop (a fixed
request rate, each request on its own schedule), so a slower gateway shows up as latency, not as fewer
requests. Every answer must come from the primary, unchanged: content and model are checked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from processes import free_port, wait_http

REPO = Path(__file__).resolve().parent.parent
MOCK = Path(os.environ.get("BENCH_SRC", REPO.parent / "shared" / "bench")) / "mock_upstream.js"
GATEWAY = str(REPO / ".venv" / "bin" / "gateway")

CONFIG = """
server: {{host: 127.0.0.1, port: {port}, workers: 1, log_level: warning}}
auth: {{keys: [{{name: bench, sha256: c00397de4384b5bbaf14c02fe1ec7020d28d1eeab6a722c576c84b6678c41c29}}]}}
deployments:
  primary: {{base_url: "http://127.0.0.1:{primary}/v1", model: gpt-3.5-turbo, timeout: {{connect: 2, read: 30}}}}
  candidate: {{base_url: "http://127.0.0.1:{candidate}/v1", model: ft-candidate, timeout: {{connect: 2, read: 30}}}}
models:
  gpt-3.5-turbo:
    deployments: [primary]
    canary: {{deployments: [candidate], percent: 0}}
    shadow: {{deployment: candidate, percent: {percent}, rpm: 1000000, max_usd_per_day: 1000, max_in_flight: 64,
             busy_lag_ms: {busy_lag_ms}}}
embedding: {{enabled: false}}
cache: {{enabled: false}}
pricing_file: {repo}/config/pricing.yaml
intents_file: {repo}/config/intents.yaml
"""


async def load(url: str, rate: float, seconds: float) -> tuple[list[float], int, int]:
    """Open loop: request i starts at i / rate whatever happened before. Returns latencies, errors, wrong."""
    latencies: list[float] = []
    errors = wrong = 0
    headers = {"authorization": "Bearer sk-bench", "content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            nonlocal errors, wrong
            body = orjson.dumps(
                {
                    "model": "gpt-3.5-turbo",
                    "user": f"u{i}",
                    "messages": [{"role": "user", "content": f"Where is my parcel {i}?"}],
                }
            )
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    raw = await response.read()
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                errors += 1
            elif orjson.loads(raw)["model"] != "gpt-3.5-turbo":
                wrong += 1

        start = time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return latencies, errors, wrong


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=150)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--busy-lag-ms",
        type=float,
        default=5.0,
        help="shadow.busy_lag_ms; a huge value measures shadow calls that are never dropped",
    )
    args = parser.parse_args()
    if not shutil.which("node") or not MOCK.exists():
        print(f"needs node and {MOCK}", file=sys.stderr)
        return 2
    ports = {"primary": free_port(), "candidate": free_port()}
    mocks = [
        subprocess.Popen(
            ["node", str(MOCK)], env={**os.environ, "PORT": str(port), "LATENCY_MS": "30"}, stdout=subprocess.DEVNULL
        )
        for port in ports.values()
    ]
    results: dict[str, list[tuple[float, float, int, int, int]]] = {"off": [], "on": []}
    tmp = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    try:
        for port in ports.values():
            wait_http(f"http://127.0.0.1:{port}/v1/models")
        for round_ in range(args.rounds):
            for mode in ("off", "on"):
                port = free_port()
                config = tmp / f"{mode}.yaml"
                config.write_text(
                    CONFIG.format(
                        port=port, percent=100 if mode == "on" else 0, repo=REPO, busy_lag_ms=args.busy_lag_ms, **ports
                    )
                )
                gateway = subprocess.Popen([GATEWAY, "serve", "--config", str(config)], stdout=subprocess.DEVNULL)
                try:
                    wait_http(f"http://127.0.0.1:{port}/healthz")
                    asyncio.run(load(f"http://127.0.0.1:{port}/v1/chat/completions", args.rate, 2))  # warm-up
                    latencies, errors, wrong = asyncio.run(
                        load(f"http://127.0.0.1:{port}/v1/chat/completions", args.rate, args.seconds)
                    )
                    metrics = __import__("httpx").get(f"http://127.0.0.1:{port}/metrics").text
                finally:
                    gateway.terminate()
                    gateway.wait(30)
                shadow_ok = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in metrics.splitlines()
                    if line.startswith("gateway_shadow_calls_total") and 'outcome="ok"' in line
                )
                row = (quantile(latencies, 0.5), quantile(latencies, 0.95), errors, wrong, int(shadow_ok))
                results[mode].append(row)
                print(
                    f"round {round_ + 1} shadow {mode:3}: p50 {row[0] * 1000:6.1f} ms  p95 {row[1] * 1000:6.1f} ms  "
                    f"errors {errors}  answers not from the primary {wrong}  shadow calls {row[4]}",
                    flush=True,
                )
    finally:
        for mock in mocks:
            mock.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {mode: sorted(r[1] for r in rows)[len(rows) // 2] for mode, rows in results.items()}
    p50 = {mode: sorted(r[0] for r in rows)[len(rows) // 2] for mode, rows in results.items()}
    print(
        f"\nmedian p95: off {med['off'] * 1000:.1f} ms, on {med['on'] * 1000:.1f} ms: x{med['on'] / med['off']:.3f}; "
        f"median p50 x{p50['on'] / p50['off']:.3f}; rate {args.rate:g}/s, {args.seconds:g} s x {args.rounds} rounds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
