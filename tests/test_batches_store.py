"""The batch store and worker: claims with leases, results written once, finalizing, expiry, cancellation;
against the real Redis (a key prefix of the test's own) and in memory."""

from __future__ import annotations

import asyncio
import os

import orjson
import pytest

from gateway.auth import ClientKey
from gateway.batches.files import FileStore
from gateway.batches.jobs import BatchError, BatchStore, parse_input
from gateway.batches.worker import BatchWorker
from gateway.errors import RateLimited
from tests.conftest import async_redis

TEAM_A = ClientKey("team-a", rpm=100)


def lines(n: int, url: str = "/v1/chat/completions") -> bytes:
    return b"\n".join(
        orjson.dumps(
            {
                "custom_id": f"req-{i}",
                "method": "POST",
                "url": url,
                "body": {"model": "support", "messages": [{"role": "user", "content": f"q{i}"}]},
            }
        )
        for i in range(n)
    )


@pytest.fixture(params=["memory", "redis"])
async def store(request):
    if request.param == "memory":
        yield BatchStore(FileStore())
        return
    client = async_redis()  # the tests' Redis (a local cluster with GATEWAY_TEST_REDIS_URL=cluster)
    prefix = f"test-batches-{os.urandom(4).hex()}:"
    yield BatchStore(FileStore(client, prefix), client, prefix)
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def new_batch(store, n: int, window_s: int = 3600) -> dict:
    info = await store.files.put(lines(n), "in.jsonl", "batch", "team-a")
    return await store.create(TEAM_A, info.id, "/v1/chat/completions", "1h", window_s, None, 1000)


def test_the_input_is_checked_line_by_line():
    bad = (
        lines(2)
        + b"\nnot json\n"
        + orjson.dumps({"custom_id": "req-0", "method": "GET", "url": "/v1/embeddings", "body": []})
    )
    _, errors = parse_input(bad, "/v1/chat/completions", 100)
    assert [e["code"] for e in errors] == [
        "invalid_json_line",
        "duplicate_custom_id",
        "invalid_method",
        "mismatched_url",
        "invalid_body",
    ]
    assert errors[1]["line"] == 4


async def test_a_bad_file_fails_the_batch_with_its_errors(store):
    info = await store.files.put(b'{"custom_id": 1}', "in.jsonl", "batch", "team-a")
    batch = await store.create(TEAM_A, info.id, "/v1/chat/completions", "1h", 3600, None, 1000)
    assert batch["status"] == "failed" and batch["errors"]["data"][0]["param"] == "custom_id"
    with pytest.raises(BatchError):
        await store.create(ClientKey("someone-else"), info.id, "/v1/chat/completions", "1h", 3600, None, 1000)


async def test_items_are_claimed_once_and_results_written_once(store):
    batch = await new_batch(store, 5)
    first = await store.claim(batch["id"], 3, lease_s=60)
    second = await store.claim(batch["id"], 10, lease_s=60)
    assert [i for i, _ in first] == [0, 1, 2] and [i for i, _ in second] == [3, 4]
    assert await store.claim(batch["id"], 10, lease_s=60) == []
    line = {"custom_id": "req-0", "response": {"status_code": 200, "body": {}}, "error": None}
    await store.finish(batch["id"], 0, line, True)
    await store.finish(batch["id"], 0, {**line, "custom_id": "again"}, True)  # a second worker, late
    meta = await store.get(batch["id"])
    assert meta["completed"] == 1


async def test_a_dead_replicas_items_are_taken_again_when_their_leases_run_out(store):
    batch = await new_batch(store, 2)
    assert len(await store.claim(batch["id"], 2, lease_s=0.2)) == 2  # this "replica" dies
    await asyncio.sleep(0.3)
    again = await store.claim(batch["id"], 5, lease_s=60)
    assert sorted(i for i, _ in again) == [0, 1]


