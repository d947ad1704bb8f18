"""Every dashboard panel and alert expression, evaluated by a real Prometheus scraping a real gateway under a
scripted mix of traffic, against what the clients saw.

The mix: English and French questions (misses, then exact and paraphrased repeats), streams, forced heavy
requests, a canary that fails until it is rolled back, a phase where one upstream answers 500 (retries,
fallbacks, 5xx, an open circuit), refused requests (bad key, unknown model, a key over its limit). The
clients count what they got: statuses, cache results, tiers, variants, tokens and cost (usage x pricing).

Two checks per panel query:
- as shipped (5 m windows, the dashboard's variables set to All): a range query over the run has data;
- with every `rate(x[5m])`/`increase(x[..])` replaced by the counter itself, i.e. totals since start: the
  figure is within 1 % of the clients' count (ratios, costs, tokens, hits, heavy and canary shares).
  Windowed rates extrapolate at the window's edges; totals are what the clients can check exactly.
Alert rules must load healthy; each alert expression without its threshold returns data (a typo'd metric
or label would return nothing); the canary rollback alert fires. Figures of one run: deploy/README.md.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from gateway.auth import hash_key
from gateway.mock_upstream import MockServerThread, MockSettings
from gateway.pricing import Pricing
from gateway.routing.canary import in_canary
from tests.conftest import TEST_KEY, base_config, delete_prefix, redis_url, wait_until

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
LIMITED_KEY = "sk-limited-0123456789"
VARIABLES = {"$model": ".*", "$intent": ".*", "$deployment": ".*", "$__rate_interval": "30s", "$__interval": "30s"}
PRICE_AS = {"light": "gpt-3.5-turbo", "heavy": "gpt-4o", "canary": "gpt-4o-mini", "plain": "gpt-3.5-turbo"}

EN = [
    "How do I get a refund?",
    "Where is my order?",
    "How do I reset my password?",
    "What are your opening hours?",
    "How can I change my delivery address?",
    "Which payment methods do you accept?",
]
FR = [
    "Comment obtenir un remboursement ?",
    "Où en est ma commande ?",
    "Comment réinitialiser mon mot de passe ?",
    "Quels sont vos horaires d'ouverture ?",
]
PARAPHRASES = ["How can I get my money back?", "I forgot my password, how do I reset it?"]
READER = "reader-2"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    if shutil.which("prometheus") is None:
        subprocess.run([str(ROOT / "scripts" / "ensure-prometheus.sh")], check=False, timeout=600)
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("prometheus is not installed and scripts/ensure-prometheus.sh could not install it")
    return path


class Prometheus:
    """A real Prometheus scraping one target every second, with the shipped alert rules."""

    def __init__(self, binary: str, target: str, workdir: Path) -> None:
        shutil.copy(DEPLOY / "alerts.yml", workdir / "alerts.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(workdir / "alerts.yml")],
            "scrape_configs": [{"job_name": "gateway", "static_configs": [{"targets": [target]}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = _free_port()  # Prometheus cannot report a port 0 it picked
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "prometheus.log", "w")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, path: str, **params) -> dict:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=20)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def instant(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def scalar(self, expr: str) -> float:
        result = self.instant(expr)
        assert len(result) == 1, f"{expr}: {result}"
        return float(result[0]["value"][1])

    def by(self, expr: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.instant(expr)}

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Truth:
    """What the clients saw."""

    def __init__(self, pricing: Pricing) -> None:
        self.pricing = pricing
        self.status: Counter = Counter()
        self.by_intent: Counter = Counter()  # served (2xx) requests per intent
        self.cost_by_intent: Counter = Counter()
        self.cache: Counter = Counter()
        self.cache_by_intent: dict[str, Counter] = {}
        self.tiers: Counter = Counter()  # support requests routed, by tier
        self.variants: Counter = Counter()
        self.canary_failed = 0
        self.tokens: Counter = Counter()
        self.cost = 0.0

    def answered(self, headers, usage, status: int = 200) -> None:
        self.status[status] += 1
        cache, intent = headers.get("x-gateway-cache"), headers.get("x-gateway-intent")
        self.by_intent[intent] += 1
        self.cache[cache] += 1
        self.cache_by_intent.setdefault(intent, Counter())[cache] += 1
        served_by = headers.get("x-gateway-served-by")
        if cache in ("miss", "bypass", "off") and headers.get("x-gateway-model-alias", "support") == "support":
            self.tiers[headers["x-gateway-tier"]] += 1
            if headers["x-gateway-tier"] == "light":
                variant = headers.get("x-gateway-variant", "stable")
                self.variants[variant] += 1
                self.canary_failed += variant == "canary" and served_by != "canary"
        if usage and served_by and not cache.startswith("hit-"):
            prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
            self.tokens["prompt"] += prompt
            self.tokens["completion"] += completion
            cost = self.pricing.cost(PRICE_AS[served_by], prompt, completion)
            self.cost += cost
            self.cost_by_intent[intent] += cost

    def refused(self, status: int) -> None:
        self.status[status] += 1


def _drive(gateway_url: str, truth: Truth, plain_mock, canary_mock, scraped=lambda: None) -> None:
    """`scraped()` between phases waits for a scrape: traffic spread over scrapes, as in production (a series
    born and finished between two scrapes has no rate)."""
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=TEST_KEY, max_retries=0, timeout=30)

    def ask(text: str, model: str = "support", stream: bool = False, headers: dict | None = None, **params) -> None:
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=model,
                messages=[{"role": "user", "content": text}],
                stream=stream,
                extra_headers=headers or {},
                **({"stream_options": {"include_usage": True}} if stream else {}),
                **params,
            )
        except openai.APIStatusError as exc:
            truth.refused(exc.status_code)
            return
        seen = {**raw.headers, "x-gateway-model-alias": model}  # the alias asked for: our own bookkeeping
        if stream:
            usage = None
            for chunk in raw.parse():
                if chunk.usage is not None:
                    usage = chunk.usage.model_dump()
        else:
            usage = raw.parse().usage.model_dump()
        truth.answered(seen, usage)

    # One user for the cached phases: a request without one takes a side of the 50% canary by its request id,
    # and the cache never serves one side's answer to the other (a paraphrase on the other side misses).
    # READER is on the stable side (test_the_reader_is_on_the_stable_side).
    for text in EN + FR:  # misses
        ask(text, temperature=0, user=READER)
    scraped()
    for text in EN[:4] + FR[:2]:  # exact hits
        ask(text, temperature=0, user=READER)
    for text in PARAPHRASES:  # semantic hits (or misses: the clients count what they got)
        ask(text, temperature=0, user=READER)
    scraped()
    for i, text in enumerate(EN[:3] + FR[:3]):  # streams, not cached: a per-run nonce
        ask(f"{text} ({i})", stream=True, headers={"x-gateway-cache": "bypass"})
    scraped()
    for i in range(6):  # hard prompts, forced heavy
        ask(
            f"Compare the refund policies of these {i + 3} plans and draft a migration plan.",
            headers={"x-gateway-tier": "heavy", "x-gateway-cache": "bypass"},
        )
    scraped()
    for i in range(12):  # canary at 50 %, failing: falls back to stable, then rolled back
        ask("Where is my parcel?", user=f"user-{i}", headers={"x-gateway-cache": "bypass"})
    scraped()
    plain_mock.configure(fail_rate_500=1.0)  # upstream 500 phase: retries, open circuit, 5xx to clients
    for i in range(6):
        ask(f"Say hello number {i}", model="gpt-3.5-turbo", headers={"x-gateway-cache": "bypass"})
    plain_mock.configure(fail_rate_500=0.0)
    scraped()
    for _ in range(2):  # refused: bad key, unknown model
        try:
            openai.OpenAI(
                base_url=gateway_url + "/v1", api_key="sk-wrong-0123456789", max_retries=0
            ).chat.completions.create(model="support", messages=[{"role": "user", "content": "hi"}])
        except openai.AuthenticationError as exc:
            truth.refused(exc.status_code)
    ask("hello", model="no-such-model")
    limited = openai.OpenAI(base_url=gateway_url + "/v1", api_key=LIMITED_KEY, max_retries=0)
    for i in range(5):  # rpm 3: the last two refused
        try:
            raw = limited.chat.completions.with_raw_response.create(
                model="support",
                messages=[{"role": "user", "content": f"Where is order {i}?"}],
                extra_headers={"x-gateway-cache": "bypass"},
            )
            truth.answered({**raw.headers, "x-gateway-model-alias": "support"}, raw.parse().usage.model_dump())
        except openai.RateLimitError as exc:
            truth.refused(exc.status_code)


def _totals(expr: str) -> str:
    """The panel's query over the whole run: rate(x[w]) / increase(x[w]) become x itself (totals since start)."""
    return re.sub(r"(?:rate|increase)\((\w+(?:\{[^}]*\})?)\[[^\]]+\]\)", r"\1", expr)


