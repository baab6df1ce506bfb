"""Images as the programs installed here: what a container's image would run.

- ``fairprice-<service>`` (dev.Dockerfile): its ENTRYPOINT ``/app/.venv/bin/fairprice-service``
  is a link to the service's console script (scripts/image-install.sh), here the workspace's
  ``.venv/bin/fairprice-<service>`` (``fairprice-sim`` for the simulator), with the image's ENV.
- ``nats``: the ``nats-server`` on PATH, with the spec's command and its mounted config.
- ``influxdb``: the image's entrypoint (create the admin user and database on first start,
  then ``influxd``), as ``influxdb_entrypoint.py`` around the ``influxd`` installed here.
- ``busybox`` (the ``helm test`` pod): the spec's command with this machine's ``sh`` and ``wget``.
- ``grafana``: not installed here; not run (tests/k8s/test_grafana_wiring.py checks it instead).

Pods share this machine's network namespace, where a Kubernetes pod has its own: two pods
listening on 0.0.0.0:8080 would collide. So each server is told to listen on its pod's address
instead of all addresses (``listen_env`` / ``listen_args``), the one change the harness makes to
what the spec says.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NOT_RUNNABLE", "Program", "program"]

VENV_BIN = Path(sys.executable).parent
ENTRYPOINT_INFLUXDB = Path(__file__).with_name("influxdb_entrypoint.py")
NOT_RUNNABLE = ("grafana",)
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH of the third-party images (Debian puts nats-server in /usr/sbin)."""


@dataclass(frozen=True)
class Program:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    """The image's ENV, under the spec's env."""
    listen_env: dict[str, str] = field(default_factory=dict)
    """Listen on the pod's address (over the spec's env)."""


def repository(image: str) -> str:
    """``docker.io/library/nats:2.10`` -> ``nats``; ``fairprice-sim:dev`` -> ``fairprice-sim``."""
    last = image.rsplit("/", 1)[-1]
    return last.split("@", 1)[0].split(":", 1)[0]


def _which(name: str) -> str:
    found = shutil.which(name, path=f"{VENV_BIN}:{IMAGE_PATH}")
    if found is None:
        raise FileNotFoundError(f"{name}: not installed here")
    return found


def program(container: dict[str, Any], address: str, config_text: str = "") -> Program | None:
    """What to run for ``container`` on ``address``; None for an image that cannot run here.
    ``config_text``: the text of its mounted config files (NATS: is it a cluster node?)."""
    repo = repository(container["image"])
    command: list[str] = list(container.get("command") or [])
    args: list[str] = list(container.get("args") or [])
    if repo in NOT_RUNNABLE:
        return None
    if repo.startswith("fairprice-"):
        service = repo.removeprefix("fairprice-")
        script = "fairprice-sim" if service == "sim" else repo
        section = "SIMULATOR" if service == "sim" else service.upper()
        image_env = {
            "PATH": f"{VENV_BIN}:{IMAGE_PATH}",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "FAIRPRICE_SERVICE": service,
        }
        listen = {f"FAIRPRICE_{section}__HTTP__HOST": address}
        if service == "sim":
            listen["FAIRPRICE_SIMULATOR__HOST"] = address
        if service == "api":  # the API's own port beside the health port
            listen["FAIRPRICE_API__HOST"] = address
        argv = (
            [_resolve(c) for c in command[:1]] + command[1:]
            if command
            else [str(VENV_BIN / script)]
        )
        return Program(argv + args, image_env, listen)
    if repo == "nats":
        argv = [_resolve(command[0]), *command[1:], *args] if command else [_which("nats-server")]
        argv += ["--addr", address]
        if re.search(r"^\s*cluster\s*[{:]", config_text, re.MULTILINE):
            argv += ["--cluster_listen", f"nats://{address}:6222"]
        return Program(argv, {"PATH": IMAGE_PATH})
    if repo == "influxdb":
        argv = [sys.executable, str(ENTRYPOINT_INFLUXDB), *(command or []), *(args or ["influxd"])]
        listen = {
            "INFLUXDB_HTTP_BIND_ADDRESS": f"{address}:8086",
            "INFLUXDB_BIND_ADDRESS": f"{address}:8088",
            "INFLUXD_INIT_ADDRESS": f"{address}:8089",
        }
        return Program(argv, {"PATH": IMAGE_PATH}, listen)
    if repo == "busybox":
        return Program([_resolve(command[0]), *command[1:], *args], {"PATH": IMAGE_PATH})
    raise ValueError(f"image {container['image']}: the harness does not know what it runs")


def _resolve(name: str) -> str:
    return name if "/" in name else _which(name)
