"""The alert rules, run by Prometheus's own rule engine: `promtool test rules deploy/alerts.test.yml` (every alert
fires in one case and stays quiet in another), `promtool check` on the rules and on both scrape configs, and
the job the alerts select is the job both scrape configs define."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="session")
def promtool() -> str:
    if shutil.which("promtool") is None:
        subprocess.run([str(ROOT / "scripts" / "ensure-prometheus.sh")], check=False, timeout=600)
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool is not installed and scripts/ensure-prometheus.sh could not install Debian's "
            "prometheus package (no apt, no root, or no network)"
        )
    return path


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"] for rule in group["rules"]]


def test_alert_rule_unit_tests_pass(promtool):
    result = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"], cwd=DEPLOY, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load((DEPLOY / "alerts.test.yml").read_text())["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for rule in _rules():
        assert cases.get(rule["alert"]) == {True, False}, f"{rule['alert']}: needs a firing and a quiet case"


def test_rules_and_scrape_configs_pass_promtool_check(promtool, tmp_path):
    result = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "alerts.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The compose config reads the rules at their path in the container: check it against a copy there.
    shutil.copy(DEPLOY / "alerts.yml", tmp_path / "alerts.yml")
    config = (DEPLOY / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml"))
    (tmp_path / "prometheus.yml").write_text(config)
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_down_alerts_select_the_job_of_both_scrape_configs():
    """GatewayDown matched a job name the Kubernetes scrape config did not use."""
    jobs = {}
    for name in ("prometheus.yml", "prometheus-k8s.yml"):
        config = yaml.safe_load((DEPLOY / name).read_text())
        jobs[name] = {job["job_name"] for job in config["scrape_configs"]}
    rules = {rule["alert"]: rule["expr"] for rule in _rules()}
    for alert in ("GatewayDown", "GatewayAbsent"):
        selected = re.findall(r'up\{job="([^"]+)"\}', rules[alert])
        assert selected, alert
        for name, names in jobs.items():
            assert set(selected) <= names, f"{alert} selects job {selected}, {name} defines {sorted(names)}"
    assert "absent(" in rules["GatewayAbsent"]
