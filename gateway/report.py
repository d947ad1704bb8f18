"""`gateway report`: what a running gateway has served, read from its /metrics (no Prometheus needed).

Latency quantiles are estimated from the histogram buckets the way Prometheus' histogram_quantile does
(linear inside the bucket); counts and costs are totals since the gateway started.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def total(data, name: str, **match: str) -> float:
    return sum(value for labels, value in data.get(name, ()) if all(labels.get(k) == v for k, v in match.items()))


def by(data, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for labels, value in data.get(name, ()):
        out[labels.get(label, "")] += value
    return out


def quantile(data, histogram: str, q: float, keep=lambda labels: True) -> float | None:
    """histogram_quantile over the series of a histogram that `keep` selects, summed by bucket."""
    buckets: dict[float, float] = defaultdict(float)
    for labels, value in data.get(histogram + "_bucket", ()):
        if keep(labels):
            buckets[float(labels["le"])] += value
    if not buckets:
        return None
    bounds = sorted(buckets)
    count = buckets[bounds[-1]]
    if count == 0:
        return None
    rank, lower, below = q * count, 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            inside = buckets[bound] - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, buckets[bound]
    return lower


def render(text: str) -> str:
    data = samples(text)
    lines = []
    requests = total(data, "gateway_requests_total")
    errors = sum(v for labels, v in data.get("gateway_requests_total", ()) if labels.get("status", "")[:1] in "45")
    lines.append(f"requests {requests:.0f}  (4xx/5xx {errors:.0f})")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.1f} ms"

    def upstream_served(stream: str):  # the dashboard's selections: hits and refusals apart
        return lambda labels: labels.get("stream") == stream and labels.get("cache") in ("miss", "bypass", "off")

    for title, name, keep in (
        ("latency", "gateway_request_duration_seconds", upstream_served("false")),
        ("latency (streams)", "gateway_request_duration_seconds", upstream_served("true")),
        (
            "latency (cache hits)",
            "gateway_request_duration_seconds",
            lambda labels: labels.get("cache", "").startswith("hit-"),
        ),
        ("time to first token", "gateway_time_to_first_token_seconds", lambda labels: True),
        ("gateway overhead", "gateway_overhead_seconds", lambda labels: not labels.get("cache", "").startswith("hit-")),
    ):
        lines.append(
            f"{title:20} p50 {ms(quantile(data, name, 0.5, keep)):>10}"
            f"   p95 {ms(quantile(data, name, 0.95, keep)):>10}"
            f"   p99 {ms(quantile(data, name, 0.99, keep)):>10}"
        )

    per_intent = by(data, "gateway_requests_total", "intent")
    served: dict[str, float] = defaultdict(float)
    cost = by(data, "gateway_cost_usd_total", "intent")
    saved = by(data, "gateway_cost_saved_usd_total", "intent")
    hits: dict[str, float] = defaultdict(float)
    looked: dict[str, float] = defaultdict(float)
    for labels, value in data.get("gateway_requests_total", ()):
        if labels.get("status", "").startswith("2"):
            served[labels["intent"]] += value
        if labels.get("cache") not in ("off", "bypass"):  # the dashboard's hit rate: coalesced answers are hits
            looked[labels["intent"]] += value
            if labels.get("cache", "").startswith("hit-") or labels.get("cache") == "coalesced":
                hits[labels["intent"]] += value
    lines.append("")
    lines.append(
        f"{'intent':20} {'requests':>9} {'cost USD':>11} {'USD/request':>12} {'hit rate':>9} {'saved USD':>10}"
    )
    for intent in sorted(per_intent, key=lambda i: -per_intent[i]):
        n, ok = per_intent[intent], served[intent]  # cost per served request (cache hits included), as the dashboard
        rate = f"{hits[intent] / looked[intent]:.0%}" if looked[intent] else "-"
        lines.append(
            f"{intent:20} {n:9.0f} {cost[intent]:11.6f} {cost[intent] / ok if ok else 0:12.8f} "
            f"{rate:>9} {saved[intent]:10.6f}"
        )

    tiers = by(data, "gateway_route_decisions_total", "tier")
    decided = sum(tiers.values())
    lines.append("")
    lines.append(
        f"heavy share {tiers.get('heavy', 0) / decided:.1%} of {decided:.0f} routed"
        if decided
        else "heavy share - (no routing decisions)"
    )
    retries = by(data, "gateway_retries_total", "reason")
    lines.append(
        f"retries {sum(retries.values()):.0f}"
        + (f" ({', '.join(f'{k} {v:.0f}' for k, v in sorted(retries.items()))})" if retries else "")
        + f"   fallbacks {total(data, 'gateway_fallbacks_total'):.0f}"
        + f"   rate limited {total(data, 'gateway_rate_limited_total'):.0f}"
    )
    open_circuits = [labels["deployment"] for labels, v in data.get("gateway_circuit_open", ()) if v]
    lines.append(f"open circuits: {', '.join(open_circuits) if open_circuits else 'none'}")
    for model in sorted({labels["model"] for labels, _ in data.get("gateway_canary_requests_total", ())}):
        parts = []
        for variant in ("stable", "canary"):
            n = total(data, "gateway_canary_requests_total", model=model, variant=variant)
            failed = total(data, "gateway_canary_requests_total", model=model, variant=variant, outcome="failed")
            p95 = quantile(
                data,
                "gateway_variant_duration_seconds",
                0.95,
                lambda labels, model=model, variant=variant: (
                    labels.get("model") == model and labels.get("variant") == variant
                ),
            )
            parts.append(f"{variant} {n:.0f} ({failed / n if n else 0:.1%} failed, p95 {ms(p95)})")
        rollbacks = total(data, "gateway_canary_rollbacks_total", model=model)
        lines.append(f"canary {model}: {'  vs  '.join(parts)}   rollbacks {rollbacks:.0f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import httpx

    try:
        response = httpx.get(args.url.rstrip("/") + "/metrics", timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        print(f"could not read {args.url}/metrics: {exc}", file=sys.stderr)
        return 1
    print(render(response.text))
    return 0


def register_cli(subparsers) -> None:
    report = subparsers.add_parser(
        "report", help="latency, cost per intent, hit rate, heavy share of a running gateway"
    )
    report.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway (its /metrics is read)")
    report.set_defaults(func=run)
