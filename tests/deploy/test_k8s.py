"""deploy/k8s: every manifest validates strictly offline, the probe timers are safe, and
one pod of the StatefulSet's template runs under ``podman kube play``.

Nothing here runs on a real cluster. The pod runs on the embedded store with its
ports on 127.0.0.1, and is removed with ``podman kube down`` in ``finally``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from app.adc.timers import HaproxyTimers, NodeTiming, assess, seconds
from tests.support import podman as pm
from tests.support.nodes import REPO
from tests.support.ports import free_port

K8S = REPO / "deploy" / "k8s"
VERSION = "1.30"


def manifests() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def statefulset() -> dict[str, Any]:
    (doc,) = documents(K8S / "statefulset.yaml")
    return doc


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def test_the_shipped_kinds_are_all_there():
    kinds = sorted(doc["kind"] for path in manifests() for doc in documents(path))
    assert kinds == [
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    ]


@pytest.mark.parametrize("path", manifests(), ids=lambda p: p.relative_to(K8S).as_posix())
def test_manifest_validates_strictly(path: Path):
    for doc in documents(path):
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_strict_validation_catches_an_unknown_field():
    doc = copy.deepcopy(statefulset())
    container(doc["spec"]["template"]["spec"], "vipmon")["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_probes_and_timers():
    """Readiness is /monitor with timers that never show two Ready pods; liveness is not."""
    spec = statefulset()["spec"]["template"]["spec"]
    vipmon = container(spec, "vipmon")
    ready, live = vipmon["readinessProbe"], vipmon["livenessProbe"]
    assert ready["httpGet"]["path"] == "/monitor"
    assert live["httpGet"]["path"] == "/health/live"
    for other in spec["containers"]:
        assert "/monitor" not in str(other.get("livenessProbe", ""))
    period, timeout = float(ready["periodSeconds"]), float(ready["timeoutSeconds"])
    kubelet = HaproxyTimers(
        inter=period,
        fastinter=period,
        downinter=period,
        rise=ready["successThreshold"],
        fall=ready["failureThreshold"],
        timeout_check=timeout,
        timeout_connect=timeout,
    )
    env = {e["name"]: e.get("value") for e in vipmon["env"]}
    figures = assess(kubelet, NodeTiming(lease_ttl=float(env["VIPMON_LEASE_TTL"])))
    assert figures.safe, figures.lines
    comments = (K8S / "statefulset.yaml").read_text()
    assert f"= {seconds(figures.failover)}, plus the time" in comments
    drain, ttl = float(env["VIPMON_DRAIN_TIME"]), float(env["VIPMON_LEASE_TTL"])
    assert spec["terminationGracePeriodSeconds"] > drain + 2 * ttl


def _pod_from_template(images: pm.Images, pod_name: str) -> tuple[dict[str, Any], int, int]:
    """The template as a Pod on the embedded store, images local, ports on 127.0.0.1.

    podman 4.3 does not fill ``status.podIP``; POD_IP becomes a literal 127.0.0.1.
    """
    template = copy.deepcopy(statefulset()["spec"]["template"])
    spec = template["spec"]
    monitor_port, app_port = free_port(), free_port()
    app, vipmon = container(spec, "app"), container(spec, "vipmon")
    app["image"] = images.vipmon  # it has python3; the template names python:3.12-slim
    vipmon["image"] = images.vipmon
    vipmon["env"] = [
        e
        for e in vipmon["env"]
        if not e["name"].startswith(("VIPMON_ETCD_", "VIPMON_BACKEND", "POD_IP"))
    ] + [{"name": "VIPMON_BACKEND", "value": "local"}]
    vipmon["env"].insert(0, {"name": "POD_IP", "value": "127.0.0.1"})
    vipmon["volumeMounts"] = [m for m in vipmon["volumeMounts"] if m["name"] != "etcd-tls"]
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "etcd-tls"]
    for c, port in ((app, app_port), (vipmon, monitor_port)):
        c["ports"][0].update(hostPort=port, hostIP="127.0.0.1")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {**template["metadata"]}, "spec": spec}
    pod["metadata"]["name"] = pod_name
    kubernetes_validate.validate(pod, VERSION, strict=True)
    return pod, monitor_port, app_port


def test_one_pod_of_the_template_runs_under_kube_play(
    tmp_path: Path, podman: pm.Podman, images: pm.Images
):
    pod_name = pm.name("k8s-0")
    pod, monitor_port, app_port = _pod_from_template(images, pod_name)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(pod))
    try:
        podman.run("kube", "play", str(manifest), timeout=180)
        base = f"http://127.0.0.1:{monitor_port}"
        pm.wait_http(base + "/monitor", status=200, timeout=30)  # alone: master
        assert httpx.get(base + "/health/live", timeout=2).status_code == 200
        role = httpx.get(base + "/role", timeout=2).json()
        assert role["node"] == pod_name
        assert role["role"] == "MASTER"
        answer = httpx.get(f"http://127.0.0.1:{app_port}/", timeout=2).json()
        assert answer == {"node": pod_name}
        vipmon = f"{pod_name}-vipmon"
        read_only = podman.run("exec", vipmon, "touch", "/opt/vipmon/x", check=False)
        assert read_only.returncode != 0, "the root filesystem should be read-only"
        assert podman.run("exec", vipmon, "id", "-u").stdout.strip() == "10001"
    finally:
        down = podman.run("kube", "down", str(manifest), check=False, timeout=180)
        podman.run("pod", "rm", "-f", pod_name, check=False)
    assert down.returncode == 0, down.stderr
