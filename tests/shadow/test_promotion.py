"""The promotion's gates on in-process state: no network, a fake canary and a fake mirror store."""

import time

import pytest

from gateway.config import build_config
from gateway.shadow.mirror import ShadowStore
from gateway.shadow.promotion import Promoter, p95_from_buckets
from gateway.shadow.registry import ModelRegistry


class FakeCanary:
    def __init__(self):
        self.percent = {"support": 0.0}

    async def set(self, alias, percent, reason=""):
        self.percent[alias] = percent


class FakeMirror:
    aliases = ["support"]

    def __init__(self):
        self.store = ShadowStore()

    def set_percent(self, alias, percent):
        pass


def config(**promotion):
    return build_config(
        {
            "auth": {"open": True},
            "deployments": {
                "light": {"base_url": "http://l", "model": "l"},
                "cand": {"base_url": "http://c", "model": "c"},
            },
            "models": {
                "support": {
                    "deployments": ["light"],
                    "canary": {"deployments": ["cand"]},
                    "shadow": {"deployment": "cand"},
                    "promotion": {"stages": [50, 100], "min_samples": 4, **promotion},
                }
            },
        }
    )


def side(latency=10.0):
    return {"status": 200, "latency_ms": latency, "cost_usd": 0.0}


async def promoter_with_wins(wins, **promotion):
    cfg = config(**promotion)
    mirror = FakeMirror()
    promoter = Promoter(cfg, FakeCanary(), mirror, ModelRegistry(cfg))
    await promoter.start("support", who="test")
    for _ in range(wins):
        await mirror.store.add_pair(
            "support", {"ts": time.time(), "verdict": "win", "primary": side(), "candidate": side()}, 100
        )
    return promoter


def test_p95_is_the_upper_edge_of_its_bucket():
    assert p95_from_buckets({10: 90, 250: 10}) == 250
    assert p95_from_buckets({10: 96, 250: 4}) == 10
    assert p95_from_buckets({}) is None


async def test_the_latency_gate_rolls_back_a_slow_canary():
    promoter = await promoter_with_wins(8)
    plan = await promoter.step("support")
    assert plan["stage_name"] == "50"
    for _ in range(20):
        promoter.observe("support", "stable", 200, "light", 0.02)
        promoter.observe("support", "canary", 200, "cand", 0.4)
    plan = await promoter.step("support")
    assert plan["status"] == "rolled_back" and plan["reason"].startswith("latency gate"), plan


async def test_a_canary_as_fast_as_stable_advances_and_fallbacks_count_as_canary_errors():
    promoter = await promoter_with_wins(8)
    await promoter.step("support")
    for _ in range(20):
        promoter.observe("support", "stable", 200, "light", 0.02)
        promoter.observe("support", "canary", 200, "cand", 0.02)
    assert (await promoter.step("support"))["stage_name"] == "100"
    for _ in range(10):
        promoter.observe("support", "canary", 200, "light", 0.02)  # served by stable: the canary failed
    plan = await promoter.step("support")
    assert plan["status"] == "rolled_back" and plan["reason"].startswith("health gate")


async def test_not_enough_samples_waits():
    promoter = await promoter_with_wins(2)
    plan = await promoter.step("support")
    assert plan["status"] == "running" and plan["waiting"] == "2/4 judged shadow pairs"


@pytest.mark.parametrize("field, value", [("stages", []), ("min_win_rate", 1.5)])
def test_bad_plans_are_refused_at_start(field, value):
    from gateway.config import ConfigError

    with pytest.raises(ConfigError):
        config(**{field: value})
