"""The operator's settings: the ``[operator]`` table of the config file."""

from __future__ import annotations

from pydantic import Field

from fairprice.common.settings import HttpSettings, Section, ServiceSettings

__all__ = ["OperatorSection", "OperatorSettings"]


class OperatorSection(Section):
    namespaces: list[str] = []
    """Namespaces whose MarketFeeds the operator handles; empty: every namespace (cluster-wide,
    which needs a ClusterRole instead of a Role per namespace)."""
    status_interval_s: float = Field(default=5.0, gt=0)
    """How often each MarketFeed's status is refreshed from the ``latest`` KV bucket."""
    stale_after_s: float = Field(default=30.0, gt=0)
    """A symbol whose latest fair price is older than this is reported stale (Degraded)."""
    api_server: str | None = None
    """Kubernetes API URL reached without credentials (``kubectl proxy``, a test emulator);
    unset: the pod's service account, else the local kubeconfig."""
    http: HttpSettings = HttpSettings(port=8084)


class OperatorSettings(ServiceSettings):
    operator: OperatorSection = OperatorSection()