def _substitute(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    return expr


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "gateway.json").read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"] + " / " + target.get("legendFormat", ""), _substitute(target["expr"])))
    variables = [
        (f"variable ${v['name']}", _substitute(v["query"]["query"] if isinstance(v["query"], dict) else v["query"]))
        for v in dashboard["templating"]["list"]
    ]
    return out + variables


def _close(got: float, want: float, rel: float = 0.01) -> bool:
    return math.isclose(got, want, rel_tol=rel, abs_tol=1e-9)


@pytest.fixture
def plain_mock():
    with MockServerThread(MockSettings(served_model="plain-model")) as mock:
        yield mock


@pytest.fixture
def canary_mock():
    with MockServerThread(MockSettings(served_model="canary-model", fail_rate_500=1.0)) as mock:
        yield mock


def test_the_reader_is_on_the_stable_side():
    assert not in_canary(READER, 50, salt="support")


def test_every_panel_and_alert_against_a_real_prometheus(
    prometheus_binary, start_gateway, light_mock, heavy_mock, plain_mock, canary_mock, tmp_path
):
    prefix = f"gwtest:{uuid.uuid4().hex}:"
    timeout = {"connect": 1, "read": 5}
    config = base_config(
        light_mock.url,
        heavy_mock.url,
        auth={
            "keys": [
                {"name": "test", "sha256": hash_key(TEST_KEY), "allow_force_tier": True},
                {"name": "limited", "sha256": hash_key(LIMITED_KEY), "rpm": 3},
            ]
        },
        redis={"url": redis_url(), "prefix": prefix},
        deployments={
            "light": {
                "base_url": light_mock.url,
                "model": "light-model",
                "price_as": PRICE_AS["light"],
                "timeout": timeout,
                "rpm": 10_000,
                "tpm": 10_000_000,
            },
            "heavy": {
                "base_url": heavy_mock.url,
                "model": "heavy-model",
                "price_as": PRICE_AS["heavy"],
                "timeout": timeout,
            },
            "canary": {
                "base_url": canary_mock.url,
                "model": "canary-model",
                "price_as": PRICE_AS["canary"],
                "timeout": timeout,
            },
            "plain": {
                "base_url": plain_mock.url,
                "model": "plain-model",
                "price_as": PRICE_AS["plain"],
                "timeout": timeout,
            },
        },
        models={
            "support": {
                "deployments": ["light"],
                "heavy": ["heavy"],
                "difficulty_threshold": 0.99,
                "canary": {"deployments": ["canary"], "percent": 50, "rollback_window": 5, "rollback_error_rate": 0.5},
            },
            "gpt-3.5-turbo": {"deployments": ["plain"]},
        },
        resilience={"breaker": {"failures": 3, "window_s": 30, "cooldown_s": 30}},
        cache={"redis_timeout_ms": 500},  # a loaded test machine: the panels need their hits
    )
    gateway = start_gateway(config)
    prometheus = Prometheus(prometheus_binary, f"127.0.0.1:{gateway.port}", tmp_path)
    try:
        assert wait_until(prometheus.ready, timeout=30), (tmp_path / "prometheus.log").read_text()
        # The gateway is scraped (its primed zeros seen) before any traffic, as a deployed one always is.
        assert wait_until(lambda: prometheus.instant('up{job="gateway"} == 1'), timeout=30)
        truth = Truth(Pricing(config.pricing))
        started = time.time()

        def scraped() -> None:
            after = time.time()
            assert wait_until(
                lambda: float(prometheus.instant('timestamp(up{job="gateway"})')[0]["value"][1]) > after, timeout=30
            )

        _drive(gateway.url, truth, plain_mock, canary_mock, scraped)
        sent = sum(truth.status.values())
        # Scraped after the last request, and the gauges' timer (5 s) has run at least once since.
        assert wait_until(
            lambda: (
                (prometheus.instant("sum(gateway_requests_total)") or [{"value": [0, "0"]}])[0]["value"][1] == str(sent)
                and prometheus.instant("increase(gateway_redis_ping_seconds_count[1m]) > 0")
            ),
            timeout=30,
        )
        time.sleep(2)  # two more scrapes: every series has at least two samples for rate()
        ended = time.time()
        _check_panels(prometheus, started, ended)
        figures = _check_figures(prometheus, truth)
        _check_alerts(prometheus)
        (tmp_path / "figures.json").write_text(json.dumps(figures, indent=1))
        print("panel test figures:", json.dumps(figures))
    finally:
        prometheus.close()
        delete_prefix(prefix)


