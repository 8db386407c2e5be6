"""deploy/k8s: every overlay builds with `kubectl kustomize`, every object validates strictly
against the Kubernetes schemas offline, and the objects wire together as intended."""

from __future__ import annotations

import copy
import subprocess
from functools import cache

import pytest
import yaml

from tests.deploy.conftest import K8S_DIR
from tests.deploy.contract import assert_gateway_settings

KUBERNETES_VERSION = "1.33.0"
OVERLAYS = sorted(p.parent.name for p in (K8S_DIR / "overlays").glob("*/kustomization.yaml"))


@cache
def _build(kubectl: str, overlay: str) -> tuple[dict, ...]:
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(params=OVERLAYS)
def objects(request, kubectl: str) -> dict[tuple[str, str], dict]:
    docs = _build(kubectl, request.param)
    return {(doc["kind"], doc["metadata"]["name"]): copy.deepcopy(doc) for doc in docs}


def _one(objects: dict, kind: str, prefix: str = "") -> dict:
    (found,) = [o for (k, name), o in objects.items() if k == kind and name.startswith(prefix)]
    return found


def _container(deployment: dict, name: str) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def test_overlays_exist() -> None:
    assert {"cpu", "gpu"} <= set(OVERLAYS)


def test_every_object_validates_strictly(objects: dict) -> None:
    import kubernetes_validate

    kinds = {kind for kind, _ in objects}
    assert {
        "Namespace",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ConfigMap",
    } <= kinds
    for (kind, name), obj in objects.items():
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{kind}/{name}: {exc}")
        assert obj["metadata"].get("namespace", "tritium") == "tritium"


