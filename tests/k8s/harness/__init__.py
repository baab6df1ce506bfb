"""Rendered Kubernetes manifests run the way a kubelet would, as local processes: see
docs/kubernetes.md ("The harness") for how pods, names and probes are mapped."""

from .apiserver import KubeApi
from .cluster import Cluster
from .kubelet import Container, Pod
from .manifests import ConfigError, Manifests, container_env

__all__ = ["KubeApi", "ConfigError", "Cluster", "Container", "Manifests", "Pod", "container_env"]
