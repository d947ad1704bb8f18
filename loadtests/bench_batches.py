"""Staggered batch jobs under interactive load, on two gateways sharing one Redis, one killed mid-batch.

    .venv/bin/python loadtests/bench_batches.py [--items 2000] [--rate 3] [--phase-s 40]

- a mock provider (the built-in mock, 30 ms) that enforces `rpm_limit: 600` like a provider and counts every
  request over it; both gateways have `rpm: 600` for it, shared through Redis (127.0.0.1:6379, a prefix of
  this run's own);
- phase 1: interactive load alone (open loop, `--rate` requests/s, a third `critical`), p95 measured;
- phase 2: a batch of `--items` chat items is created, the same interactive load runs again, p95 measured;
  when a quarter of the batch is done one gateway is killed (SIGKILL: its leases are taken over);
- then the batch runs to its end. Checks: interactive p95 with the batch / without, critical requests
  refused (must be 0), requests over the provider's rpm (must be 0), every custom_id in the output once.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import orjson
from processes import free_port, wait_http

REPO = Path(__file__).resolve().parent.parent
GATEWAY = str(REPO / ".venv" / "bin" / "gateway")
KEY = "sk-bench"

CONFIG = """
server: {{host: 127.0.0.1, port: {port}, workers: 1, log_level: warning}}
redis: {{url: "redis://127.0.0.1:6379/0", prefix: "{prefix}"}}
auth: {{keys: [{{name: bench, sha256: c00397de4384b5bbaf14c02fe1ec7020d28d1eeab6a722c576c84b6678c41c29}}]}}
deployments:
  provider: {{base_url: "{mock}/v1", model: gpt-3.5-turbo, rpm: 600, timeout: {{connect: 2, read: 30}}}}
models:
  support: {{deployments: [provider]}}
embedding: {{enabled: false}}
cache: {{enabled: false}}
batches: {{lease_s: 10, poll_s: 0.2, max_concurrency: 16}}
pricing_file: {repo}/config/pricing.yaml
intents_file: {repo}/config/intents.yaml
"""


async def interactive(urls: list[str], rate: float, seconds: float) -> dict:
    """Open loop over the live gateways; every third request is critical."""
    latencies: list[float] = []
    refused = {"critical": 0, "normal": 0}
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> None:
            nonlocal errors
            priority = "critical" if i % 3 == 0 else "normal"
            headers = {
                "authorization": f"Bearer {KEY}",
                "content-type": "application/json",
                "x-gateway-priority": priority,
            }
            body = orjson.dumps({"model": "support", "messages": [{"role": "user", "content": f"Live question {i}"}]})
            started = time.perf_counter()
            try:
                async with session.post(
                    urls[i % len(urls)] + "/v1/chat/completions", data=body, headers=headers
                ) as response:
                    await response.read()
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append(time.perf_counter() - started)
            if response.status == 429:
                refused[priority] += 1
            elif response.status != 200:
                errors += 1

        start, tasks = time.perf_counter(), []
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    ordered = sorted(latencies)
    return {
        "p95": ordered[int(0.95 * (len(ordered) - 1))] if ordered else float("nan"),
        "n": len(latencies),
        "refused": refused,
        "errors": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=3.0)
    parser.add_argument("--phase-s", type=float, default=40.0)
    args = parser.parse_args()
    import openai

    prefix = f"bench-batches-{os.urandom(3).hex()}:"
    tmp = Path(tempfile.mkdtemp(prefix="bench-batches-"))
    mock_port = free_port()
    procs = {
        "mock": subprocess.Popen(
            [GATEWAY, "mock-upstream", "--port", str(mock_port), "--latency-ms", "30"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    }
    mock = f"http://127.0.0.1:{mock_port}"
    try:
        wait_http(mock + "/mock/stats")
        httpx.post(mock + "/mock/config", json={"rpm_limit": 600})
        urls = []
        for name in ("a", "b"):
            port = free_port()
            config = tmp / f"{name}.yaml"
            config.write_text(CONFIG.format(port=port, prefix=prefix, mock=mock, repo=REPO))
            procs[name] = subprocess.Popen([GATEWAY, "serve", "--config", str(config)])
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_http(url + "/healthz")

        alone = asyncio.run(interactive(urls, args.rate, args.phase_s))
        print(
            f"interactive alone:      p95 {alone['p95'] * 1000:7.1f} ms  n {alone['n']}  refused {alone['refused']}"
            f"  errors {alone['errors']}",
            flush=True,
        )

        client = openai.OpenAI(base_url=urls[0] + "/v1", api_key=KEY, max_retries=3, timeout=60)
        lines = b"\n".join(
            orjson.dumps(
                {
                    "custom_id": f"item-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "support",
                        "max_tokens": 16,
                        "messages": [{"role": "user", "content": f"Summarise ticket {i}"}],
                    },
                }
            )
            for i in range(args.items)
        )
        upload = client.files.create(file=("items.jsonl", io.BytesIO(lines), "application/jsonl"), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        started = time.monotonic()
        with_batch = asyncio.run(interactive(urls, args.rate, args.phase_s))
        print(
            f"interactive with batch: p95 {with_batch['p95'] * 1000:7.1f} ms  n {with_batch['n']}  refused "
            f"{with_batch['refused']}  errors {with_batch['errors']}",
            flush=True,
        )

        killed = False
        while True:
            batch = client.batches.retrieve(batch.id)
            done = batch.request_counts.completed + batch.request_counts.failed
            if not killed and done >= args.items // 4:
                procs["b"].send_signal(signal.SIGKILL)
                killed = True
                print(f"killed gateway b at {done}/{args.items} items", flush=True)
            if batch.status in ("completed", "failed", "expired", "cancelled"):
                break
            print(f"\r  {done}/{args.items} items, {time.monotonic() - started:.0f} s", end="", flush=True)
            time.sleep(2)
        elapsed = time.monotonic() - started
        print()
        output = client.files.content(batch.output_file_id).content.splitlines() if batch.output_file_id else []
        ids = [orjson.loads(line)["custom_id"] for line in output]
        stats = httpx.get(mock + "/mock/stats").json()
        print(
            f"batch {batch.status} in {elapsed:.0f} s: {len(ids)} outputs, {len(set(ids))} distinct, "
            f"{batch.request_counts.failed} failed; all {args.items} present once: "
            f"{sorted(ids) == sorted(f'item-{i}' for i in range(args.items))}"
        )
        print(f"provider: {stats['chat_requests']} chat requests, over its rpm: {stats['rpm_exceeded']}")
        print(
            f"interactive p95 with the batch / without: x{with_batch['p95'] / alone['p95']:.3f}; critical refused: "
            f"{alone['refused']['critical'] + with_batch['refused']['critical']}"
        )
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        import redis

        r = redis.Redis()
        for key in r.scan_iter(match=prefix + "*"):
            r.delete(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
