"""scripts/cluster.sh (`make all` / `make stop`): the parts that need no cluster, run for real:
cluster detection from the kubectl context, and a missing tool stopping with what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, kubectl_binary

SCRIPT = ROOT / "scripts" / "cluster.sh"


def _kubeconfig(tmp_path: Path, context: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:6443"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: {context}, context: {{cluster: c, user: u}}}}]
current-context: {context}
"""
    )
    return path


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("context", "detected"),
    [
        ("kind-fairprice", "kind fairprice"),
        ("k3d-dev", "k3d dev"),
        ("minikube", "minikube minikube"),
        ("docker-desktop", "docker-desktop docker-desktop"),
    ],
)
def test_cluster_is_detected_from_the_kubectl_context(
    context: str, detected: str, tmp_path: Path
) -> None:
    kubectl_dir = str(Path(kubectl_binary()).parent)
    env = {**os.environ, "KUBECONFIG": str(_kubeconfig(tmp_path, context))}
    env["PATH"] = f"{kubectl_dir}{os.pathsep}{env['PATH']}"
    env.pop("FAIRPRICE_CLUSTER", None)
    done = _run(["detect"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == detected


def test_unknown_context_stops_with_advice(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(_kubeconfig(tmp_path, "prod-eu"))}
    env.pop("FAIRPRICE_CLUSTER", None)
    done = _run(["detect"], env)
    assert done.returncode != 0
    assert "FAIRPRICE_CLUSTER=registry" in done.stderr


def test_missing_tool_stops_with_what_to_install(tmp_path: Path) -> None:
    """With no docker on PATH, `make all` names it before doing anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "python3", "dirname"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(bin_dir), "KUBECONFIG": str(_kubeconfig(tmp_path, "kind-x"))}
    done = _run(["up"], env)
    assert done.returncode != 0
    assert "docker is missing: install Docker" in done.stderr


def test_make_all_namespace_enforces_the_restricted_pod_security_standard(
    tmp_path: Path,
) -> None:
    """`up` applies this Namespace before `helm upgrade --install` (which then no longer creates
    it with `--create-namespace`, which would leave it unlabelled); the labels are those of
    k8s/base/namespace.yaml."""
    kubectl_dir = str(Path(kubectl_binary()).parent)
    env = {**os.environ, "KUBECONFIG": str(_kubeconfig(tmp_path, "kind-x"))}
    env["PATH"] = f"{kubectl_dir}{os.pathsep}{env['PATH']}"
    done = _run(["namespace"], env)
    assert done.returncode == 0, done.stderr
    namespace = yaml.safe_load(done.stdout)
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == "fairprice"
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    base = yaml.safe_load((ROOT / "k8s" / "base" / "namespace.yaml").read_text())
    pss = {k: v for k, v in base["metadata"]["labels"].items() if k.startswith("pod-security")}
    assert pss.items() <= labels.items()
    script = SCRIPT.read_text()
    assert "--create-namespace" not in script
    assert 'namespace_manifest "$namespace" | kubectl apply -f -' in script
