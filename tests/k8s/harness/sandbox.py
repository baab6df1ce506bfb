"""A container's view of the filesystem: a private mount namespace per process in which the
pod's volumes are bind-mounted at their mountPaths (so /etc/fairprice/config.toml is where the
spec says), and /etc/hosts and /etc/resolv.conf are the pod's. Then a session of its own and
the parent-death signal, so nothing outlives the harness.

Needs root (CAP_SYS_ADMIN) for the mounts. The process stays root: the workspace's Python
lives under /root here, which no other user may enter, so runAsUser cannot be honoured (the
securityContexts are checked against the restricted profile instead, tests/k8s/test_pss.py).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fairprice.common.lifecycle import die_with_parent

__all__ = ["Sandbox"]

_CLONE_NEWNS = 0x00020000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18


@dataclass
class Sandbox:
    binds: list[tuple[Path, str]] = field(default_factory=list)
    """(host path, path in the container) in mount order."""

    def bind(self, source: Path, target: str) -> None:
        self.binds.append((source, target))

    def ordered(self) -> list[tuple[Path, str]]:
        """A mount that would hide the source of another (``/tmp`` over a pod root in /tmp)
        comes after it."""

        def hides(target: str) -> bool:
            return any(
                str(src) == target or str(src).startswith(target.rstrip("/") + "/")
                for src, _ in self.binds
            )

        return [b for b in self.binds if not hides(b[1])] + [b for b in self.binds if hides(b[1])]

    def prepare(self) -> None:
        """Create the mount points that the host lacks (a runtime does it in the image's root)."""
        for source, target in self.binds:
            path = Path(target)
            if path.exists():
                continue
            if source.is_dir():
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()

    def hidden(self) -> list[str]:
        """What the image would hold but a volume hides here: the workspace (its environment
        and the members' sources it installs in editable mode) and Python (an image has them in
        its own root; a clone under /tmp sits below a pod's /tmp emptyDir), to be bound back on
        top."""
        workspace = os.path.dirname(sys.prefix)  # <workspace>/.venv
        keep = {os.path.realpath(p) for p in (workspace, sys.base_prefix)}
        return sorted(
            path
            for path in keep
            if any(path.startswith(target.rstrip("/") + "/") for _, target in self.binds)
        )

    def preexec(self) -> Callable[[], None]:
        binds = [(os.fsencode(s), os.fsencode(t)) for s, t in self.ordered()]
        hidden = self.hidden()

        def enter() -> None:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            if libc.unshare(_CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
            if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
                raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
            # Handles on what the binds will hide, taken in this namespace (a bind from a mount
            # of another namespace is refused) while it is still reachable.
            kept = [(os.open(path, os.O_PATH | os.O_DIRECTORY), path) for path in hidden]
            for source, target in binds:
                if libc.mount(source, target, None, _MS_BIND, None) != 0:
                    raise OSError(ctypes.get_errno(), f"mount --bind {source!r} {target!r}")
            for fd, path in kept:
                os.makedirs(path, exist_ok=True)  # inside the volume that hid it
                source = os.fsencode(f"/proc/self/fd/{fd}")
                if libc.mount(source, os.fsencode(path), None, _MS_BIND, None) != 0:
                    raise OSError(ctypes.get_errno(), f"mount --bind (kept) {path!r}")
                os.close(fd)
            os.setsid()
            die_with_parent()

        return enter
