"""deploy/k8s: every manifest validates strictly offline, the probe timers are safe, and
one pod of the StatefulSet's template runs under ``podman kube play``.

The fenced form is a strategic-merge patch (``fenced/*.patch.yaml``); the tests merge it
into the StatefulSet, validate the result the same way, and run its pod too: the
sidecar holds NET_ADMIN and nothing else, and libnftables works in the pod's own
network namespace.

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
FENCE_PATCH = K8S / "fenced" / "vipmon-fence.patch.yaml"
VERSION = "1.30"


def manifests() -> list[Path]:
    """Every object the user applies; patches are not objects."""
    return sorted(p for p in K8S.rglob("*.yaml") if not p.name.endswith(".patch.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def statefulset() -> dict[str, Any]:
    (doc,) = documents(K8S / "statefulset.yaml")
    return doc


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def strategic_merge(base: Any, patch: Any) -> Any:
    """What ``kubectl patch`` does with the parts our patch uses.

    Maps merge key by key; lists of named items (containers, env) merge by ``name``;
    any other list (capabilities) is replaced.
    """
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    named = isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in patch)
    if named and isinstance(base, list):
        out = list(base)
        for item in patch:
            at = next((i for i, old in enumerate(out) if old.get("name") == item["name"]), None)
            if at is None:
                out.append(item)
            else:
                out[at] = strategic_merge(out[at], item)
        return out
    return copy.deepcopy(patch)


def fenced_statefulset() -> dict[str, Any]:
    (patch,) = documents(FENCE_PATCH)
    merged: dict[str, Any] = strategic_merge(statefulset(), patch)
    return merged


def test_the_fence_patch_merges_into_a_valid_statefulset():
    doc = fenced_statefulset()
    kubernetes_validate.validate(doc, VERSION, strict=True)
    spec, plain = doc["spec"]["template"]["spec"], statefulset()["spec"]["template"]["spec"]
    sidecar = container(spec, "vipmon")
    assert sidecar["securityContext"] == {
        "runAsUser": 0,
        "runAsGroup": 10001,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
    }
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    app_port = container(spec, "app")["ports"][0]["containerPort"]
    assert env["VIPMON_FENCE_PORT"] == str(app_port)
    # The rest is the StatefulSet as shipped: the env only grew, the app is untouched.
    assert sidecar["env"][:-1] == container(plain, "vipmon")["env"]
    assert container(spec, "app") == container(plain, "app")
    assert spec["securityContext"] == plain["securityContext"]  # the app stays non-root
    assert {k: v for k, v in sidecar.items() if k not in ("env", "securityContext")} == {
        k: v for k, v in container(plain, "vipmon").items() if k not in ("env", "securityContext")
    }


def test_the_merge_replaces_plain_lists_and_merges_named_ones():
    """The check above can fail: a patch's capability list replaces, env appends."""
    base = {"c": [{"name": "a", "x": [1, 2], "env": [{"name": "A", "value": "1"}]}]}
    patch = {"c": [{"name": "a", "x": [3], "env": [{"name": "B", "value": "2"}]}]}
    assert strategic_merge(base, patch) == {
        "c": [
            {
                "name": "a",
                "x": [3],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            }
        ]
    }


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


def _pod_from_template(
    images: pm.Images, pod_name: str, *, fenced: bool
) -> tuple[dict[str, Any], int, int]:
    """The template as a Pod on the embedded store, images local, ports on 127.0.0.1.

    podman 4.3 does not fill ``status.podIP``; POD_IP becomes a literal 127.0.0.1.
    """
    source = fenced_statefulset() if fenced else statefulset()
    template = copy.deepcopy(source["spec"]["template"])
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


@pytest.mark.parametrize("fenced", [False, True], ids=["shipped", "fence-patch"])
def test_one_pod_of_the_template_runs_under_kube_play(
    tmp_path: Path, podman: pm.Podman, images: pm.Images, fenced: bool
):
    pod_name = pm.name(f"k8s-{int(fenced)}")
    pod, monitor_port, app_port = _pod_from_template(images, pod_name, fenced=fenced)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(pod))
    try:
        podman.run("kube", "play", str(manifest), timeout=180)
        base = f"http://127.0.0.1:{monitor_port}"
        vipmon = f"{pod_name}-vipmon"
        try:
            pm.wait_http(base + "/monitor", status=200, timeout=30)  # alone: master
        except AssertionError:
            print(podman.logs(vipmon))
            raise
        assert httpx.get(base + "/health/live", timeout=2).status_code == 200
        role = httpx.get(base + "/role", timeout=2).json()
        assert role["node"] == pod_name
        assert role["role"] == "MASTER"
        answer = httpx.get(f"http://127.0.0.1:{app_port}/", timeout=2).json()
        assert answer == {"node": pod_name}
        read_only = podman.run("exec", vipmon, "touch", "/opt/vipmon/x", check=False)
        assert read_only.returncode != 0, "the root filesystem should be read-only"
        assert podman.run("exec", vipmon, "id", "-u").stdout.strip() == ("0" if fenced else "10001")
        # What the sidecar's processes hold, and what libnftables can do in the pod's
        # own network namespace (podman kube play gives the pod one; not the host's).
        nft = pm.libnftables(
            podman, "exec", vipmon, "python3", commands="add table inet vipmon_probe"
        )
        print(nft)
        assert nft["cap_eff"] == (pm.CAP_NET_ADMIN if fenced else 0)
        assert (nft["rc"] == 0) is fenced, nft["error"]
    finally:
        down = podman.run("kube", "down", str(manifest), check=False, timeout=180)
        podman.run("pod", "rm", "-f", pod_name, check=False)
    assert down.returncode == 0, down.stderr
