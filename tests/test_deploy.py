"""Deployment and observability files: they must agree with the gateway that they deploy and observe.

- every metric and label named in the Grafana dashboard and the alert rules is one the gateway exports
  (a real gateway's /metrics after real requests, and the definitions in gateway.metrics.Metrics), and the
  label values the queries rely on (status codes, cache results, tiers) are the ones it records;
- the dashboard is valid JSON, every panel has the provisioned datasource and a query, panels do not overlap;
- every YAML parses; the k8s manifests fit together (labels, names, ports, probes, grace periods) and the
  ConfigMap's gateway.yaml validates with its own intents and pricing; the compose services reference files
  that exist, commands the CLI accepts, and the gateway config resolves to the mock upstreams;
- the Dockerfile installs what .dockerignore lets through, runs as non-root, and its CMD is a real
  `gateway serve` command line;
- the multiprocess metrics directory is prepared by `gateway serve`, and metrics of several processes add up.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from gateway import cli
from gateway.config import build_config, load_config
from gateway.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gateway.json"
ALERTS = DEPLOY / "alerts.yml"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"


# ---------------------------------------------------------------------------------------------- helpers


def _yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # panels of collapsed rows
    return out


def _dashboard_queries() -> list[tuple[str, str, str]]:
    """(where, expr, legendFormat) for every query of the dashboard, template variables included."""
    dashboard = _dashboard()
    queries = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r}", target["expr"], target.get("legendFormat", "")))
    for var in dashboard["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        queries.append((f"variable ${var['name']}", query, ""))
    return queries


def _alert_rules() -> list[dict]:
    return [rule for group in _yaml(ALERTS)["groups"] for rule in group["rules"]]


def _all_queries() -> list[tuple[str, str, str]]:
    return _dashboard_queries() + [(f"alert {r['alert']}", r["expr"], "") for r in _alert_rules()]


def _grafana_to_promql(expr: str) -> str:
    """Grafana's variables, as Prometheus would receive them."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$model", ".*")
        .replace("$intent", ".*")
    )


def _defined_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Exported sample name -> (type, label names), from the definitions in gateway.metrics."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for metric in Metrics().collectors():
        if isinstance(metric, Counter):
            out[metric._name + "_total"] = ("counter", metric._labelnames)
        elif isinstance(metric, Histogram):
            out[metric._name + "_bucket"] = ("histogram", metric._labelnames + ("le",))
            out[metric._name + "_sum"] = ("histogram", metric._labelnames)
            out[metric._name + "_count"] = ("histogram", metric._labelnames)
        elif isinstance(metric, Gauge):
            out[metric._name] = ("gauge", metric._labelnames)
    return out


