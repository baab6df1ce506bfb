"""The commands as a user types them: `fairprice ...` and `fairprice-<service>`, each case with
its exact exit code and the one line it prints."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from fairprice.common.messages import Book, decode
from fairprice.common.testing import NatsServer, nats_env_of, recordings_dir
from fairprice.crawler.binance import Binance
from fairprice.crawler.recording import TRAFFIC_FILE, Format, read_recording
from fairprice.crawler.replay import Replayer

BIN = Path(sys.executable).parent
OCT = recordings_dir() / "cryptofeed-binance-2021-10-11"
OCT_SYMBOLS = ("BLZETH", "LRCBTC", "NKNUSDT", "RUNEEUR")
SERVICES = ("crawler", "converter", "storer", "operator")


def _env(**values: str) -> dict[str, str]:
    """The caller's environment without any FAIRPRICE_* setting, plus ``values``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAIRPRICE_")}
    return {**clean, "FAIRPRICE_LOG__FORMAT": "json", **values}


def _run(command: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / command), *args],
        cwd=cwd,  # no clusters_dev.toml there
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _last_event(stderr: str) -> dict[str, object]:
    return json.loads(stderr.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- fairprice --help ------------------------------------------------------------------------


@pytest.mark.parametrize("subcommand", ["run", "demo", "top", "status", "replay"])
def test_every_subcommand_has_help(subcommand: str, tmp_path: Path) -> None:
    done = _run("fairprice", subcommand, "--help", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"usage: fairprice {subcommand} ")


def test_replay_help_lists_its_options(tmp_path: Path) -> None:
    done = _run("fairprice", "replay", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for option in ("--format {fairprice,cryptofeed}", "--every-event", "--depth", "DIR"):
        assert option in done.stdout


# -- fairprice replay ------------------------------------------------------------------------


def _books(stdout: str) -> list[Book]:
    return [decode(line.encode(), Book) for line in stdout.splitlines()]


def _expected(every_event: bool = False) -> list[Book]:
    replayer = Replayer(Binance(), every_event=every_event)
    return list(replayer.run(read_recording(OCT, Format.CRYPTOFEED)))


def test_replay_cryptofeed_in_the_readme_order(tmp_path: Path) -> None:
    done = _run("fairprice", "replay", "--format", "cryptofeed", str(OCT), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _books(done.stdout) == _expected()
    assert (
        "NKNUSDT: synced update_id=499870179 events=150 applied=149 dropped=1 resyncs[initial=1]"
        " known bids=614 asks=994 edge bids=whole asks=0.55060000"
    ) in done.stderr.splitlines()


@pytest.fixture
def fairprice_recording(tmp_path: Path) -> Path:
    """The October session in fairprice's own format (as `fairprice-crawler --record` writes)."""
    directory = tmp_path / "rec"
    directory.mkdir()
    encode = msgspec.json.Encoder().encode
    with (directory / TRAFFIC_FILE).open("wb") as out:
        for record in read_recording(OCT, Format.CRYPTOFEED):
            out.write(encode(record) + b"\n")
    return directory


def test_replay_every_event_option_before_the_directory(
    fairprice_recording: Path, tmp_path: Path
) -> None:
    every = _run("fairprice", "replay", "--every-event", str(fairprice_recording), cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    assert _books(every.stdout) == _expected(every_event=True)
    assert len(_expected(every_event=True)) > len(_expected())


def _copy_of_oct(tmp_path: Path, rewrite_http: bool) -> Path:
    directory = tmp_path / "copy"
    shutil.copytree(OCT, directory)
    for path in directory.glob("*.http.*"):
        if rewrite_http:  # as cryptofeed fetched snapshots in early 2021
            text = path.read_text().replace(
                "https://api.binance.com/api/v3/depth", "https://www.binance.com/api/v1/depth"
            )
            assert "/api/v1/depth" in text
            path.write_text(text)
        else:
            path.unlink()
    return directory


def test_replay_takes_v1_depth_snapshots_on_the_www_host(tmp_path: Path) -> None:
    directory = _copy_of_oct(tmp_path, rewrite_http=True)
    done = _run("fairprice", "replay", "--format", "cryptofeed", str(directory), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _books(done.stdout) == _expected()


def test_replay_without_snapshots_says_so_and_fails(tmp_path: Path) -> None:
    directory = _copy_of_oct(tmp_path, rewrite_http=False)
    done = _run("fairprice", "replay", "--format", "cryptofeed", str(directory), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        f"fairprice replay: no depth snapshot in {directory} for {', '.join(OCT_SYMBOLS)}: "
        "nothing of them replayed"
    )


# -- bad settings ----------------------------------------------------------------------------

BAD_VARIABLES = [
    (
        "FAIRPRICE_NATS__SERVERS",
        "nats://x:4222",
        """nats.servers (env FAIRPRICE_NATS__SERVERS; no config file): expected JSON such as """
        """["a", "b"], got 'nats://x:4222'""",
    ),
    (
        "FAIRPRICE_CRAWLR__DEPTH",
        "5",
        "crawlr.depth (env FAIRPRICE_CRAWLR__DEPTH; no config file): unknown section; "
        "did you mean 'crawler'?",
    ),
    (
        "FAIRPRICE_NATS__SERVER",
        '["nats://x:4222"]',
        "nats.server (env FAIRPRICE_NATS__SERVER; no config file): unknown setting; "
        "did you mean 'servers'?",
    ),
    (
        "FAIRPRICE_LOG__LEVEL",
        "LOUD",
        "log.level (env FAIRPRICE_LOG__LEVEL; no config file): Input should be 'DEBUG', "
        "'INFO', 'WARNING' or 'ERROR', got 'LOUD'",
    ),
]


@pytest.mark.parametrize(
    ("command", "variable", "value", "line"),
    # every bad variable with one service, and the first with every other command
    [("fairprice-crawler", *bad) for bad in BAD_VARIABLES]
    + [(command, *BAD_VARIABLES[0]) for command in ("fairprice-converter", "fairprice-storer")]
    + [(command, *BAD_VARIABLES[0]) for command in ("fairprice-operator", "fairprice")],
)
def test_bad_variable_exits_2_with_one_line_naming_it(
    command: str, variable: str, value: str, line: str, tmp_path: Path
) -> None:
    args = ("status",) if command == "fairprice" else ()
    done = _run(command, *args, cwd=tmp_path, **{variable: value})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"{command}: invalid setting {line}"]


@pytest.mark.parametrize("service", SERVICES)
def test_misspelt_setting_of_the_service_itself(service: str, tmp_path: Path) -> None:
    variable = f"FAIRPRICE_{service.upper()}__HTTP__PROT"
    done = _run(f"fairprice-{service}", cwd=tmp_path, **{variable: "1"})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"fairprice-{service}: invalid setting {service}.http.prot (env {variable}; "
        "no config file): unknown setting; did you mean 'port'?"
    ]


# -- stopping and starting -------------------------------------------------------------------


_NO_NATS = ('"event": "waiting for nats"', '"event": "nats error"')


@pytest.mark.parametrize("service", SERVICES)
def test_sigterm_while_nats_is_unreachable_stops_with_exit_0(service: str, tmp_path: Path) -> None:
    env = _env(
        FAIRPRICE_NATS__SERVERS=f'["nats://127.0.0.1:{_free_port()}"]',
        FAIRPRICE_NATS__RECONNECT_WAIT_S="0.2",
        **{f"FAIRPRICE_{service.upper()}__HTTP__PORT": "0"},
    )
    with subprocess.Popen(
        [str(BIN / f"fairprice-{service}")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        # Read log lines until the service has failed to reach NATS (the test's timeout
        # bounds this).
        while not any(event in (line := proc.stderr.readline()) for event in _NO_NATS):
            assert line, "the service exited before it tried NATS"
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "Traceback" not in rest
    last = _last_event(rest)
    assert (last["event"], last["reason"]) == ("stopped", "stopped before NATS was reachable")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("service", SERVICES)
def test_busy_port_exits_2_with_one_line(service: str, busy_port: int, tmp_path: Path) -> None:
    section = f"FAIRPRICE_{service.upper()}__HTTP"
    done = _run(
        f"fairprice-{service}",
        cwd=tmp_path,
        **{f"{section}__HOST": "127.0.0.1", f"{section}__PORT": str(busy_port)},
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    event = json.loads(lines[0])
    assert (event["event"], event["kind"]) == ("fatal error", "SettingsError")
    assert event["error"] == (
        f"http.port {busy_port}: cannot listen on 127.0.0.1:{busy_port}: address already in use"
    )


# -- fairprice top ---------------------------------------------------------------------------


def test_top_quits_on_q(nats_server: NatsServer, tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "fairprice"), "top"],
        cwd=tmp_path,
        env=_env(**nats_env_of(nats_server, "viewer"), TERM="xterm", COLUMNS="120"),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    )
    os.close(terminal)
    try:
        screen = b""
        while b"symbol" not in screen:  # the board is drawn (the test's timeout bounds this)
            screen += os.read(controller, 4096)
        os.write(controller, b"q")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
        os.close(controller)
