"""The Files and Batch APIs with the official openai SDK, end to end; spend budgets over HTTP."""

from __future__ import annotations

import io
import re

import httpx
import openai
import orjson
import pytest

from gateway.mock_upstream import MockServerThread, MockSettings
from tests.conftest import HEAVY_MODEL, LIGHT_MODEL, TEST_KEY, base_config, wait_until

PRICES = {
    LIGHT_MODEL: {"input_per_1m": 1.0, "output_per_1m": 2.0},
    HEAVY_MODEL: {"input_per_1m": 5.0, "output_per_1m": 15.0},
}


def jsonl(n: int, url: str = "/v1/chat/completions", body=None) -> bytes:
    rows = []
    for i in range(n):
        item = body(i) if body else {"model": "support", "messages": [{"role": "user", "content": f"Question {i}?"}]}
        rows.append(orjson.dumps({"custom_id": f"req-{i}", "method": "POST", "url": url, "body": item}))
    return b"\n".join(rows) + b"\n"


def client_for(gw, key=TEST_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=20)


def finished(client, batch_id, statuses=("completed", "failed", "expired", "cancelled")):
    holder = {}

    def done():
        holder["batch"] = client.batches.retrieve(batch_id)
        return holder["batch"].status in statuses

    assert wait_until(done, timeout=60, interval=0.2), holder.get("batch")
    return holder["batch"]


@pytest.fixture
def batch_gateway(start_gateway, light_mock, heavy_mock):
    return start_gateway(
        base_config(
            light_mock.url,
            heavy_mock.url,
            pricing=PRICES,
            batches={"poll_s": 0.05, "completion_windows": ["24h", "3s"]},
        )
    )


def test_a_batch_end_to_end_with_the_sdk(batch_gateway, light_mock):
    client = client_for(batch_gateway)
    upload = client.files.create(file=("in.jsonl", io.BytesIO(jsonl(12)), "application/jsonl"), purpose="batch")
    assert upload.purpose == "batch" and upload.bytes > 0
    assert client.files.retrieve(upload.id).filename == "in.jsonl"
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"job": "nightly"}
    )
    assert batch.status == "in_progress" and batch.request_counts.total == 12
    batch = finished(client, batch.id)
    assert batch.status == "completed" and batch.request_counts.completed == 12 and batch.error_file_id is None
    lines = [orjson.loads(line) for line in client.files.content(batch.output_file_id).content.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{i}" for i in range(12))
    first = next(line for line in lines if line["custom_id"] == "req-0")
    assert first["response"]["status_code"] == 200
    assert first["response"]["body"]["choices"][0]["message"]["content"].startswith("Mock answer to: Question 0?")
    assert light_mock.stats()["chat_requests"] == 12
    assert [b.id for b in client.batches.list()] == [batch.id]
    # another key sees none of it
    other = client_for(batch_gateway, "sk-plain-0123456789")
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    assert other.files.list().data == []
    metrics = httpx.get(f"{batch_gateway.url}/metrics").text
    assert 'gateway_batch_items_total{outcome="completed"} 12.0' in metrics


def test_a_batch_item_can_be_a_cache_hit_and_counts_in_cost_per_intent(batch_gateway, light_mock):
    client = client_for(batch_gateway)
    question = {"model": "support", "messages": [{"role": "user", "content": "How do I get a refund?"}]}
    client.chat.completions.create(**question)
    upload = client.files.create(
        file=("in.jsonl", io.BytesIO(jsonl(3, body=lambda i: question)), "application/jsonl"), purpose="batch"
    )
    batch = finished(
        client,
        client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h").id,
    )
    assert batch.request_counts.completed == 3
    assert light_mock.stats()["chat_requests"] == 1  # all three items answered from the cache
    metrics = httpx.get(f"{batch_gateway.url}/metrics").text
    assert re.search(r'gateway_requests_total\{[^}]*cache="hit-exact"[^}]*\} 3\.0', metrics)


def test_bad_input_files_and_requests_get_openai_errors(batch_gateway):
    client = client_for(batch_gateway)
    bad = client.files.create(
        file=("bad.jsonl", io.BytesIO(b'{"custom_id": "a", "method": "GET"}\n'), "application/jsonl"), purpose="batch"
    )
    batch = client.batches.create(input_file_id=bad.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "failed" and {e.code for e in batch.errors.data} >= {"invalid_method", "mismatched_url"}
    with pytest.raises(openai.BadRequestError) as window:
        client.batches.create(input_file_id=bad.id, endpoint="/v1/chat/completions", completion_window="7d")
    assert window.value.body["param"] == "completion_window"
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.jsonl", io.BytesIO(b"{}"), "application/jsonl"), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-nope")


def test_cancel_and_expiry_keep_partial_results(start_gateway, heavy_mock):
    with MockServerThread(MockSettings(served_model=LIGHT_MODEL, latency_ms=400)) as slow:
        gw = start_gateway(
            base_config(
                slow.url,
                heavy_mock.url,
                pricing=PRICES,
                batches={"poll_s": 0.05, "max_concurrency": 1, "completion_windows": ["24h", "3s"]},
            )
        )
        client = client_for(gw)
        upload = client.files.create(file=("in.jsonl", io.BytesIO(jsonl(30)), "application/jsonl"), purpose="batch")
        expiring = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="3s"
        )
        expired = finished(client, expiring.id)
        assert expired.status == "expired"
        counts = expired.request_counts
        errors = client.files.content(expired.error_file_id).content.splitlines()
        done = client.files.content(expired.output_file_id).content.splitlines() if expired.output_file_id else []
        assert len(errors) + len(done) == 30 and counts.completed == len(done)
        assert orjson.loads(errors[-1])["error"]["code"] == "batch_expired"

        running = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert client.batches.cancel(running.id).status in ("cancelling", "cancelled")
        cancelled = finished(client, running.id)
        assert cancelled.status == "cancelled" and cancelled.request_counts.completed < 30
        codes = {
            orjson.loads(line)["error"]["code"]
            for line in client.files.content(cancelled.error_file_id).content.splitlines()
        }
        assert codes == {"batch_cancelled"}


