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
    for text in ("How do I get a refund?", "How do I get a refund?",
                 "Prove that the square root of 2 is irrational, step by step, with a rigorous argument."):
        client.chat.completions.create(model="support", messages=[{"role": "user", "content": text}])
    assert cli_main(["report", "--url", gateway.url]) == 0
    out = capsys.readouterr().out
    assert "requests 3" in out
    refund = next(line for line in out.splitlines() if line.startswith("refund "))
    assert refund.split()[1] == "2" and "50%" in refund  # one miss, one exact hit
    assert "heavy share 50.0% of 2 routed" in out
    assert "latency" in out and "p95" in out