async def test_a_worker_runs_every_item_and_the_output_keeps_the_order(store):
    served = []

    async def run_item(meta, body):
        served.append(body["messages"][0]["content"])
        if body["messages"][0]["content"] == "q3":
            return 400, {"error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}}, "r"
        return 200, {"choices": [{"message": {"content": "a-" + body["messages"][0]["content"]}}]}, "r"

    batch = await new_batch(store, 7)
    worker = BatchWorker(store, run_item, max_concurrency=4, poll_s=0.01)
    for _ in range(50):
        await worker.tick()
        await worker.drain()
        if (await store.get(batch["id"]))["status"] == "completed":
            break
    meta = await store.get(batch["id"])
    assert meta["status"] == "completed" and (meta["completed"], meta["failed"]) == (6, 1)
    output = [orjson.loads(line) for line in (await store.files.content(meta["output_file_id"])).splitlines()]
    assert [o["custom_id"] for o in output] == ["req-0", "req-1", "req-2", "req-4", "req-5", "req-6"]
    errors = [orjson.loads(line) for line in (await store.files.content(meta["error_file_id"])).splitlines()]
    assert errors[0]["custom_id"] == "req-3" and errors[0]["response"]["status_code"] == 400
    assert sorted(served) == [f"q{i}" for i in range(7)]


async def test_a_shed_item_waits_and_the_worker_slows_down(store):
    calls = {"n": 0}
    waits = []

    async def run_item(meta, body):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RateLimited("batch shed", retry_after_s=0.5)
        return 200, {}, "r"

    async def sleep(seconds):
        waits.append(seconds)

    batch = await new_batch(store, 1)
    worker = BatchWorker(store, run_item, max_concurrency=8, sleep=sleep)
    worker.concurrency = 4.0
    await worker.tick()
    await worker.drain()
    assert waits == [0.5, 0.5] and worker.concurrency < 4.0
    assert (await store.get(batch["id"]))["completed"] == 1


async def test_expiry_keeps_partial_results_and_cancel_stops_the_rest(store):
    batch = await new_batch(store, 3, window_s=0)
    await store.finish(
        batch["id"], 1, {"custom_id": "req-1", "response": {"status_code": 200, "body": {}}, "error": None}, True
    )
    meta = await store.finalize(batch["id"])
    assert meta["status"] == "expired" and meta["expired_at"]
    errors = (await store.files.content(meta["error_file_id"])).splitlines()
    assert [orjson.loads(e)["error"]["code"] for e in errors] == ["batch_expired", "batch_expired"]
    assert len((await store.files.content(meta["output_file_id"])).splitlines()) == 1

    other = await new_batch(store, 3)
    await store.claim(other["id"], 1, lease_s=60)
    assert (await store.cancel(other["id"]))["status"] == "cancelling"  # one item still in flight
    await store.finish(
        other["id"], 0, {"custom_id": "req-0", "response": {"status_code": 200, "body": {}}, "error": None}, True
    )
    assert await store.claim(other["id"], 5, lease_s=60) == []
    assert (await store.finalize(other["id"]))["status"] == "cancelled"


async def test_a_failed_output_write_is_retried_by_the_next_poll(store):
    batch = await new_batch(store, 1)
    await store.finish(
        batch["id"], 0, {"custom_id": "req-0", "response": {"status_code": 200, "body": {}}, "error": None}, True
    )
    put = store.files.put

    async def broken(*args, **kwargs):
        raise ConnectionError("Redis went away mid-write")

    store.files.put = broken
    with pytest.raises(ConnectionError):
        await store.finalize(batch["id"])
    assert (await store.get(batch["id"]))["status"] == "finalizing"
    store.files.put = put
    meta = await store.finalize(batch["id"])
    assert meta["status"] == "completed" and meta["output_file_id"]


async def test_a_result_after_the_output_was_written_is_not_counted(store):
    batch = await new_batch(store, 2, window_s=0)
    await store.claim(batch["id"], 2, lease_s=60)
    assert (await store.finalize(batch["id"]))["status"] == "expired"
    await store.finish(
        batch["id"], 0, {"custom_id": "req-0", "response": {"status_code": 200, "body": {}}, "error": None}, True
    )
    assert (await store.get(batch["id"]))["completed"] == 0
