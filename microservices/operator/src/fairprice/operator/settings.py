"""The operator's settings: the ``[operator]`` table of the config file."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import Field

from fairprice.common.settings import HttpSettings, Section, ServiceSettings

__all__ = ["ALL_NAMESPACES", "POD_NAMESPACE_ENV", "OperatorSection", "OperatorSettings"]

ALL_NAMESPACES = "*"
POD_NAMESPACE_ENV = "POD_NAMESPACE"


class OperatorSection(Section):
    namespaces: list[str] = []
    """Namespaces whose MarketFeeds the operator handles. Empty: its own namespace
    (``$POD_NAMESPACE``, set by the chart and the kustomize base: what its namespaced Role
    allows), or every namespace when that is not set (a local run). ``["*"]``: every namespace,
    which needs a ClusterRole instead of the Role."""
    status_interval_s: float = Field(default=5.0, gt=0)
    """How often each MarketFeed's status is refreshed from the ``latest`` KV bucket."""
    stale_after_s: float = Field(default=30.0, gt=0)
    """A symbol whose latest fair price is older than this is reported stale (Degraded)."""
    api_server: str | None = None
    """Kubernetes API URL reached without credentials (``kubectl proxy``, a test emulator);
    unset: the pod's service account, else the local kubeconfig."""
    http: HttpSettings = HttpSettings(port=8084)

    def watched_namespaces(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """The namespaces to watch; empty: every namespace."""
        if self.namespaces == [ALL_NAMESPACES]:
            return []
        if self.namespaces:
            return list(self.namespaces)
        own = (os.environ if environ is None else environ).get(POD_NAMESPACE_ENV, "")
        return [own] if own else []


class OperatorSettings(ServiceSettings):
    operator: OperatorSection = OperatorSection()
