"""README's quick start, followed literally on a clean clone.

The clean clone is the repository's tracked files (``git ls-files``, with their content in the
working tree: what a clone would hold once committed) copied to an empty folder: no .venv, no
.state, nothing ignored. Every ``make <target>`` that the quick start's code block names
(commands and the alternatives in their comments) must exist and dry-run (``make -n``; running
``make test`` inside the test suite would recurse). ``make demo`` is run for real: it must
install what it needs, start the whole pipeline against the simulator and store simulated data
in InfluxDB, and Ctrl-C must stop every process it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fairprice.cli.processes import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(240),  # servers, processes, outages: past the default 120 s
]

ROOT = Path(__file__).resolve().parents[2]
DEMO_DATA_WITHIN_S = 120.0
ALERT_WITHIN_S = 60.0


def quick_start_block(readme: str) -> list[str]:
    """The lines of the first code block under the "Quick start" heading."""
    section = readme.split("## Quick start", 1)[1]
    match = re.search(r"```[a-z]*\n(.*?)```", section, re.S)
    assert match, "no code block in the Quick start section"
    return [line for line in match.group(1).splitlines() if line.strip()]


def make_targets(lines: list[str]) -> list[str]:
    """Every ``make <target>`` of the block, in order, once."""
    found = [t for line in lines for t in re.findall(r"\bmake\s+([A-Za-z][\w-]*)", line)]
    return list(dict.fromkeys(found))


@pytest.fixture(scope="module")
def clean_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.fail("the quick-start test needs a git checkout (it copies the tracked files)")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    clone = tmp_path_factory.mktemp("clone")
    for name in filter(None, tracked):
        source = ROOT / os.fsdecode(name)
        target = clone / os.fsdecode(name)
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet committed
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return clone


def clean_env(**extra: str) -> dict[str, str]:
    """The user's environment without this test run's virtualenv or fairprice settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FAIRPRICE_", "PYTEST_", "UV_PROJECT_ENVIRONMENT"))
        and k != "VIRTUAL_ENV"
    }
    return env | extra


