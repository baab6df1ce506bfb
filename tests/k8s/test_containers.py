"""Every container, in every rendering of the chart and of kustomize, has probes, resources and
the security settings: non-root, read-only root filesystem, no privilege escalation, and a
bounded graceful termination."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import SERVICES, VALUE_SETS, kustomize, pod_specs, render_chart

RENDERINGS = [f"chart:{name}" for name in sorted(VALUE_SETS)] + [
    "kustomize:overlays/dev",
    "kustomize:overlays/dev-offline",
]


def _docs(rendering: str) -> list[dict[str, Any]]:
    source, name = rendering.split(":", 1)
    return render_chart(VALUE_SETS[name]) if source == "chart" else kustomize(name)


def _containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for where, pod in pod_specs(docs):
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield f"{where}/{container['name']}", pod, container


def _is_helm_test(docs: list[dict[str, Any]], where: str) -> bool:
    return any(
        d["kind"] == "Pod"
        and where.startswith(f"Pod/{d['metadata']['name']}/")
        and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
        for d in docs
    )


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_container_is_probed_bounded_and_locked_down(rendering: str) -> None:
    docs = _docs(rendering)
    checked = 0
    for where, pod, container in _containers(docs):
        checked += 1
        pod_security = pod.get("securityContext", {})
        security = container.get("securityContext", {})
        assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, where
        assert security.get("readOnlyRootFilesystem") is True, where
        assert security.get("allowPrivilegeEscalation") is False, where
        assert security.get("capabilities", {}).get("drop") == ["ALL"], where
        assert isinstance(pod.get("terminationGracePeriodSeconds"), int), where
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
        assert "memory" in resources.get("limits", {}), where
        if _is_helm_test(docs, where):
            continue  # a run-once check pod: probes have nothing to watch
        assert "livenessProbe" in container and "readinessProbe" in container, where
    assert checked >= 4


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_fairprice_services_probe_healthz_and_readyz_on_their_http_port(rendering: str) -> None:
    found = set()
    for where, _, container in _containers(_docs(rendering)):
        name = container["name"]
        if name not in (*SERVICES, "simulator"):
            continue
        found.add(name)
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert {"name": "http", "containerPort": 8080} in container["ports"], where
    assert found >= {"crawler", "converter", "storer"}
