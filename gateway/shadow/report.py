"""Side-by-side figures from kept shadow pairs: win / tie / loss with a 95% confidence interval, per intent,
and each side's p95 latency, error rate and cost per request.

The win rate counts a tie as half a win (or as a whole one when ties are to promote); its interval is
Wilson's score interval, which stays inside [0, 1] and behaves on small samples.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

Z95 = 1.959964


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - spread), min(1.0, centre + spread)


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def win_rate(wins: int, ties: int, losses: int, ties_win: bool = False) -> dict[str, Any]:
    n = wins + ties + losses
    score = wins + (ties if ties_win else ties / 2)
    low, high = wilson(score, n)
    return {
        "n": n,
        "win": wins,
        "tie": ties,
        "loss": losses,
        "win_rate": score / n if n else None,
        "low": low,
        "high": high,
    }


def _side(pairs: list[dict[str, Any]], side: str) -> dict[str, Any]:
    answers = [p[side] for p in pairs]
    latencies = [a["latency_ms"] for a in answers if a.get("status") == 200]
    errors = sum(1 for a in answers if a.get("status") != 200)
    cost = sum(a.get("cost_usd", 0.0) for a in answers)
    n = len(answers)
    return {
        "requests": n,
        "error_rate": errors / n if n else None,
        "p95_ms": quantile(latencies, 0.95),
        "cost_per_request_usd": cost / n if n else None,
        "completion_tokens": sum(a.get("completion_tokens", 0) for a in answers),
    }


def summarise(pairs: Iterable[dict[str, Any]], ties_win: bool = False) -> dict[str, Any]:
    pairs = list(pairs)
    counts: dict[str, dict[str, int]] = {}
    for pair in pairs:
        tally = counts.setdefault(pair.get("intent", "other"), {"win": 0, "tie": 0, "loss": 0})
        tally[pair["verdict"]] += 1
    total = {v: sum(t[v] for t in counts.values()) for v in ("win", "tie", "loss")}
    return {
        "pairs": len(pairs),
        "overall": win_rate(total["win"], total["tie"], total["loss"], ties_win),
        "by_intent": {
            intent: win_rate(t["win"], t["tie"], t["loss"], ties_win) for intent, t in sorted(counts.items())
        },
        "primary": _side(pairs, "primary"),
        "candidate": _side(pairs, "candidate"),
        "judged_by": {how: sum(1 for p in pairs if p.get("how") == how) for how in ("signals", "judge", "undecided")},
    }


def render(alias: str, summary: dict[str, Any]) -> str:
    """The text of `gateway shadow report`."""
    lines = [f"{alias}: {summary['pairs']} side-by-side pairs"]

    def row(name: str, s: dict[str, Any]) -> str:
        rate = "   -" if s["win_rate"] is None else f"{s['win_rate']:.3f}"
        return (
            f"  {name:<18} n={s['n']:<5} win {s['win']:<4} tie {s['tie']:<4} loss {s['loss']:<4} "
            f"win rate {rate} [{s['low']:.3f}, {s['high']:.3f}]"
        )

    lines.append(row("all intents", summary["overall"]))
    lines.extend(row(intent, s) for intent, s in summary["by_intent"].items())
    for side in ("primary", "candidate"):
        s = summary[side]
        p95 = "-" if s["p95_ms"] is None else f"{s['p95_ms']:.0f} ms"
        err = "-" if s["error_rate"] is None else f"{s['error_rate']:.3f}"
        cost = "-" if s["cost_per_request_usd"] is None else f"${s['cost_per_request_usd']:.6f}"
        lines.append(f"  {side:<10} p95 {p95:<9} error rate {err:<6} cost/request {cost}")
    return "\n".join(lines)