def test_strict_validation_rejects_a_misspelt_field(objects: dict) -> None:
    import kubernetes_validate

    deployment = copy.deepcopy(_one(objects, "Deployment", "triton"))
    _container(deployment, "triton")["readinesProbe"] = {
        "httpGet": {"path": "/v2/health/ready", "port": 8000}
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_triton_probes_and_model_repository(objects: dict) -> None:
    deployment = _one(objects, "Deployment", "triton")
    triton = _container(deployment, "triton")
    assert "--strict-readiness=true" in triton["args"]
    assert "--model-repository=/models" in triton["args"]
    assert triton["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    spec = deployment["spec"]["template"]["spec"]
    models = next(v for v in spec["volumes"] if v["name"] == "models")
    if "persistentVolumeClaim" in models:  # the shared repository a release writes to: nothing to copy
        assert "initContainers" not in spec and "emptyDir" not in models
        claim = _one(objects, "PersistentVolumeClaim", models["persistentVolumeClaim"]["claimName"])
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every replica mounts it
    else:  # the image-based repository, copied by the init container
        (init,) = spec["initContainers"]
        assert {m["name"] for m in init["volumeMounts"]} == {"models"}
        assert "emptyDir" in models
    assert {m["name"]: m.get("readOnly", False) for m in triton["volumeMounts"]}["models"] is True


def test_the_release_job_reaches_every_replica_with_the_admin_token(kubectl: str) -> None:
    """The shared-repository overlay: a release Job whose `dns+` names are headless Services that
    select the Triton and gateway pods on the ports the release uses, admitted by the policies."""
    objects = {(d["kind"], d["metadata"]["name"]): d for d in _build(kubectl, "shared-repository")}
    job = objects[("Job", "tritium-release")]
    pod = job["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    args = container["args"]
    assert args[:2] == ["tritium", "release"] and job["spec"]["backoffLimit"] == 0
    env = {e["name"]: e for e in container["env"]}
    assert env["TRITIUM_GATEWAY_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "tritium-gateway-admin"
    for option, deployment in (("--triton", "triton"), ("--gateway", "tritium-gateway")):
        value = args[args.index(option) + 1]
        assert value.startswith("dns+")
        host, port = value.removeprefix("dns+").removeprefix("http://").rsplit(":", 1)
        service = objects[("Service", host)]
        assert service["spec"]["clusterIP"] == "None"  # one DNS record per ready pod
        pod_labels = objects[("Deployment", deployment)]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}
        # some NetworkPolicy selecting those pods admits the Job's pods on that port
        admitted = [
            rule
            for (kind, _), policy in objects.items()
            if kind == "NetworkPolicy"
            and policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
            for rule in policy["spec"]["ingress"]
            if int(port) in {p["port"] for p in rule["ports"]}
            and any(
                source.get("podSelector", {}).get("matchLabels", {}).items()
                <= pod["metadata"]["labels"].items()
                for source in rule.get("from", [])
            )
        ]
        assert admitted, f"no NetworkPolicy lets the release Job reach {deployment}:{port}"
    repository = args[args.index("--repository") + 1]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[mounts[repository]]["persistentVolumeClaim"]["claimName"] == "tritium-model-repository"
    releases = args[args.index("--releases") + 1]
    assert any(
        releases.startswith(path) for path in mounts if volumes[mounts[path]].get("persistentVolumeClaim")
    )


def test_gpu_overlay_requests_a_gpu_and_cpu_does_not(kubectl: str) -> None:
    for overlay, wants_gpu in (("gpu", True), ("cpu", False)):
        deployment = next(
            d
            for d in _build(kubectl, overlay)
            if d["kind"] == "Deployment" and d["metadata"]["name"] == "triton"
        )
        limits = _container(deployment, "triton")["resources"]["limits"]
        assert ("nvidia.com/gpu" in limits) is wants_gpu, overlay
        args = _container(deployment, "triton")["args"]
        assert ("--allow-gpu-metrics=false" in args) is not wants_gpu, overlay


def test_gateway_reads_routes_from_the_configmap_and_token_from_a_secret(objects: dict) -> None:
    from tritium.gateway.routes import validated_table

    deployment = _one(objects, "Deployment", "tritium-gateway")
    gateway = _container(deployment, "gateway")
    env = {e["name"]: e for e in gateway["env"]}
    assert env["TRITIUM_GATEWAY_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "tritium-gateway-admin",
        "key": "token",
    }
    assert env["TRITIUM_GATEWAY_TRITON_GRPC_URL"]["value"] == "triton:8001"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    configmap = _one(objects, "ConfigMap", "tritium-gateway-routes-")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["routes-config"]["configMap"]["name"] == configmap["metadata"]["name"]
    table = validated_table(yaml.safe_load(configmap["data"]["routes.yaml"]))
    assert "digits" in table.routes
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][-1] == env["TRITIUM_GATEWAY_ROUTE_FILE"]["value"]
    assert_gateway_settings({name: e["value"] for name, e in env.items() if "value" in e})
    cpu_request = float(gateway["resources"]["requests"]["cpu"].removesuffix("m")) / (
        1000 if gateway["resources"]["requests"]["cpu"].endswith("m") else 1
    )
    assert int(env["TRITIUM_GATEWAY_WORKERS"]["value"]) <= max(1, round(cpu_request)), "a worker per core"


def test_services_and_budgets_select_their_pods(objects: dict) -> None:
    for name in ("triton", "tritium-gateway"):
        pod_labels = _one(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        service = objects[("Service", name)]
        budget = objects[("PodDisruptionBudget", name)]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        container_ports = {
            p["name"]
            for c in _one(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports


def test_only_the_gateway_reaches_triton(objects: dict) -> None:
    policy = _one(objects, "NetworkPolicy", "triton")
    triton_labels = _one(objects, "Deployment", "triton")["spec"]["template"]["metadata"]["labels"]
    gateway_labels = _one(objects, "Deployment", "tritium-gateway")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= triton_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    inference_ports = {8000, 8001}
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        (source,) = rule["from"]
        if ports & inference_ports:
            assert source == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "tritium-gateway"}}}
            assert source["podSelector"]["matchLabels"].items() <= gateway_labels.items()
        else:
            assert ports == {8002}, "anything else may only scrape metrics"


def test_only_operator_pods_reach_the_gateway_admin_api(objects: dict) -> None:
    policy = _one(objects, "NetworkPolicy", "tritium-gateway")
    gateway = _one(objects, "Deployment", "tritium-gateway")
    container = _container(gateway, "gateway")
    env = {e["name"]: e.get("value") for e in container["env"]}
    admin_port = int(env["TRITIUM_GATEWAY_ADMIN_PORT"])
    assert admin_port in {p["containerPort"] for p in container["ports"]}
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items()
        <= gateway["spec"]["template"]["metadata"]["labels"].items()
    )
    open_to_all = [rule for rule in policy["spec"]["ingress"] if "from" not in rule]
    admin = [rule for rule in policy["spec"]["ingress"] if admin_port in {p["port"] for p in rule["ports"]}]
    assert {p["port"] for rule in open_to_all for p in rule["ports"]} == {8080, 8081}  # inference only
    (rule,) = admin
    assert rule["from"] == [{"podSelector": {"matchLabels": {"tritium.io/gateway-admin": "true"}}}]
    service = _one(objects, "Service", "tritium-gateway")
    assert admin_port not in {p["port"] for p in service["spec"]["ports"]}  # not published either


def test_hpa_scales_triton_on_the_adapter_metrics(objects: dict) -> None:
    hpa = _one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton"}
    metric_names = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]}
    adapter = yaml.safe_load((K8S_DIR / "prometheus-adapter" / "values.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert metric_names == served == {"triton_queue_seconds_per_request", "triton_pending_requests"}
    assert (
        hpa["spec"]["minReplicas"] >= 2 > objects[("PodDisruptionBudget", "triton")]["spec"]["minAvailable"]
    )
