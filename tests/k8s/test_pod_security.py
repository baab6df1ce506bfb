"""Every pod of every rendering passes the ``restricted`` Pod Security Standard that the
namespace enforces (scripts/cluster.sh, k8s/base/namespace.yaml), checked rule by rule as the
admission controller checks them (Kubernetes' Pod Security Standards, restricted = baseline +
the restricted controls)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .conftest import VALUE_SETS, kustomize, pod_specs, render_chart

RENDERINGS = [f"chart:{name}" for name in sorted(VALUE_SETS)] + [
    "kustomize:overlays/dev",
    "kustomize:overlays/dev-offline",
]
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What the restricted profile refuses in a pod spec (empty: admitted)."""
    found: list[str] = []
    pod_sc = pod.get("securityContext", {})
    containers = [
        *pod.get("initContainers", []),
        *pod["containers"],
        *pod.get("ephemeralContainers", []),
    ]
    # baseline
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            found.append(f"{host}: true")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if "hostPath" in kinds:
            found.append(f"volume {volume['name']}: hostPath")
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: {sorted(kinds - RESTRICTED_VOLUMES)}")
    for sysctl in pod_sc.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl['name']}")
    if pod_sc.get("windowsOptions", {}).get("hostProcess"):
        found.append("hostProcess")
    contexts = [("pod", pod_sc)]
    for c in containers:
        sc = c.get("securityContext", {})
        name = f"container {c['name']}"
        contexts.append((name, sc))
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount {sc['procMount']}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            found.append(f"{name}: hostPort")
        # restricted
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            found.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {caps['add']}")
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            found.append(f"{name}: runAsNonRoot must be true")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        apparmor = sc.get("appArmorProfile", {}).get("type", "RuntimeDefault")
        if apparmor not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: appArmorProfile {apparmor}")
    for where, sc in contexts:
        if sc.get("runAsUser") == 0:
            found.append(f"{where}: runAsUser 0")
        selinux = sc.get("seLinuxOptions", {})
        if (
            selinux.get("type", "") not in SELINUX_TYPES
            or selinux.get("user")
            or selinux.get("role")
        ):
            found.append(f"{where}: seLinuxOptions {selinux}")
    return found


def _docs(rendering: str) -> list[dict[str, Any]]:
    source, name = rendering.split(":", 1)
    return render_chart(VALUE_SETS[name]) if source == "chart" else kustomize(name)


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_pod_passes_the_restricted_profile(rendering: str) -> None:
    pods = list(pod_specs(_docs(rendering)))
    assert len(pods) >= 5
    for where, pod in pods:
        assert restricted_violations(pod) == [], where


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (lambda p: p["securityContext"].update(runAsUser=0), "runAsUser 0"),
        (lambda p: p["containers"][0]["securityContext"].pop("capabilities"), "drop ALL"),
        (lambda p: p.update(hostNetwork=True), "hostNetwork"),
        (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
        (
            lambda p: p["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
            "allowPrivilegeEscalation",
        ),
    ],
)
def test_the_check_refuses_what_the_profile_refuses(change: Any, refused: str) -> None:
    (pod,) = (p for w, p in pod_specs(render_chart({})) if w == "Deployment/fairprice-storer")
    pod = copy.deepcopy(pod)
    change(pod)
    assert any(refused in v for v in restricted_violations(pod))
