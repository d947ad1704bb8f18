"""`gateway report` reads a running gateway's /metrics: quantiles, cost per intent, hit rate, heavy share."""

from gateway.cli import main as cli_main
from gateway.report import quantile, samples

EXPOSITION = """# TYPE gateway_request_duration_seconds histogram
gateway_request_duration_seconds_bucket{model="m",intent="a",stream="false",le="0.1"} 50.0
gateway_request_duration_seconds_bucket{model="m",intent="a",stream="false",le="0.5"} 90.0
gateway_request_duration_seconds_bucket{model="m",intent="a",stream="false",le="+Inf"} 100.0
gateway_request_duration_seconds_count{model="m",intent="a",stream="false"} 100.0
gateway_request_duration_seconds_sum{model="m",intent="a",stream="false"} 20.0
"""


def test_quantiles_interpolate_inside_buckets_like_prometheus():
    data = samples(EXPOSITION)
    assert quantile(data, "gateway_request_duration_seconds", 0.5) == 0.1
    assert abs(quantile(data, "gateway_request_duration_seconds", 0.7) - 0.3) < 1e-9
    assert quantile(data, "gateway_request_duration_seconds", 0.95) == 0.5  # +Inf: the highest finite bound
    assert quantile(data, "gateway_time_to_first_token_seconds", 0.5) is None


def test_report_of_a_running_gateway(gateway, client, capsys):
    for text in (
        "How do I get a refund?",
        "How do I get a refund?",
        "Prove that the square root of 2 is irrational, step by step, with a rigorous argument.",
    ):
        client.chat.completions.create(model="support", messages=[{"role": "user", "content": text}])
    assert cli_main(["report", "--url", gateway.url]) == 0
    out = capsys.readouterr().out
    assert "requests 3" in out
    refund = next(line for line in out.splitlines() if line.startswith("refund "))
    assert refund.split()[1] == "2" and "50%" in refund  # one miss, one exact hit
    assert "heavy share 50.0% of 2 routed" in out
    assert "latency" in out and "p95" in out


def test_latency_lines_keep_streams_hits_and_upstream_answers_apart():
    from gateway.metrics import Metrics
    from gateway.report import render

    metrics = Metrics()
    for _ in range(10):
        metrics.request_duration.labels("support", "refund", "false", "miss").observe(0.8)
        metrics.request_duration.labels("support", "refund", "true", "miss").observe(8.0)
        metrics.request_duration.labels("support", "refund", "false", "hit-exact").observe(0.003)
        metrics.overhead.labels("support", "miss").observe(0.636)
    metrics.canary_requests.labels("support", "stable", "ok").inc(9)
    metrics.canary_requests.labels("support", "canary", "failed").inc(3)
    lines = {line[:20].strip(): line for line in render(metrics.exposition().decode()).splitlines()}
    assert "p95   975.0 ms" in lines["latency"]
    assert "9750.0 ms" in lines["latency (streams)"] and "4.9 ms" in lines["latency (cache hits)"]
    assert "975.0 ms" in lines["gateway overhead"]  # the old buckets stopped at 100 ms
    canary = next(line for line in lines.values() if line.startswith("canary support"))
    assert "stable 9 (0.0% failed" in canary and "canary 3 (100.0% failed" in canary