_METRIC = re.compile(r"\b(gateway_[a-zA-Z0-9_]+)\b")
_SELECTOR = re.compile(r"\b(gateway_[a-zA-Z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"")
_GROUPING = re.compile(r"\b(by|without)\s*\(([^)]*)\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*(gateway_[a-zA-Z0-9_]+)[^,]*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")
_LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def _balanced_group(expr: str, start: int) -> str:
    """The text of the parenthesised group that opens at expr[start]."""
    depth = 0
    for i in range(start, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        if depth == 0:
            return expr[start : i + 1]
    raise AssertionError(f"unbalanced parentheses in {expr!r}")


def _preceding_group(expr: str, end: int) -> str:
    """The text of the parenthesised group that closes just before expr[end] (postfix `sum(...) by (x)`)."""
    i = end - 1
    while i >= 0 and expr[i].isspace():
        i -= 1
    depth = 0
    for j in range(i, -1, -1):
        depth += {")": 1, "(": -1}.get(expr[j], 0)
        if depth == 0:
            return expr[j : i + 1]
    raise AssertionError(f"unbalanced parentheses in {expr!r}")


def _grouping_clauses(expr: str) -> list[tuple[list[str], str]]:
    """(labels of a `by (...)`, the expression it aggregates) for each `by` clause."""
    out = []
    for match in _GROUPING.finditer(expr):
        if match.group(1) != "by":
            continue
        labels = [label.strip() for label in match.group(2).split(",") if label.strip()]
        rest = expr[match.end() :].lstrip()
        if rest.startswith("("):
            argument = _balanced_group(expr, len(expr) - len(rest))
        else:
            argument = _preceding_group(expr, match.start())
        out.append((labels, argument))
    return out


def _parse_exposition(text: str) -> tuple[set[str], dict[str, list[dict[str, str]]]]:
    """(every exported sample name, sample name -> label sets) of a Prometheus text exposition."""
    names: set[str] = set()
    samples: dict[str, list[dict[str, str]]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            base = family.removesuffix("_total")
            derived = {
                "counter": [base + "_total"],
                "histogram": [family + s for s in ("_bucket", "_sum", "_count")],
                "gauge": [family],
            }.get(kind, [family])
            names.update(derived)
        elif line and not line.startswith("#"):
            match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
            assert match, f"not an exposition line: {line!r}"
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
            names.add(match.group(1))
            samples.setdefault(match.group(1), []).append(labels)
    return names, samples


# --------------------------------------------------------------------------- metric names versus the gateway


@pytest.fixture
def exported(gateway, client) -> tuple[set[str], dict[str, list[dict[str, str]]]]:
    """/metrics of a real gateway after one plain and one streamed request."""
    client.chat.completions.create(model="support", messages=[{"role": "user", "content": "Where is my refund?"}])
    stream = client.chat.completions.create(
        model="support",
        stream=True,  # another question: no cache hit
        messages=[{"role": "user", "content": "How do I reset my password?"}],
    )
    for _ in stream:
        pass
    response = httpx.get(gateway.url + "/metrics", timeout=10)
    assert response.status_code == 200
    return _parse_exposition(response.text)


def test_queries_name_only_metrics_the_gateway_exports(exported):
    names, _ = exported
    defined = _defined_metrics()
    missing = []
    for where, expr, _ in _all_queries():
        for name in _METRIC.findall(expr):
            if name not in names or name not in defined:
                missing.append(f"{where}: {name} (exported: {name in names}, in Metrics: {name in defined})")
    assert not missing, "metrics the gateway does not export:\n" + "\n".join(missing)


def test_one_request_produces_the_core_series(exported):
    """The headline panels (rate, latency, overhead, TTFT, tokens, cost) have data after one request."""
    _, samples = exported
    for name in (
        "gateway_requests_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_overhead_seconds_bucket",
        "gateway_upstream_duration_seconds_bucket",
        "gateway_time_to_first_token_seconds_bucket",
        "gateway_tokens_total",
        "gateway_cost_usd_total",
        "gateway_route_decisions_total",
    ):
        assert samples.get(name), f"no {name} sample after two requests"


def test_label_values_the_queries_rely_on(exported):
    """`status=~"5.."`, `cache=~"hit-.*"`/`cache!="off"`, `tier="heavy"` and `kind` only work on these values."""
    _, samples = exported
    for labels in samples["gateway_requests_total"]:
        assert re.fullmatch(r"[1-5]\d\d", labels["status"]), labels
        assert labels["cache"] in {"hit-exact", "hit-semantic", "miss", "bypass", "off", "coalesced"}, labels
        assert labels["tier"] in {"light", "heavy"}, labels
    assert {labels["kind"] for labels in samples["gateway_tokens_total"]} == {"prompt", "completion"}
    assert any(labels["status"] == "200" for labels in samples["gateway_requests_total"])


TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series


def test_queries_use_only_labels_the_metrics_have():
    defined = _defined_metrics()
    problems = []
    for where, expr, legend in _all_queries():
        metrics = [name for name in _METRIC.findall(expr) if name in defined]
        for name, matchers in _SELECTOR.findall(expr):
            for label, _, _ in _MATCHER.findall(matchers):
                if name in defined and label not in defined[name][1]:
                    problems.append(f"{where}: {name} has no label {label!r}")
        for labels, argument in _grouping_clauses(expr):
            for name in _METRIC.findall(argument):
                for label in labels:
                    if name in defined and label not in defined[name][1] and label not in TARGET_LABELS:
                        problems.append(f"{where}: `by ({', '.join(labels)})` over {name}, which has no {label!r}")
        for name, label in _LABEL_VALUES.findall(expr):
            if name in defined and label not in defined[name][1]:
                problems.append(f"{where}: label_values of {name}, which has no {label!r}")
        known = {label for name in metrics for label in defined[name][1]} | TARGET_LABELS
        for label in _LEGEND_LABEL.findall(legend):
            if label not in known:
                problems.append(f"{where}: legend {{{{{label}}}}} is no label of {sorted(set(metrics))}")
    assert not problems, "\n".join(problems)


def test_queries_are_valid_promql():
    try:
        import promql_parser
    except ImportError:  # not a project dependency: fall back to a bracket check
        promql_parser = None
    for where, expr, _ in _all_queries():
        if expr.startswith("label_values("):
            continue
        promql = _grafana_to_promql(expr)
        stack = []
        for char in promql:
            if char in "([{":
                stack.append(char)
            elif char in ")]}":
                assert stack and stack.pop() + char in ("()", "[]", "{}"), f"{where}: unbalanced {expr!r}"
        assert not stack, f"{where}: unbalanced {expr!r}"
        for duration in re.findall(r"\[([^\]]+)\]", promql):
            assert re.fullmatch(r"(\d+[smhdwy])+(:(\d+[smhdwy])*)?", duration), f"{where}: bad range [{duration}]"
        if promql_parser is not None:
            promql_parser.parse(promql)


def test_every_metric_is_on_the_dashboard():
    """A metric nobody can see is a metric nobody maintains: each one has a panel (or says why not)."""
    used = {name for _, expr, _ in _dashboard_queries() for name in _METRIC.findall(expr)}
    families = {
        name.removesuffix(suffix)
        for name in _defined_metrics()
        for suffix in ("_total", "_bucket", "_sum", "_count")
        if name.endswith(suffix)
    } | {name for name, (kind, _) in _defined_metrics().items() if kind == "gauge"}
    unseen = sorted(
        family for family in families if not any(name == family or name.startswith(family + "_") for name in used)
    )
    assert not unseen, f"metrics with no dashboard panel: {unseen}"


def test_gauges_declare_how_workers_aggregate():
    """In multiprocess mode a gauge without a mode is exported once per worker pid."""
    for metric in Metrics().collectors():
        if isinstance(metric, Gauge):
            assert metric._multiprocess_mode != "all", f"{metric._name}: set multiprocess_mode"


# ------------------------------------------------------------------------------------------- the dashboard


def test_dashboard_panels_have_datasource_and_targets():
    dashboard = _dashboard()
    datasources = _yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")["datasources"]
    uids = {ds["uid"] for ds in datasources if ds["type"] == "prometheus"}
    assert dashboard["uid"] and dashboard["title"] and 36 <= dashboard["schemaVersion"] <= 41
    panels = [p for p in _panels(dashboard) if p["type"] != "row"]
    assert len(panels) >= 15
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat", "heatmap", "bargauge", "gauge", "table", "state-timeline"}
        assert panel.get("title"), panel
        assert panel.get("datasource", {}).get("uid") in uids, f"{panel['title']}: datasource not provisioned"
        assert panel.get("targets"), f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{panel['title']}: empty query"
            assert target.get("refId"), panel["title"]
            assert target.get("datasource", panel["datasource"])["uid"] in uids


def test_dashboard_layout_fits_the_grid_without_overlap():
    taken: dict[tuple[int, int], str] = {}
    for panel in _dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


def test_dashboard_variables_and_required_panels():
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"model", "intent"} <= set(variables)
    for name in ("model", "intent"):
        query = variables[name]["query"]
        query = query["query"] if isinstance(query, dict) else query
        assert query.startswith("label_values(") and query.rstrip(")").endswith(name)
    builtins = {"__interval", "__rate_interval", "__range"}
    exprs = [expr for _, expr, _ in _dashboard_queries()]
    for expr in exprs:
        for var in re.findall(r"\$([a-zA-Z_]+)", expr):
            assert var in variables or var in builtins, f"undefined ${var} in {expr!r}"
    joined = "\n".join(exprs)
    compact = re.sub(r"\s+", "", joined)
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile},sumby(le)(rate(gateway_request_duration_seconds_bucket" in compact
    assert re.search(
        r"sumby\(intent\)\(rate\(gateway_cost_usd_total\{[^}]*\}\[5m\]\)\)/sumby\(intent\)\(rate\("
        r"gateway_requests_total\{[^}]*\}\[5m\]\)\)",
        compact,
    ), "cost per request by intent"
    for needle in (
        "gateway_time_to_first_token_seconds_bucket",
        "gateway_overhead_seconds_bucket",
        "by (kind)",
        "gateway_cost_saved_usd_total",
        'tier="heavy"',
        "gateway_difficulty_score_bucket",
        "by (reason)",
        "gateway_fallbacks_total",
        "gateway_rate_limited_total",
        "gateway_circuit_open",
        "gateway_in_flight_requests",
        'cache=~"hit-.*|coalesced"',
    ):
        assert needle in joined, needle


# ---------------------------------------------------------------------------------------------- the alerts


def test_alert_rules_are_complete():
    rules = _alert_rules()
    assert rules
    for rule in rules:
        assert rule.get("alert") and rule.get("expr"), rule
        assert re.fullmatch(r"(\d+[smh])+", str(rule.get("for", ""))), f"{rule['alert']}: needs a `for:` duration"
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, rule["alert"]
        assert rule.get("annotations", {}).get("summary") and rule["annotations"].get("description"), rule["alert"]
    exprs = {rule["alert"]: re.sub(r"\s+", "", rule["expr"]) for rule in rules}

    def covered(*needles: str) -> bool:
        return any(all(n in e for n in needles) for e in exprs.values())

    assert covered("histogram_quantile(0.95", "gateway_request_duration_seconds_bucket"), "high p95 latency"
    assert covered('gateway_errors_total{status_class="5xx"}', "gateway_requests_total"), "error ratio"
    assert covered("gateway_circuit_open"), "circuit open"
    assert covered('cache=~"hit-.*|coalesced"'), "cache hit-rate collapse (coalesced answers are hits)"
    assert covered("gateway_cost_usd_total", "*3600"), "cost per hour over budget"


# ---------------------------------------------------------------------------------------- YAML and compose


def test_every_yaml_file_parses():
    files = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        assert documents and all(doc is not None for doc in documents), path


def _compose() -> dict:
    return _yaml(COMPOSE)


def _compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    # `${VAR:-default}` as compose would expand it with VAR unset
    return {k: re.sub(r"\$\{[A-Za-z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def test_compose_stack_is_complete_and_references_existing_files():
    services = _compose()["services"]
    assert {"gateway", "redis", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = (COMPOSE.parent / build["context"]).resolve()
            assert context.is_dir() and (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        else:
            assert service.get("image"), f"{name}: neither build nor image"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"{name}: volume source {source} does not exist"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    assert services["redis"]["image"].split(":")[1].startswith("7")


def test_compose_commands_are_real_cli_commands():
    parser = cli.build_parser()
    services = _compose()["services"]
    mocks = 0
    for name, service in services.items():
        command = service.get("command")
        if not command or (service.get("image") and not service.get("build")):
            continue  # a third-party image's own command
        argv = command if isinstance(command, list) else shlex.split(command)
        assert argv[0] == "gateway", f"{name}: {argv}"
        parser.parse_args(argv[1:])  # exits (SystemExit) on an unknown subcommand or option
        mocks += argv[1] == "mock-upstream"
    assert mocks >= 2, "light and heavy mock upstreams"


def test_compose_gateway_config_resolves_to_the_mocks_and_redis(monkeypatch):
    services = _compose()["services"]
    env = _compose_env(services["gateway"])
    for name, value in env.items():  # the container's environment
        monkeypatch.setenv(name, value)
    config = load_config(ROOT / "config" / "gateway.yaml")
    assert config.redis.url and urlsplit(config.redis.url).hostname in services
    mock_ports = {}
    for name, service in services.items():
        argv = service.get("command") or []
        if isinstance(argv, list) and argv[:2] == ["gateway", "mock-upstream"]:
            mock_ports[name] = int(argv[argv.index("--port") + 1])
    assert env["LIGHT_URL"] != env["HEAVY_URL"]
    for deployment in config.deployments.values():
        url = urlsplit(deployment.base_url)
        assert url.hostname in mock_ports and url.port == mock_ports[url.hostname], deployment.base_url
    # Prometheus scrapes the gateway where it listens
    prometheus = _yaml(DEPLOY / "prometheus.yml")
    job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "gateway")
    target = job["static_configs"][0]["targets"][0]
    port = int(env.get("GATEWAY_SERVER__PORT", _dockerfile_env().get("GATEWAY_SERVER__PORT", config.server.port)))
    assert target == f"gateway:{port}"
    assert f"{port}:{port}" in services["gateway"]["ports"]


def test_prometheus_and_grafana_files_are_mounted_where_they_are_read():
    services = _compose()["services"]

    def mounts(service: str) -> dict[str, Path]:
        out = {}
        for volume in services[service].get("volumes", []):
            source, target = volume.split(":")[:2]
            out[target] = (COMPOSE.parent / source).resolve()
        return out

    prometheus_mounts = mounts("prometheus")
    for rule_file in _yaml(DEPLOY / "prometheus.yml")["rule_files"]:
        assert prometheus_mounts.get(rule_file) == ALERTS.resolve(), rule_file
    grafana_mounts = mounts("grafana")
    provider = _yaml(DEPLOY / "grafana/provisioning/dashboards/dashboards.yml")["providers"][0]
    assert grafana_mounts[provider["options"]["path"]] == DASHBOARD.parent.resolve()
    assert grafana_mounts["/etc/grafana/provisioning"] == (DEPLOY / "grafana/provisioning").resolve()
    datasource = _yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    assert urlsplit(datasource["url"]).hostname == "prometheus"


# ------------------------------------------------------------------------------------------------ Kubernetes


def _k8s() -> dict[str, dict]:
    """The applied manifests and the example Secret (kept outside deploy/k8s/: see test_manifests.py)."""
    docs = {}
    for path in [*sorted(K8S.glob("*.yaml")), DEPLOY / "secret.example.yaml"]:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), path
            docs[doc["kind"]] = doc
    return docs


def _configmap_config(tmp_path: Path):
    data = _k8s()["ConfigMap"]["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return build_config(yaml.safe_load(data["gateway.yaml"]), source="configmap", base_dir=tmp_path)


def test_k8s_configmap_config_is_valid(tmp_path):
    config = _configmap_config(tmp_path)
    assert {"pricing.yaml", "intents.yaml"} <= set(_k8s()["ConfigMap"]["data"])
    assert config.pricing and config.intents
    assert not config.auth.open, "production config must not run with open auth"
    secret_keys = set(_k8s()["Secret"]["stringData"])
    for name, deployment in config.deployments.items():
        assert deployment.api_key_env in secret_keys, f"{name}: {deployment.api_key_env} is not in the Secret"


def test_k8s_configmap_with_the_secret_as_environment(tmp_path):
    """The pod's environment (the Secret through envFrom) completes the ConfigMap's config."""
    docs = _k8s()
    for name, text in docs["ConfigMap"]["data"].items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    env = {key: str(value) for key, value in docs["Secret"]["stringData"].items()}
    config = load_config(tmp_path / "gateway.yaml", environ=env)
    assert config.redis.url and config.redis.url.startswith(("redis://", "rediss://"))
    assert config.auth.admin_key_sha256 is None  # empty in the example: the admin API stays off
    assert config.server.host == "0.0.0.0"


def test_k8s_manifests_fit_together(tmp_path):
    docs = _k8s()
    assert {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "Secret"} <= set(docs)
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] >= 2
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert all(p["targetPort"] in ports or p["targetPort"] in ports.values() for p in service["spec"]["ports"])

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]

    config = _configmap_config(tmp_path)
    pre_stop = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    sleep_s = float(re.search(r"sleep\W+(\d+(?:\.\d+)?)", pre_stop).group(1))
    assert pod["terminationGracePeriodSeconds"] > sleep_s + config.server.shutdown_grace_s

    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == config.server.port
    assert config.server.port in ports.values()
    assert annotations["prometheus.io/path"] == "/metrics"

    secret_names = {ref["secretRef"]["name"] for ref in container.get("envFrom", []) if "secretRef" in ref}
    assert docs["Secret"]["metadata"]["name"] in secret_names
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_mount = next(m for m in container["volumeMounts"] if volumes[m["name"]].get("configMap"))
    assert volumes[config_mount["name"]]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    args = container.get("args") or container.get("command")
    parsed = cli.build_parser().parse_args(args[1:])
    assert parsed.func is cli._serve and Path(parsed.config).parent == Path(config_mount["mountPath"])
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env.get("PROMETHEUS_MULTIPROC_DIR"), "several workers per pod need the multiprocess directory"

    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])


def test_k8s_service_links_do_not_leak_into_config(tmp_path):
    """A Service named `gateway` injects GATEWAY_PORT=tcp://... into pods: read as a config override."""
    docs = _k8s()
    prefix = docs["Service"]["metadata"]["name"].upper().replace("-", "_") + "_"
    if prefix.startswith("GATEWAY_") or prefix == "GATEWAY_":
        assert docs["Deployment"]["spec"]["template"]["spec"].get("enableServiceLinks") is False
    # and where links are injected anyway, only SECTION__FIELD names are read as overrides:
    (tmp_path / "gateway.yaml").write_text(docs["ConfigMap"]["data"]["gateway.yaml"], encoding="utf-8")
    for name in ("pricing.yaml", "intents.yaml"):
        (tmp_path / name).write_text(docs["ConfigMap"]["data"][name], encoding="utf-8")
    config = load_config(
        tmp_path / "gateway.yaml", environ={"GATEWAY_PORT": "tcp://10.0.0.1:80", "GATEWAY_SERVER__PORT": "9000"}
    )
    assert config.server.port == 9000


def test_k8s_secret_example_holds_no_real_keys():
    secret = _k8s()["Secret"]
    for key, value in secret.get("stringData", {}).items():
        assert not re.search(r"sk-[A-Za-z0-9]{16,}", value), key


# ------------------------------------------------------------------------------------------------ Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile()
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last_from:]


def _dockerfile_env() -> dict[str, str]:
    env = {}
    for instruction, rest in _final_stage():
        if instruction == "ENV":
            env.update(dict(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", rest)))
    return env


def test_dockerfile_runs_the_gateway_as_non_root():
    final = _final_stage()
    assert final[0][1].split()[0] == "python:3.11-slim"
    users = [rest for ins, rest in final if ins == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert ("EXPOSE", "8080") in final
    healthcheck = " ".join(rest for ins, rest in final if ins == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert _dockerfile_env().get("PROMETHEUS_MULTIPROC_DIR")
    (cmd,) = [json.loads(rest) for ins, rest in final if ins == "CMD"]
    assert cmd == ["gateway", "serve", "--host", "0.0.0.0", "--config", "/app/config/gateway.yaml"]
    parsed = cli.build_parser().parse_args(cmd[1:])
    assert parsed.func is cli._serve
    copies = [rest.split() for ins, rest in final if ins == "COPY" and "--from" not in rest]
    assert any(Path(parsed.config).parent == Path(parts[-1]) for parts in copies), "the config is copied there"


def test_dockerfile_copies_what_dockerignore_lets_through():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for instruction, rest in _dockerfile():
        if instruction != "COPY" or "--from" in rest:
            continue
        for source in rest.split()[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            for pattern in patterns:
                assert not fnmatch.fnmatch(source.rstrip("/"), pattern.rstrip("/")), (
                    f"COPY {source} is excluded by .dockerignore ({pattern})"
                )
    for needed in ("gateway", "config", "pyproject.toml"):
        assert not any(fnmatch.fnmatch(needed, p) for p in patterns), needed


# ------------------------------------------------------------------------------------ multiprocess metrics


def test_serve_prepares_the_multiprocess_directory(tmp_path, monkeypatch):
    stale = tmp_path / "metrics"
    stale.mkdir()
    (stale / "counter_123.db").write_bytes(b"old")
    (stale / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(stale))
    assert cli._prepare_multiproc_dir(2) is None
    assert sorted(p.name for p in stale.iterdir()) == ["keep.txt"]

    missing = tmp_path / "new" / "dir"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(missing))
    cli._prepare_multiproc_dir(1)
    assert missing.is_dir()

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert cli._prepare_multiproc_dir(1) is None and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    temp = cli._prepare_multiproc_dir(2)
    try:
        assert temp and os.environ["PROMETHEUS_MULTIPROC_DIR"] == temp and Path(temp).is_dir()
    finally:
        os.rmdir(temp)


def test_metrics_of_several_workers_add_up(tmp_path):
    """Two processes record into PROMETHEUS_MULTIPROC_DIR; a third one's /metrics body sums them."""
    worker = textwrap.dedent("""
        from gateway.metrics import Metrics
        m = Metrics()
        m.requests.labels("support", "refund", "light", "miss", "200").inc()
        m.request_duration.labels("support", "refund", "false", "miss").observe(0.2)
        m.in_flight.inc()
        m.circuit_open.labels("ft-primary").set(1)
    """)
    reader = "from gateway.metrics import Metrics; print(Metrics().exposition().decode())"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", worker], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", reader], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    _, samples = _parse_exposition(out)
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in out.splitlines()
        if line and not line.startswith("#")
    }
    assert lines['gateway_requests_total{cache="miss",intent="refund",model="support",status="200",tier="light"}'] == 2
    assert (
        lines['gateway_request_duration_seconds_count{cache="miss",intent="refund",model="support",stream="false"}']
        == 2
    )
    assert lines['gateway_circuit_open{deployment="ft-primary"}'] == 1  # max, not one series per pid
    assert all("pid" not in labels for series in samples.values() for labels in series)
