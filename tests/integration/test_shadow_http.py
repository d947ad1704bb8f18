"""Shadow traffic, side-by-side judging, the registry and gated promotion, over real HTTP.

A candidate mock answers with its own first words ("Great", "Poor", or the stable mock's own "Mock"); a
deterministic judge (a small HTTP server speaking chat completions) prefers Great over Mock over Poor,
whichever position each answer is in.
"""

from __future__ import annotations

import asyncio
import re
import threading

import httpx
import openai
import orjson
import pytest
from aiohttp import web

from gateway.auth import hash_key
from gateway.cli import main as cli_main
from gateway.mock_upstream import MockServerThread, MockSettings
from tests.conftest import LIGHT_MODEL, TEST_KEY, base_config, wait_until

ADMIN_KEY = "sk-admin-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
CANDIDATE_MODEL = "candidate-model"
RANK = {"Great": 2, "Mock": 1, "Poor": 0}


class JudgeServer:
    """Answers "A", "B" or "TIE" by the first word of each answer in the judge prompt; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _answer(self, request: web.Request) -> web.Response:
        self.calls += 1
        prompt = (await request.json())["messages"][-1]["content"]
        a, b = (RANK.get(re.search(rf"Answer {s}:\n(\w+)", prompt).group(1), 1) for s in ("A", "B"))
        word = "A" if a > b else "B" if b > a else "TIE"
        return web.json_response(
            {
                "id": "j",
                "object": "chat.completion",
                "created": 0,
                "model": "judge",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": word}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101},
            }
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._answer)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def __enter__(self) -> "JudgeServer":
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def judge():
    with JudgeServer() as server:
        yield server


def start_shadow(start_gateway, light_mock, heavy_mock, candidate, judge, *, shadow=None, promotion=None, **extra):
    timeout = {"connect": 1, "read": 5}
    config = base_config(
        light_mock.url,
        heavy_mock.url,
        auth={"admin_key_sha256": hash_key(ADMIN_KEY)},
        cache={"enabled": False},
        deployments={
            "light": {
                "base_url": light_mock.url,
                "model": LIGHT_MODEL,
                "timeout": timeout,
                "registry": {"version": "v3", "owner": "support-ml", "created": "2026-11-20"},
            },
            "heavy": {"base_url": heavy_mock.url, "model": "heavy-model", "timeout": timeout},
            "candidate": {
                "base_url": candidate.url,
                "model": CANDIDATE_MODEL,
                "timeout": timeout,
                "registry": {
                    "version": "v4",
                    "base_model": "gpt-3.5-turbo-0125",
                    "fine_tune_job": "ftjob-42",
                    "dataset_sha256": "ab" * 32,
                    "eval_scores": {"golden_accuracy": 0.91},
                },
            },
            "judge": {"base_url": judge.url, "model": "judge-model", "timeout": timeout},
        },
        models={
            "support": {
                "deployments": ["light"],
                "heavy": ["heavy"],
                "canary": {"deployments": ["candidate"], "percent": 0, "rollback_window": 1000},
                # a loaded test machine runs its loop late: shadow calls must not be dropped for it here
                "shadow": {
                    "deployment": "candidate",
                    "percent": 100,
                    "judge": "judge",
                    "rpm": 10_000,
                    "busy_lag_ms": 1e6,
                    "max_usd_per_day": 100.0,
                    **(shadow or {}),
                },
                # The latency gate is left wide: on a loaded test machine p95s move by seconds (unit-tested instead).
                "promotion": {
                    "stages": [50, 100],
                    "min_samples": 6,
                    "check_every_s": 3600,
                    "max_p95_ratio": 1000,
                    **(promotion or {}),
                },
            }
        },
        **extra,
    )
    return start_gateway(config)


def candidate_mock(prefix: str, **settings):
    return MockServerThread(MockSettings(served_model=CANDIDATE_MODEL, answer_prefix=prefix, **settings))


def shadow_summary(gw) -> dict:
    return httpx.get(f"{gw.url}/admin/shadow/support?pairs=50", headers=ADMIN).json()


def ask_many(gw, n: int, start: int = 0) -> list:
    client = openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY, max_retries=0, timeout=20)
    return [
        client.chat.completions.with_raw_response.create(
            model="support", user=f"user-{i}", messages=[{"role": "user", "content": f"Where is my parcel number {i}?"}]
        )
        for i in range(start, start + n)
    ]


def test_users_get_the_primary_answer_untouched_and_pairs_are_judged(start_gateway, light_mock, heavy_mock, judge):
    with candidate_mock("Great answer to:") as candidate:
        gw = start_shadow(start_gateway, light_mock, heavy_mock, candidate, judge)
        answers = ask_many(gw, 8)
        for i, raw in enumerate(answers):
            body = orjson.loads(raw.content)
            assert body["model"] == LIGHT_MODEL and "x-gateway-variant" not in raw.headers
            assert body["choices"][0]["message"]["content"].startswith(
                f"Mock answer to: Where is my parcel number {i}?"
            )
        assert wait_until(lambda: shadow_summary(gw)["pairs"] == 8)
        summary = shadow_summary(gw)
    assert candidate.stats()["chat_requests"] == 8
    assert summary["overall"]["win"] == 8 and summary["overall"]["low"] > 0.6
    assert summary["candidate"]["requests"] == 8 and summary["candidate"]["error_rate"] == 0
    pair = summary["recent"][0]
    assert pair["candidate"]["text"].startswith("Great answer to") and pair["how"] == "judge"
    assert judge.calls == 16  # both orders for every pair
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert 'gateway_shadow_verdicts_total{model="support",verdict="win"} 8.0' in metrics
    # shadow calls never count in the users' cost per intent
    assert not re.search(r'gateway_cost_usd_total\{[^}]*deployment="(candidate|judge)"', metrics)


def test_the_spend_cap_stops_shadow_calls(start_gateway, light_mock, heavy_mock, judge):
    with candidate_mock("Great answer to:") as candidate:
        gw = start_shadow(
            start_gateway,
            light_mock,
            heavy_mock,
            candidate,
            judge,
            shadow={"max_usd_per_day": 0.000001},
            pricing={CANDIDATE_MODEL: {"input_per_1m": 100.0, "output_per_1m": 100.0}},
        )
        ask_many(gw, 1)
        assert wait_until(lambda: shadow_summary(gw)["spent_usd_today"] > 0.000001)
        ask_many(gw, 5, start=1)
        assert wait_until(lambda: over_budget(gw) >= 5)
    assert candidate.stats()["chat_requests"] == 1


def over_budget(gw) -> float:
    found = re.search(
        r'gateway_shadow_calls_total\{model="support",outcome="over_budget"\} ([0-9.]+)',
        httpx.get(f"{gw.url}/metrics").text,
    )
    return float(found.group(1)) if found else 0.0


def test_registry_from_config_changes_at_run_time_audited(start_gateway, light_mock, heavy_mock, judge, capsys):
    with candidate_mock("Mock answer to:") as candidate:
        gw = start_shadow(start_gateway, light_mock, heavy_mock, candidate, judge)
        entry = httpx.get(f"{gw.url}/admin/models/candidate", headers=ADMIN).json()
        assert entry["version"] == "v4" and entry["fine_tune_job"] == "ftjob-42"
        assert entry["eval_scores"] == {"golden_accuracy": 0.91}
        changed = httpx.patch(
            f"{gw.url}/admin/models/candidate",
            headers={**ADMIN, "x-gateway-actor": "alice"},
            json={"set": {"eval_scores": {"golden_accuracy": 0.93}}, "why": "re-ran the golden set"},
        )
        assert changed.status_code == 200 and changed.json()["eval_scores"] == {"golden_accuracy": 0.93}
        audit = httpx.get(f"{gw.url}/admin/models-audit", headers=ADMIN).json()["data"][0]
        assert audit["who"] == "alice" and audit["why"] == "re-ran the golden set"
        assert audit["changes"]["eval_scores"]["from"] == {"golden_accuracy": 0.91}
        bad = httpx.patch(
            f"{gw.url}/admin/models/candidate", headers=ADMIN, json={"set": {"versoin": "x"}, "why": "typo"}
        )
        assert bad.status_code == 400 and "versoin" in bad.json()["error"]["message"]
        assert httpx.get(f"{gw.url}/admin/models", headers={"authorization": f"Bearer {TEST_KEY}"}).status_code == 401
        assert cli_main(["models", "list", "--url", gw.url, "--admin-key", ADMIN_KEY]) == 0
        listed = openai.OpenAI(base_url=gw.base_url, api_key=TEST_KEY).models.list().data
        support = next(m for m in listed if m.id == "support")
        assert support.owned_by == "support-ml" and support.created == 1795132800  # 2026-11-20, from the registry
    out = capsys.readouterr().out
    assert "candidate" in out and "v4" in out and "v3" in out


def step(gw) -> dict:
    return httpx.post(f"{gw.url}/admin/promotions/support/step", headers=ADMIN).json()


def promote(gw, rounds: int = 12) -> dict:
    """Start the promotion, then alternate traffic and gate checks until the plan ends."""
    started = httpx.post(f"{gw.url}/admin/promotions/support", headers=ADMIN, json={"why": "v4 looks good"})
    assert started.status_code == 201, started.text
    plan, sent = started.json(), 0
    for _ in range(rounds):
        ask_many(gw, 12, start=sent)
        sent += 12
        assert wait_until(lambda: shadow_summary(gw)["pairs"] >= min(sent, 6) or plan["stage_name"] != "shadow")
        plan = step(gw)
        if plan["status"] != "running":
            return plan
    return plan


def canary_percent(gw) -> float:
    return httpx.get(f"{gw.url}/admin/canary", headers=ADMIN).json()["models"]["support"]["percent"]


def test_a_better_candidate_is_promoted_stage_by_stage(start_gateway, light_mock, heavy_mock, judge, capsys):
    with candidate_mock("Great answer to:") as candidate:
        gw = start_shadow(start_gateway, light_mock, heavy_mock, candidate, judge)
        plan = promote(gw)
        assert plan["status"] == "promoted", plan
        assert [e["event"] for e in plan["history"]] == ["started", "advanced", "advanced", "promoted"]
        assert canary_percent(gw) == 100
        assert httpx.get(f"{gw.url}/admin/models/candidate", headers=ADMIN).json()["promoted"]
        assert cli_main(["canary", "status", "support", "--url", gw.url, "--admin-key", ADMIN_KEY]) == 0
    assert "promoting candidate: promoted" in capsys.readouterr().out


def test_a_worse_candidate_is_rolled_back_at_the_quality_gate(start_gateway, light_mock, heavy_mock, judge):
    with candidate_mock("Poor answer to:") as candidate:
        gw = start_shadow(start_gateway, light_mock, heavy_mock, candidate, judge)
        plan = promote(gw)
    assert plan["status"] == "rolled_back" and plan["stage_name"] == "shadow"
    assert plan["reason"].startswith("quality gate")
    assert canary_percent(gw) == 0


@pytest.mark.parametrize("ties_promote, outcome", [(False, "rolled_back"), (True, "promoted")])
def test_an_identical_candidate_is_promoted_only_when_ties_promote(
    start_gateway, light_mock, heavy_mock, judge, ties_promote, outcome
):
    with candidate_mock("Mock answer to:") as candidate:
        gw = start_shadow(
            start_gateway, light_mock, heavy_mock, candidate, judge, promotion={"promote_on_ties": ties_promote}
        )
        plan = promote(gw)
    assert plan["status"] == outcome, plan
    assert judge.calls == 0  # identical answers tie on the cheap signals, no judge needed


def test_a_failing_canary_is_rolled_back_at_the_health_gate(start_gateway, light_mock, heavy_mock, judge):
    # Better answers in shadow, but as a canary every other call fails: the users' requests fall back.
    with candidate_mock("Great answer to:") as candidate:
        gw = start_shadow(
            start_gateway,
            light_mock,
            heavy_mock,
            candidate,
            judge,
            resilience={"retry": {"attempts": 1}, "breaker": {"failures": 1000}},
        )
        started = httpx.post(f"{gw.url}/admin/promotions/support", headers=ADMIN, json={})
        assert started.status_code == 201
        ask_many(gw, 8)
        assert wait_until(lambda: shadow_summary(gw)["pairs"] >= 6)
        assert step(gw)["stage_name"] == "50"
        candidate.configure(fail_every_n=2, fail_status=500)
        plan = step(gw)
        for round_ in range(10):
            ask_many(gw, 12, start=100 + 12 * round_)
            plan = step(gw)
            if plan["status"] != "running":
                break
    assert plan["status"] == "rolled_back" and plan["reason"].startswith("health gate"), plan
    assert canary_percent(gw) == 0
