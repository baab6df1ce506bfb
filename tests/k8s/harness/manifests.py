"""What a pod gets from the API server: its objects indexed, pod names, the environment with
``valueFrom`` resolved, and the files of its ConfigMap and Secret volumes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "Manifests",
    "PodTemplate",
    "container_env",
    "write_volume",
]

Obj = dict[str, Any]
_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class ConfigError(RuntimeError):
    """What Kubernetes reports as CreateContainerConfigError: a missing ConfigMap, Secret or key."""


@dataclass(frozen=True)
class PodTemplate:
    """A workload's pod: Deployment and StatefulSet templates, or a bare Pod (helm test hooks)."""

    kind: str
    name: str
    replicas: int
    labels: dict[str, str]
    spec: Obj
    service_name: str = ""
    """A StatefulSet's governing Service: pods are ``<name>-<i>.<service_name>``."""
    claims: tuple[Obj, ...] = ()
    """A StatefulSet's volumeClaimTemplates: a volume per pod that outlives the pod."""
    hook: str = ""
    """``helm.sh/hook`` of a bare Pod (``test``): not started by apply."""

    def pod_name(self, ordinal: int, serial: int) -> str:
        if self.kind == "StatefulSet":
            return f"{self.name}-{ordinal}"
        if self.kind == "Pod":
            return self.name
        digest = hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()
        return f"{self.name}-{digest[:10]}-{serial:05x}"


@dataclass
class Manifests:
    """Rendered objects by kind and name (one namespace)."""

    namespace: str
    docs: list[Obj]
    by_kind: dict[str, dict[str, Obj]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_kind = {}
        for doc in self.docs:
            self.by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    def add(self, docs: Iterable[Obj]) -> None:
        for doc in docs:
            self.docs.append(doc)
            self.by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    def get(self, kind: str, name: str) -> Obj | None:
        return self.by_kind.get(kind, {}).get(name)

    def templates(self) -> list[PodTemplate]:
        found = []
        for doc in self.docs:
            meta = doc["metadata"]
            if doc["kind"] in ("Deployment", "StatefulSet"):
                spec = doc["spec"]
                template = spec["template"]
                found.append(
                    PodTemplate(
                        doc["kind"],
                        meta["name"],
                        int(spec.get("replicas", 1)),
                        dict(template["metadata"].get("labels", {})),
                        template["spec"],
                        spec.get("serviceName", ""),
                        tuple(spec.get("volumeClaimTemplates", ())),
                    )
                )
            elif doc["kind"] == "Pod":
                hook = meta.get("annotations", {}).get("helm.sh/hook", "")
                found.append(
                    PodTemplate(
                        "Pod", meta["name"], 1, dict(meta.get("labels", {})), doc["spec"], hook=hook
                    )
                )
        return found

    def data(self, kind: str, name: str, optional: bool = False) -> dict[str, bytes] | None:
        """A ConfigMap's or Secret's keys as bytes (a Secret's ``data`` is base64)."""
        obj = self.get(kind, name)
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        out: dict[str, bytes] = {}
        if kind == "Secret":
            out.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
            out.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        else:
            out.update({k: v.encode() for k, v in (obj.get("data") or {}).items()})
            out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return out

    def key(self, kind: str, ref: Obj) -> str | None:
        found = self.data(kind, ref["name"], bool(ref.get("optional")))
        if found is None:
            return None
        if ref["key"] not in found:
            if ref.get("optional"):
                return None
            raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
        return found[ref["key"]].decode()


def container_env(container: Obj, manifests: Manifests, fields: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: ``envFrom`` first, then ``env`` in
    order (``value`` with ``$(VAR)`` expanded from earlier ones, ``valueFrom`` ConfigMap and
    Secret keys and ``fieldRef``s such as ``metadata.name`` and ``status.podIP``)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", ()):
        prefix = source.get("prefix", "")
        for kind, ref_key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if ref_key in source:
                ref = source[ref_key]
                data = manifests.data(kind, ref["name"], bool(ref.get("optional"))) or {}
                env.update({prefix + k: v.decode() for k, v in data.items()})
    for var in container.get("env", ()):
        name = var["name"]
        if "value" in var:
            env[name] = _REF.sub(lambda m: env.get(m[1], m[0]), str(var["value"]))
            continue
        source = var.get("valueFrom", {})
        value: str | None
        if "configMapKeyRef" in source:
            value = manifests.key("ConfigMap", source["configMapKeyRef"])
        elif "secretKeyRef" in source:
            value = manifests.key("Secret", source["secretKeyRef"])
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path not in fields:
                raise ConfigError(f"env {name}: fieldRef {path} is not supported here")
            value = fields[path]
        else:
            raise ConfigError(f"env {name}: {sorted(source)} is not supported here")
        if value is not None:
            env[name] = value
    return env


def write_volume(volume: Obj, manifests: Manifests, directory: Path) -> None:
    """The files of a ConfigMap or Secret volume (all keys, or ``items`` at their paths)."""
    for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
        if key not in volume:
            continue
        source = volume[key]
        name = source["name"] if kind == "ConfigMap" else source["secretName"]
        data = manifests.data(kind, name, bool(source.get("optional"))) or {}
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        mode = int(source.get("defaultMode", 0o644))
        for item in items:
            if item["key"] not in data:
                raise ConfigError(f"volume {volume['name']}: no key {item['key']} in {name}")
            target = directory / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[item["key"]])
            target.chmod(int(item.get("mode", mode)))
