"""The influxdb:1.8 image's entrypoint for the harness (its entrypoint.sh and init-influxdb.sh):
on the first start (no meta data yet) and with ``INFLUXDB_ADMIN_USER`` or ``INFLUXDB_DB`` set,
run ``influxd`` on a private init address, create the admin user and the database, stop it;
then ``exec`` the command (``influxd``), which reads its ``INFLUXDB_*`` settings from the
environment as in the image.

``INFLUXD_INIT_ADDRESS`` is where the init-time server listens (the image uses the pod's
localhost, which the harness's pods share, so the harness gives another port of the pod's
address; probes on 8086 fail until init is done, as in the image)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from fairprice.common.lifecycle import die_with_parent

META = Path("/var/lib/influxdb/meta/meta.db")


def _query(address: str, q: str, user: str = "", password: str = "") -> None:
    login = "?" + urllib.parse.urlencode({"u": user, "p": password}) if user else ""
    data = urllib.parse.urlencode({"q": q}).encode()
    with urllib.request.urlopen(
        f"http://{address}/query{login}", data=data, timeout=10
    ) as response:
        body = response.read().decode()
    if '"error"' in body:
        raise SystemExit(f"influxdb init: {q.split(' WITH')[0]}: {body}")


def _init() -> None:
    address = os.environ["INFLUXD_INIT_ADDRESS"]
    env = {**os.environ, "INFLUXDB_HTTP_BIND_ADDRESS": address}
    server = subprocess.Popen(["influxd"], env=env, preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/ping", timeout=2).close()
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("influxdb init: influxd did not start") from None
                time.sleep(0.1)
        user = os.environ.get("INFLUXDB_ADMIN_USER", "")
        password = os.environ.get("INFLUXDB_ADMIN_PASSWORD", "")
        if user:
            quoted = password.replace("\\", "\\\\").replace("'", "\\'")
            _query(address, f"CREATE USER \"{user}\" WITH PASSWORD '{quoted}' WITH ALL PRIVILEGES")
        database = os.environ.get("INFLUXDB_DB")
        if database:
            _query(address, f'CREATE DATABASE "{database}"', user, password)
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    command = sys.argv[1:] or ["influxd"]
    first = not META.exists()
    wanted = os.environ.get("INFLUXDB_ADMIN_USER") or os.environ.get("INFLUXDB_DB")
    if command[0] == "influxd" and first and wanted:
        _init()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