# Panels this mix does not reach (its difficulty scores put no request in a cascade's uncertain band).
NOT_EXERCISED = {
    "Cascade: kept light or escalated",
    "Cascade: time added to escalated requests (p95)",
    "Cascade: cost of light attempts that escalated",
}


def _check_panels(prometheus: Prometheus, started: float, ended: float) -> None:
    empty = []
    for where, expr in _panel_queries():
        if where.split(" / ")[0] in NOT_EXERCISED:
            continue
        if expr.startswith("label_values("):
            match = re.fullmatch(r"label_values\((?:(.+), )?(\w+)\)", expr)
            values = prometheus.api(f"label/{match.group(2)}/values", **{"match[]": match.group(1)})
            if not values:
                empty.append(f"{where}: {expr}")
            continue
        result = prometheus.api("query_range", query=expr, start=started, end=ended, step=1)["result"]
        if not any(not math.isnan(float(v)) for series in result for _, v in series["values"]):
            empty.append(f"{where}: {expr}")
    assert not empty, "panels with no data:\n" + "\n".join(empty)


def _panel(title: str, legend: str | None = None) -> str:
    for where, expr in _panel_queries():
        panel, _, target_legend = where.partition(" / ")
        if panel == title and (legend is None or target_legend == legend):
            return _totals(expr)
    raise AssertionError(f"no panel {title!r}")


