"""The side-by-side judge and the report's statistics: pure logic, no network."""

import pytest

from gateway.shadow.judge import Judge, Side, answer_side, cheap_verdict
from gateway.shadow.report import quantile, summarise, wilson


def completion(text, finish="stop", refusal=None):
    return {
        "choices": [{"message": {"role": "assistant", "content": text, "refusal": refusal}, "finish_reason": finish}]
    }


def test_cheap_signals_find_each_problem():
    assert answer_side(200, completion("Here is how."), False).problems == []
    assert answer_side(502, None, False).problems == ["error"]
    assert answer_side(200, completion("   "), False).problems == ["empty"]
    assert "refusal" in answer_side(200, completion("I'm unable to help with that."), False).problems
    assert "refusal" in answer_side(200, completion("Je ne peux pas vous aider sur ce point."), False).problems
    assert answer_side(200, completion("a b c", finish="length"), False).problems == ["truncated"]
    assert answer_side(200, completion("not json"), True).problems == ["invalid_json"]
    assert answer_side(200, completion('{"ok": true}'), True).problems == []


def test_cheap_verdicts():
    good, bad = Side(text="fine"), Side(text="", problems=["empty"])
    assert cheap_verdict(good, bad) == "loss"
    assert cheap_verdict(bad, good) == "win"
    assert cheap_verdict(bad, Side(status=502, problems=["error"])) == "tie"
    assert cheap_verdict(Side(text="same "), Side(text="same")) == "tie"
    assert cheap_verdict(Side(text="one"), Side(text="two")) is None


async def test_the_judge_is_asked_in_both_orders_and_position_bias_cancels():
    prompts = []

    async def always_a(prompt):
        prompts.append(prompt)
        return "A"

    verdict, how = await Judge(always_a).compare("q?", Side(text="primary text"), Side(text="candidate text"))
    assert (verdict, how) == ("tie", "judge")
    assert prompts[0].index("primary text") < prompts[0].index("candidate text")
    assert prompts[1].index("candidate text") < prompts[1].index("primary text")


@pytest.mark.parametrize("better, verdict", [("candidate", "win"), ("primary", "loss")])
async def test_a_consistent_preference_decides(better, verdict):
    async def prefers(prompt):
        a = prompt.split("Answer A:")[1].split("Answer B:")[0]
        return "Answer: A" if better in a else "b"

    assert (await Judge(prefers).compare("q", Side(text="primary"), Side(text="candidate")))[0] == verdict


async def test_without_a_judge_model_an_undecided_pair_is_a_tie():
    assert await Judge(None).compare("q", Side(text="x"), Side(text="y")) == ("tie", "undecided")


def test_wilson_interval():
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(20, 20)
    assert 0.83 < low < 0.84 and high == 1.0


def test_summary_counts_ties_half_or_whole():
    side = {"status": 200, "latency_ms": 10.0, "cost_usd": 0.001, "completion_tokens": 5}
    pairs = [
        {"intent": "refund", "verdict": v, "how": "judge", "primary": side, "candidate": {**side, "latency_ms": 30.0}}
        for v in ("win", "win", "tie", "loss")
    ]
    summary = summarise(pairs)
    assert summary["overall"]["win_rate"] == pytest.approx(2.5 / 4)
    assert summarise(pairs, ties_win=True)["overall"]["win_rate"] == pytest.approx(3 / 4)
    assert summary["by_intent"]["refund"]["n"] == 4
    assert summary["candidate"]["p95_ms"] == 30.0 and summary["primary"]["cost_per_request_usd"] == pytest.approx(0.001)
    assert quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.95) == 10


async def test_loop_lag_marks_a_busy_process():
    import asyncio
    import time

    from gateway.loop_lag import LoopLag

    lag = LoopLag(every_s=0.01, busy_ms=20)
    task = asyncio.create_task(lag.run())
    await asyncio.sleep(0.05)
    time.sleep(0.2)  # the loop is blocked: the ticker wakes ~200 ms late
    await asyncio.sleep(0.05)
    task.cancel()
    assert lag.busy and lag.lag_ms >= 20
