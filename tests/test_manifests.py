"""Deploy files safe as shipped: every manifest validates against the Kubernetes schemas (offline, strict:
kubernetes-validate bundles them), `kubectl apply -f deploy/k8s/` cannot overwrite the real Secret, and the
pods meet Pod Security "restricted" with a PDB, a topology spread and a NetworkPolicy."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _applied() -> dict[str, dict]:
    return {doc["kind"]: doc for path in sorted(K8S.glob("*.y*ml")) for doc in _docs(path)}


@pytest.mark.parametrize("path", [*sorted(K8S.glob("*.y*ml")), DEPLOY / "secret.example.yaml"], ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schema(path):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="a test dependency: pip install -e '.[test]'"
    )
    for doc in _docs(path):
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # strict: unknown fields fail
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} ({doc['kind']}): {exc.message} at {'.'.join(map(str, exc.path))}")


def test_the_validator_catches_a_wrong_field():
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="a test dependency: pip install -e '.[test]'"
    )
    deployment = _applied()["Deployment"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # `resources` misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_applying_the_directory_never_touches_the_secret():
    """`kubectl apply -f deploy/k8s/` (what the docs say) replaced the real Secret with replace-me values."""
    assert "Secret" not in _applied()
    example = _docs(DEPLOY / "secret.example.yaml")
    assert [doc["kind"] for doc in example] == ["Secret"]


def test_pods_meet_pod_security_restricted():
    pod = _applied()["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"] and not context["capabilities"].get("add")
        assert context.get("seccompProfile", pod["securityContext"]["seccompProfile"])["type"] == "RuntimeDefault"
        assert context["readOnlyRootFilesystem"] is True
    for volume in pod["volumes"]:
        assert "hostPath" not in volume, volume["name"]


def test_replicas_survive_a_drain_and_a_lost_node():
    docs = _applied()
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    pdb = docs["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    spread = docs["Deployment"]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    keys = {c["topologyKey"]: c for c in spread}
    assert keys["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert "topology.kubernetes.io/zone" in keys
    assert all(c["labelSelector"]["matchLabels"].items() <= labels.items() for c in spread)


def test_network_policy_admits_the_gateway_port_and_the_needed_egress_only():
    docs = _applied()
    policy = docs["NetworkPolicy"]["spec"]
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    http = {p["containerPort"] for p in container["ports"]}
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == http
    egress = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {53, 443, 6379, 6380}


# ------------------------------------------------------------------------------ the image, compose and the CLI


def _dockerfile_env() -> dict[str, str]:
    from tests.test_deploy import _dockerfile_env

    return _dockerfile_env()


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def test_the_image_refuses_open_auth_unless_told_it_is_a_demo():
    import os
    import subprocess
    import sys

    from gateway.config import ConfigError, load_config
    from tests.test_deploy import _compose_env

    image_env = _dockerfile_env()
    assert image_env["GATEWAY_AUTH__OPEN_ALLOWED"] == "false"
    with pytest.raises(ConfigError, match="GATEWAY_AUTH__OPEN_ALLOWED=true"):
        load_config(ROOT / "config" / "gateway.yaml", environ=image_env)
    demo = {**image_env, **_compose_env(_compose()["services"]["gateway"])}  # compose is the demo
    assert load_config(ROOT / "config" / "gateway.yaml", environ=demo).auth.open
    # The image's own command line, with the image's environment: exits at once, saying why.
    env = {**os.environ, **image_env, "PROMETHEUS_MULTIPROC_DIR": ""}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--config",
            str(ROOT / "config" / "gateway.yaml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "auth.open" in result.stderr, result.stderr


def test_compose_redis_never_evicts_and_persists():
    """allkeys-lru could evict canary percentages, client keys, budgets and breaker state."""
    redis = _compose()["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--maxmemory-policy noeviction" in command
    assert "--appendonly yes" in command
    volume, target = redis["volumes"][0].split(":")[:2]
    assert target == "/data" and volume in _compose()["volumes"]


def test_compose_prometheus_sends_alerts_to_an_alertmanager():
    services = _compose()["services"]
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (target,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in services and f"{port}:{port}" in services[host]["ports"]
    mounts = dict(volume.split(":")[:2][::-1] for volume in services[host]["volumes"])
    config_file = next(arg.split("=", 1)[1] for arg in services[host]["command"] if arg.startswith("--config.file="))
    assert (DEPLOY / mounts[config_file]).resolve() == (DEPLOY / "alertmanager.yml").resolve()
    alertmanager = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())
    receivers = {r["name"] for r in alertmanager["receivers"]}
    routes = [alertmanager["route"], *alertmanager["route"].get("routes", [])]
    assert all(route["receiver"] in receivers for route in routes)
    import shutil
    import subprocess

    amtool = shutil.which("amtool")
    if amtool:  # Debian's prometheus-alertmanager; the structure above is checked either way
        result = subprocess.run(
            [amtool, "check-config", str(DEPLOY / "alertmanager.yml")], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_cli_output_masks_secrets(monkeypatch, capsys):
    from gateway import cli

    password, key = "s3cret-redis-passw0rd", "sk-live-0123456789abcdefXYZ"
    monkeypatch.setenv("GATEWAY_REDIS__URL", f"redis://default:{password}@redis.internal:6379/0")
    monkeypatch.setenv("LIGHT_API_KEY", key)
    assert cli.main(["config", "check", str(ROOT / "config" / "gateway.yaml")]) == 0
    out, err = capsys.readouterr()
    assert "redis://default:***@redis.internal:6379/0" in out
    assert password not in out + err and key not in out + err
    monkeypatch.setenv("GATEWAY_REDIS__URL", f"redis://:{password}@redis.internal:notaport/0")  # an error echoes it
    assert cli.main(["config", "check", str(ROOT / "config" / "gateway.yaml")]) != 0
    out, err = capsys.readouterr()
    assert password not in out + err and (out + err).strip()