def _check_figures(prometheus: Prometheus, truth: Truth) -> dict:
    sent = sum(truth.status.values())
    hits = sum(n for cache, n in truth.cache.items() if cache.startswith("hit-") or cache == "coalesced")
    looked = hits + truth.cache["miss"]
    five = sum(n for status, n in truth.status.items() if status >= 500)
    want = {
        "requests": sent,
        "5xx ratio": five / sent,
        "cache hit rate": hits / looked,
        "cost USD": truth.cost,
        "heavy share (support)": truth.tiers["heavy"] / sum(truth.tiers.values()),
        "canary requests": truth.variants["canary"],
        "stable requests": truth.variants["stable"],
        "canary failure ratio": truth.canary_failed / truth.variants["canary"],
        "prompt tokens": truth.tokens["prompt"],
        "completion tokens": truth.tokens["completion"],
        "canary rollbacks": 1,
    }
    got = {
        "requests": prometheus.scalar(_panel("Requests/s")),
        "5xx ratio": prometheus.scalar(_panel("5xx ratio")),
        "cache hit rate": prometheus.scalar(_panel("Cache hit rate")),
        "cost USD": prometheus.scalar(_panel("Cost per hour")) / 3600,
        "heavy share (support)": prometheus.by(_panel("Heavy share by model"), "model")["support"],
        "canary requests": prometheus.by(_panel("Requests/s: canary vs stable"), "variant")["canary"],
        "stable requests": prometheus.by(_panel("Requests/s: canary vs stable"), "variant")["stable"],
        "canary failure ratio": prometheus.by(_panel("Failure ratio: canary vs stable"), "variant")["canary"],
        "prompt tokens": prometheus.by(_panel("Tokens/s by kind"), "kind")["prompt"],
        "completion tokens": prometheus.by(_panel("Tokens/s by kind"), "kind")["completion"],
        "canary rollbacks": prometheus.by(_panel("Canary rollbacks"), "model")["support"],
    }
    by_status = prometheus.by(_panel("Request rate by status"), "status")
    assert {int(s): n for s, n in by_status.items()} == dict(truth.status)
    cost_per_request = prometheus.by(_panel("Cost per request by intent"), "intent")
    hit_rate = prometheus.by(_panel("Cache hit rate by intent"), "intent")
    for intent, served in truth.by_intent.items():
        assert _close(cost_per_request.get(intent, 0.0), truth.cost_by_intent[intent] / served), (
            intent
        )  # no cost series: only hits
        seen = truth.cache_by_intent[intent]
        intent_hits = sum(n for cache, n in seen.items() if cache.startswith("hit-") or cache == "coalesced")
        if intent_hits + seen["miss"]:
            assert _close(hit_rate[intent], intent_hits / (intent_hits + seen["miss"])), intent
    off = {name: (got[name], value) for name, value in want.items() if not _close(got[name], value)}
    assert not off, f"panel figures off by more than 1 % (got, clients saw): {off}"
    assert truth.status[500] or truth.status[502] or truth.status[503], "the 500 phase produced no 5xx"
    assert hits and truth.tiers["heavy"] and truth.canary_failed, "the mix did not reach every panel"
    return {name: {"panel": round(got[name], 8), "clients": round(value, 8)} for name, value in want.items()}


_THRESHOLD = re.compile(r"\s*(?:>|<|==|>=|<=)\s*[0-9.]+(?=\s*(?:$|\n|and\b|or\b|\)))")


def _check_alerts(prometheus: Prometheus) -> None:
    groups = prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules and all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]
    silent = []
    for rule in rules:
        expr = _THRESHOLD.sub("", rule["query"])
        if rule["name"] in ("GatewayAbsent", "GatewayCacheHitRateCollapse"):
            continue  # absent() of a live target is empty by design; the collapse compares with yesterday
        if not prometheus.instant(expr):
            silent.append(f"{rule['name']}: {expr}")
    assert not silent, "alert expressions that return nothing (wrong metric or label?):\n" + "\n".join(silent)
    assert not prometheus.instant('absent(up{job="gateway"} == 1)'), "GatewayAbsent would fire on a live target"
    assert wait_until(
        lambda: any(
            a["labels"]["alertname"] == "GatewayCanaryRolledBack" and a["state"] == "firing"
            for a in prometheus.api("alerts")["alerts"]
        ),
        timeout=15,
    )
