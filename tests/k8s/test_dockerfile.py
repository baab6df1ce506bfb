"""dev.Dockerfile: its build stage is replayed here, step by step, in a clean directory and a
clean virtual environment per service: the COPY lines copy, and the RUN lines run the same
scripts/image-install.sh that the image build runs (no Docker engine is needed)."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ROOT

DOCKERFILE = ROOT / "dev.Dockerfile"
SERVICES = {
    "crawler": "crawler",
    "converter": "converter",
    "storer": "storer",
    "operator": "operator",
    "api": "api",
    "sim": "simulator",
}
DEV_TOOLS = ("pytest", "ruff", "mypy", "respx", "uv")


@dataclass(frozen=True)
class Step:
    instruction: str
    arguments: str


def build_stage() -> list[Step]:
    """The instructions of the Dockerfile's first (build) stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    steps: list[Step] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM" and any(s.instruction == "FROM" for s in steps):
            break
        steps.append(Step(instruction.upper(), arguments.strip()))
    return steps


def _ignored(relative: str) -> bool:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    parts = relative.split("/")
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        if any(fnmatch.fnmatch(part, bare) for part in parts) or fnmatch.fnmatch(relative, pattern):
            return True
    return False


def _copy(arguments: str, workdir: Path, bindir: Path) -> None:
    *sources, destination = shlex.split(arguments)
    assert not any(s.startswith("--") for s in sources), "build stage COPY takes no flags"
    for source in sources:
        src = ROOT / source
        if destination.startswith("/usr/local/bin/"):
            target = bindir / Path(destination).name
        else:
            target = workdir / destination
            if destination.endswith("/") or len(sources) > 1:
                target = target / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(
                src,
                target,
                dirs_exist_ok=True,
                ignore=lambda d, names: [
                    n for n in names if _ignored(str((Path(d) / n).relative_to(ROOT)))
                ],
            )
        else:
            shutil.copy2(src, target)


def replay(service: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """Run the build stage for ``service``; returns the environment and the commands run."""
    workdir, bindir, venv = tmp_path / "app", tmp_path / "bin", tmp_path / "venv"
    workdir.mkdir()
    bindir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    env |= {"SERVICE": service, "UV_PROJECT_ENVIRONMENT": str(venv)}
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    ran = []
    for step in build_stage():
        if step.instruction == "COPY":
            _copy(step.arguments, workdir, bindir)
        elif step.instruction == "RUN":
            command = re.sub(r"--mount=\S+\s*", "", step.arguments)
            if command.startswith("pip install") and "uv==" in command:
                continue  # uv itself: the test runs the uv of this machine
            done = subprocess.run(
                ["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            ran.append(command)
            if " deps " in f" {command} ":
                _assert_only_dependencies(venv, SERVICES[service])
    return venv, ran


def _imports(venv: Path, module: str) -> bool:
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import {module}"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def _assert_only_dependencies(venv: Path, package: str) -> None:
    """After the dependency layer: third-party packages, none of the workspace's own."""
    assert _imports(venv, "pydantic") and _imports(venv, "nats")
    assert not _imports(venv, f"fairprice.{package}")
    assert not _imports(venv, "fairprice.common")


def test_dockerfile_copies_every_workspace_member() -> None:
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"][
        "members"
    ]
    copies = [s.arguments.split()[0] for s in build_stage() if s.instruction == "COPY"]
    for member in members:  # uv needs every member's manifest to read the workspace
        assert f"{member}/pyproject.toml" in copies
    for member in ("common", "simulator", *(f"microservices/{s}" for s in SERVICES if s != "sim")):
        assert f"{member}/src" in copies
    runs = [s.arguments for s in build_stage() if s.instruction == "RUN"]
    assert [r.split("image-install ")[1].split()[0] for r in runs if "image-install" in r] == [
        "deps",
        "project",
    ]
    # The dependency layer comes before any source is copied.
    order = [s.arguments for s in build_stage() if s.instruction in ("COPY", "RUN")]
    deps = next(i for i, a in enumerate(order) if "image-install deps" in a)
    assert all("/src" not in a for a in order[:deps])


@pytest.mark.slow
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_dockerfile_install_steps_build_a_clean_environment(service: str, tmp_path: Path) -> None:
    venv, ran = replay(service, tmp_path)
    assert len(ran) == 2
    package = SERVICES[service]
    assert _imports(venv, f"fairprice.{package}") and _imports(venv, "fairprice.common")
    entry = venv / "bin" / "fairprice-service"
    assert entry.is_symlink()
    assert os.readlink(entry) == ("fairprice-sim" if service == "sim" else f"fairprice-{service}")
    assert (venv / "bin" / os.readlink(entry)).is_file()
    for other in set(SERVICES.values()) - {package}:
        assert not _imports(venv, f"fairprice.{other}"), f"{other} leaked into {service}"
    for tool in DEV_TOOLS:
        assert not (venv / "bin" / tool).exists(), f"dev tool {tool} in the image"
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import fairprice.common as c; print(c.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert located.startswith(str(venv)), "workspace packages must not be editable installs"