def test_quick_start_names_make_targets_that_exist_and_dry_run(clean_clone: Path) -> None:
    lines = quick_start_block((clean_clone / "README.md").read_text())
    commands = [line.split("#", 1)[0].strip() for line in lines]
    assert all(c.startswith("make ") for c in commands if c), commands
    targets = make_targets(lines)
    assert {"run", "demo", "test"} <= set(targets), targets
    for target in targets:
        dry = subprocess.run(
            ["make", "-n", target],
            cwd=clean_clone,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert dry.returncode == 0, f"make -n {target}:\n{dry.stdout}\n{dry.stderr}"
        assert dry.stdout.strip(), f"make -n {target} would do nothing"
    assert (clean_clone / ".venv").exists() is False, "a dry run must not install anything"


@contextlib.contextmanager
def _session(
    argv: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in its own process group (a terminal's foreground job); on exit, whatever
    is left of the group is killed."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _top_screen_until(text: bytes, cwd: Path, env: dict[str, str], within: float) -> bytes:
    """What ``make top`` draws on a terminal until ``text`` shows (then ``q`` quits it)."""
    controller, terminal = pty.openpty()
    top_env = {**env, "TERM": "xterm", "COLUMNS": "160", "LINES": "50"}
    process = subprocess.Popen(
        ["make", "top"],
        cwd=cwd,
        env=top_env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    screen = b""
    try:
        deadline = time.monotonic() + within
        while text not in screen:
            left = deadline - time.monotonic()
            assert left > 0, f"`make top` never showed {text!r}:\n{screen[-3000:]!r}"
            if select.select([controller], [], [], min(left, 1.0))[0]:
                screen += os.read(controller, 65536)
        os.write(controller, b"q")
        assert process.wait(timeout=30) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        os.close(controller)
    return screen


def _group_alive(process: subprocess.Popen[bytes]) -> bool:
    """``make`` or any process of its group still running (``make`` itself reaped)."""
    if process.poll() is None:
        return True
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _poll(
    done: Callable[[], bool], within: float, every: float, what: Callable[[], str], log: Path
) -> None:
    """Poll ``done`` until true; fail with ``what`` and the log's tail after ``within`` s."""
    for _ in range(int(within / every) + 1):
        if done():
            return
        time.sleep(every)
    pytest.fail(f"{what()} within {within:g}s:\n" + log.read_text(errors="replace")[-4000:])


def _stored(influx_url: str, measurement: str) -> int:
    with contextlib.suppress(httpx.HTTPError, KeyError, IndexError):
        response = httpx.get(
            influx_url + "/query",
            params={
                "db": "fair_price",
                "q": f"SELECT count(*) FROM \"{measurement}\" WHERE exchange = 'sim'",
            },
            timeout=5,
        )
        values = response.json()["results"][0]["series"][0]["values"][0]
        return int(max(v for v in values[1:] if v is not None))
    return 0


def _api_prices(port: int) -> int:
    """How many symbols the demo's price API lists (0 while it is not up)."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/v1/prices", timeout=5)
    except httpx.HTTPError:
        return 0
    return len(response.json()["prices"]) if response.status_code == 200 else 0


def test_make_demo_runs_the_pipeline_and_ctrl_c_stops_it(clean_clone: Path) -> None:
    """``make demo`` as the README says, with the ports moved off the defaults (this machine
    runs other things) through the documented ``FAIRPRICE_*`` variables."""
    nats_port, influx_port = free_port(), free_port()
    env = clean_env(
        FAIRPRICE_NATS__SERVERS=json.dumps([f"nats://127.0.0.1:{nats_port}"]),
        FAIRPRICE_INFLUX__URL=f"http://127.0.0.1:{influx_port}",
        FAIRPRICE_SIMULATOR__PORT=str(free_port()),
        FAIRPRICE_SIMULATOR__HTTP__PORT=str(free_port()),
        FAIRPRICE_CRAWLER__HTTP__PORT=str(free_port()),
        FAIRPRICE_CONVERTER__HTTP__PORT=str(free_port()),
        FAIRPRICE_STORER__HTTP__PORT=str(free_port()),
        FAIRPRICE_API__PORT=str(api_port := free_port()),
        FAIRPRICE_API__HTTP__PORT=str(free_port()),
    )
    log = clean_clone / "make-demo.log"
    # The reader that clusters_dev.toml names (a local run creates it with that password).
    influx = tomllib.loads((clean_clone / "clusters_dev.toml").read_text())["influx"]
    influx_url = f"http://{influx['username']}:{influx['password']}@127.0.0.1:{influx_port}"
    with _session(["make", "demo"], clean_clone, env, log) as make:
        started = time.monotonic()

        def stored() -> bool:
            assert _group_alive(make), "make demo ended:\n" + log.read_text(errors="replace")
            return all(_stored(influx_url, m) for m in ("orderbook", "fair_price"))

        _poll(stored, DEMO_DATA_WITHIN_S, 0.5, lambda: "no simulated data stored", log)
        _poll(lambda: _api_prices(api_port) > 0, 60, 0.5, lambda: "no price from the API", log)
        # The demo's market alerts fire within a minute of the simulated market (the seeded
        # walk moves BNBUSDT by its 0.02 % within 30 s after about 15 s): `make top`, in a
        # second terminal as the README says, lists them in its footer.
        screen = _top_screen_until(b"alert(s) firing", clean_clone, env, ALERT_WITHIN_S)
        assert b"fast-move" in screen
        print(
            f"\nmake demo: books and fair prices stored {time.monotonic() - started:.1f} s "
            "after `make demo` on a clean clone"
        )
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground group
        _poll(lambda: not _group_alive(make), 60, 0.2, lambda: "processes left after Ctrl-C", log)
    text = log.read_text(errors="replace")
    assert "services stopped" in text, text[-4000:]
    assert (clean_clone / ".state" / "nats").is_dir()