def test_spend_budgets_refuse_with_insufficient_quota_and_batch_spend_counts(start_gateway, light_mock, heavy_mock):
    gw = start_gateway(
        base_config(
            light_mock.url,
            heavy_mock.url,
            pricing=PRICES,
            budgets={"keys": {"test": {"daily_usd": 0.0015}}},
            batches={"poll_s": 0.05},
        )
    )
    client = client_for(gw)
    # each request reserves its estimate (256 answer tokens at the heavy price: ~$0.004) : over the budget
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="support", messages=[{"role": "user", "content": "Hello"}])
    assert refused.value.body["code"] == "insufficient_quota" and "daily spend budget" in refused.value.body["message"]
    served = client.chat.completions.create(
        model="support", max_tokens=20, messages=[{"role": "user", "content": "Where is my parcel?"}]
    )
    assert served.choices[0].message.content
    metrics = httpx.get(f"{gw.url}/metrics").text
    spent = float(
        re.search(r'gateway_spend_usd\{name="test",period="daily",scope="key"\} ([0-9.e-]+)', metrics).group(1)
    )
    assert 0 < spent < 0.0015
    upload = client.files.create(file=("in.jsonl", io.BytesIO(jsonl(2)), "application/jsonl"), purpose="batch")
    batch = finished(
        client,
        client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h").id,
    )
    assert batch.request_counts.failed == 2
    line = orjson.loads(client.files.content(batch.error_file_id).content.splitlines()[0])
    assert line["response"]["status_code"] == 429 and line["response"]["body"]["error"]["code"] == "insufficient_quota"
    # the plain key has no budget
    assert (
        client_for(gw, "sk-plain-0123456789")
        .chat.completions.create(model="support", messages=[{"role": "user", "content": "Hello"}])
        .choices
    )
