"""deploy/k8s: the kustomization renders, validates against the Kubernetes schemas, and
its references agree with the settings and with the gateway's real health server.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dataflows.adapters.config import load_adapters
from dataflows.rules import load_rules
from gateway.observability.health import Health
from gateway.observability.http import serve
from gateway.observability.metrics import GatewayMetrics
from gateway.settings import GatewaySettings, load_settings
from tests.deploy.deploy_kit import (
    DEPLOY,
    NON_FIELD_VARIABLES,
    ROOT,
    field_of,
    is_secret,
    load_yaml_documents,
)

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.28.0"  # the oldest with the pod-index label the pods read


def _render_without_kubectl() -> list[dict[str, Any]]:
    """The kustomization's resources and generated ConfigMaps, without name hashes."""
    (kust,) = load_yaml_documents(K8S / "kustomization.yaml")
    docs = [d for r in kust["resources"] for d in load_yaml_documents(K8S / r)]
    for gen in kust["configMapGenerator"]:
        data = {Path(f).name: (K8S / f).read_text() for f in gen["files"]}
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": gen["name"]},
                "data": data,
            }
        )
    for doc in docs:
        if doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = kust["namespace"]
    return docs


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return _render_without_kubectl()
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=60
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def statefulset(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(rendered, "StatefulSet")


@pytest.fixture(scope="module")
def container(statefulset: dict[str, Any]) -> dict[str, Any]:
    (c,) = statefulset["spec"]["template"]["spec"]["containers"]
    return c


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_kubectl_renders_the_kustomization() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (the other tests render the files themselves)")
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_every_resource_validates_against_the_kubernetes_schema(
    rendered: list[dict[str, Any]],
) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    examples = load_yaml_documents(K8S / "secret.example.yaml")
    for doc in [*rendered, *examples]:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "ConfigMap",
        "Namespace",
        "PodDisruptionBudget",
        "Service",
        "Service",
        "StatefulSet",
    ]


def _settings(
    rendered: list[dict[str, Any]],
    container: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> GatewaySettings:
    """The settings a pod reads: its config file from the ConfigMap, its variables."""
    env = _env(container)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    config_path = Path(env["SENSORGATE_CONFIG_FILE"])
    volume = mounts[str(config_path.parent)]
    cm = _configmap_of(rendered, volume)
    local = tmp_path / config_path.name
    local.write_text(cm["data"][config_path.name])
    for name, value in env.items():
        if name.startswith("SENSORGATE_") and name not in NON_FIELD_VARIABLES:
            monkeypatch.setenv(name, str(value))
    return load_settings(config_file=local)


def _configmap_of(rendered: list[dict[str, Any]], volume_name: str) -> dict[str, Any]:
    sts = _one(rendered, "StatefulSet")
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    name = volumes[volume_name]["configMap"]["name"]
    return _one(rendered, "ConfigMap", name)


def test_the_cluster_addresses_come_from_the_headless_service(
    rendered: list[dict[str, Any]],
    statefulset: dict[str, Any],
    container: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = statefulset["spec"]
    env = _env(container)
    headless = _one(rendered, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert env["SG_CLUSTER_SERVICE"] == spec["serviceName"]
    assert spec["podManagementPolicy"] == "Parallel"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (cluster_port,) = headless["spec"]["ports"]
    assert ports[cluster_port["targetPort"]] == cluster_port["port"] == int(env["SG_CLUSTER_PORT"])
    assert container["args"] == ["sensorgate-node"]
    assert env["POD_INDEX"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}

    replicas = spec["replicas"]
    settings = _settings(rendered, container, tmp_path, monkeypatch)
    assert int(env["SG_CLUSTER_SIZE"]) == replicas
    assert settings.recovery_partitions == replicas
    assert settings.mqtt.partitions % replicas == 0


def test_each_pod_keeps_its_state_on_its_own_volume(
    rendered: list[dict[str, Any]],
    statefulset: dict[str, Any],
    container: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    state = Path(mounts[claim["metadata"]["name"]])
    settings = _settings(rendered, container, tmp_path, monkeypatch)
    env = _env(container)
    assert Path(env["SG_RECOVERY_DIR"]) == Path(settings.recovery_dir or "")
    assert Path(settings.recovery_dir or "").is_relative_to(state)
    assert settings.influx.spill_dir.is_relative_to(state)


def test_volumes_configmaps_and_secrets_resolve(
    rendered: list[dict[str, Any]],
    statefulset: dict[str, Any],
    container: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = statefulset["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes or mount["name"] in claims, mount["name"]
    settings = _settings(rendered, container, tmp_path, monkeypatch)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}

    # rules and adapters: the paths in gateway.toml are files of their ConfigMaps, valid.
    for path, loader in (
        (settings.rules_file, load_rules),
        (settings.adapters_file, load_adapters),
    ):
        assert path is not None
        cm = _configmap_of(rendered, mounts[str(path.parent)])
        text = cm["data"][path.name]
        local = tmp_path / path.name
        local.write_text(text)
        loader(local)
    # Rules are reloaded live: their ConfigMap keeps its name (no hash) and is mounted as
    # a directory (a subPath mount would never see an update).
    rules_cm = _configmap_of(rendered, mounts[str(settings.rules_file.parent)])
    assert rules_cm["metadata"]["name"] == "sensorgate-rules"
    assert not any("subPath" in m for m in container["volumeMounts"])

    # Secrets: files named after secret settings, in the directory the entry point reads.
    env = _env(container)
    secret_volume = volumes[mounts[env["SENSORGATE_SECRETS_DIR"]]]
    examples = {d["metadata"]["name"]: d for d in load_yaml_documents(K8S / "secret.example.yaml")}
    paths = []
    for source in secret_volume["projected"]["sources"]:
        secret = source["secret"]
        assert secret["name"] in examples
        for item in secret["items"]:
            assert item["key"] in examples[secret["name"]]["stringData"]
            assert is_secret(field_of(GatewaySettings, item["path"])), item["path"]
            paths.append(item["path"])
    assert sorted(paths) == ["SENSORGATE_INFLUX__TOKEN", "SENSORGATE_MQTT__PASSWORD"]
    assert secret_volume["projected"]["defaultMode"] & 0o040, "readable through fsGroup"
    for name in env:
        if name.startswith("SENSORGATE_") and name not in NON_FIELD_VARIABLES:
            field_of(GatewaySettings, name)
    assert settings.influx.token is None, "no token in the ConfigMap"
    assert settings.mqtt.password is None, "no password in the ConfigMap"


def test_probes_and_ports_match_the_settings_and_the_health_server(
    rendered: list[dict[str, Any]],
    container: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env(container)
    settings = _settings(rendered, container, tmp_path, monkeypatch)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == int(env["SG_METRICS_PORT"]) == settings.metrics_port
    assert settings.metrics_host == "0.0.0.0", "the kubelet probes the pod's address"
    probes = {
        kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")
    }
    assert {p["port"] for p in probes.values()} == {"metrics"}
    assert probes["readiness"]["path"] == "/healthz"
    assert probes["liveness"]["path"] == probes["startup"]["path"] == "/metrics"

    metrics_service = _one(rendered, "Service", "sensorgate-gateway-metrics")
    (port,) = metrics_service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    annotations = _one(rendered, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]

    # The paths are the real health server's: /metrics 200 always, /healthz 503 until
    # the broker and InfluxDB answer (a closed port here), then 200.
    broker_ok = threading.Event()
    health = Health(broker_ok=broker_ok.is_set, influx_url="http://127.0.0.1:9", interval_s=0.1)
    server = serve(GatewayMetrics(), health, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert httpx.get(base + probes["liveness"]["path"]).status_code == 200
        assert httpx.get(base + probes["readiness"]["path"]).status_code == 503
    finally:
        server.shutdown()
        server.server_close()


def test_pods_run_unprivileged_as_the_image_user(
    statefulset: dict[str, Any], container: dict[str, Any]
) -> None:
    pod = statefulset["spec"]["template"]["spec"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp, "sensorgate-node needs a writable /tmp with a read-only root"


def test_the_disruption_budget_covers_the_gateway_pods(
    rendered: list[dict[str, Any]], statefulset: dict[str, Any]
) -> None:
    pdb = _one(rendered, "PodDisruptionBudget")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()
