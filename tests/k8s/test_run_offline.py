"""The offline chart (the simulator bundled, as `make all` with `[kubernetes] offline = true`)
run by the harness as a kubelet would: every pod Ready, `helm test` passing, fair prices of
every configured symbol in InfluxDB, and the chart's example MarketFeed Ready with a fair price
through the operator, which reaches kmock's API server with its service-account token.

One cluster serves the module; figures are printed (run with ``-s``)."""

from __future__ import annotations

import re
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from fairprice.common.testing import eventually
from fairprice.crawler.settings import CrawlerSettings

from .conftest import K8S, NAMESPACE, RELEASE, VALUE_SETS, by_kind, chart_crds, render_chart
from .harness import Cluster, Manifests, container_env
from .harness.manifests import write_volume
from .running import fair_price_counts, influx_url, load_pod_settings, running_cluster

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.asyncio(loop_scope="module"),
]

PRICES_WITHIN_S = 60.0


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render_chart(VALUE_SETS["offline"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    docs: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    workdir = tmp_path_factory.mktemp("offline")
    async with running_cluster(docs, workdir, "offline values", crds=chart_crds()) as cluster:
        yield cluster


async def test_every_pod_is_ready_and_helm_test_passes(cluster: Cluster) -> None:
    ready = {p.workload for p in cluster.running_pods() if p.ready}
    expected = {f"{RELEASE}-{s}" for s in ("crawler", "converter", "storer", "operator")}
    expected |= {f"{RELEASE}-simulator", f"{RELEASE}-nats", f"{RELEASE}-influxdb"}
    assert expected <= ready and all(p.ready for p in cluster.running_pods())
    assert [p.name for p in cluster.pods.values() if p.not_run] == [
        p.name for p in cluster.pods_of(f"{RELEASE}-grafana")
    ], "only Grafana does not run here"
    results = await cluster.run_hooks("test")
    assert list(results) == [f"{RELEASE}-test-readyz"]
    phase, log = results[f"{RELEASE}-test-readyz"]
    print(f"\nhelm test: {phase}\n{log}", file=sys.stderr)
    assert phase == "Succeeded", log
    services = ("crawler", "converter", "storer", "operator", "simulator")
    assert all(f"ready: {RELEASE}-{s}" in log for s in services) and "NOT READY" not in log


async def test_fair_prices_of_every_configured_symbol_are_stored(
    cluster: Cluster, docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The crawler's symbols (its defaults: SOLUSDT and XRPUSDT too, which the simulator now
    serves) each get fair prices in InfluxDB, read with the chart's InfluxDB credentials."""
    _, settings = load_pod_settings(docs, f"{RELEASE}-crawler", tmp_path)
    assert isinstance(settings, CrawlerSettings)
    symbols = set(settings.crawler.symbols)
    assert {"SOLUSDT", "XRPUSDT"} <= symbols
    url = influx_url(cluster)
    counts: dict[str, int] = {}

    async def every_symbol_priced() -> bool:
        counts.update(await fair_price_counts(url))
        return symbols <= set(counts)

    within = cluster.ready_at + PRICES_WITHIN_S - time.monotonic()
    await eventually(every_symbol_priced, within=within, interval=0.5, what="prices")
    took = time.monotonic() - cluster.ready_at
    print(f"\nfair_price points {counts}, {took:.1f} s after every pod was Ready", file=sys.stderr)


async def test_example_marketfeed_becomes_ready_with_a_fair_price(
    cluster: Cluster, docs: list[dict[str, Any]]
) -> None:
    """k8s/examples/sim.yaml applied to the API server: the operator (in its pod, through its
    service-account token) reports it Ready with a fair price, using only what its Role
    grants."""
    api = cluster.api_server
    assert api is not None
    feed = yaml.safe_load((K8S / "examples" / "sim.yaml").read_text())
    await api.create(feed, NAMESPACE)
    path = f"/apis/fairprice.io/v1alpha1/namespaces/{NAMESPACE}/marketfeeds/sim"
    status: dict[str, Any] = {}

    async def ready_with_price() -> bool:
        status.update(((await api.get(path)) or {}).get("status", {}))
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return conditions.get("Ready") == "True" and bool(status["summary"].get("fairPrice"))

    await eventually(ready_with_price, within=60, interval=0.5, what="MarketFeed sim Ready")
    print(f"\nMarketFeed sim: {status['summary']}", file=sys.stderr)
    (role,) = by_kind(docs, "Role").values()
    grants = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    used = api.requests()
    assert used and used <= grants, f"beyond the Role: {used - grants}"


async def test_grafana_provisioning_reaches_influxdb_with_the_secrets_credentials(
    cluster: Cluster, docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Grafana does not run here. Its datasource file, as mounted in its pod and expanded with
    its environment the way Grafana expands ``${VAR}``, names a Service that resolves to the
    running InfluxDB, and its user and password (from the chart's Secret) can read the
    pipeline's database there; the dashboards provider points at the mounted dashboards."""
    manifests = Manifests(NAMESPACE, list(docs))
    (template,) = (t for t in manifests.templates() if t.name == f"{RELEASE}-grafana")
    (container,) = template.spec["containers"]
    env = container_env(container, manifests, {"metadata.name": "grafana-0"})
    volumes = {v["name"]: v for v in template.spec["volumes"]}
    mounted: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            directory = tmp_path / mount["name"]
            write_volume(volume, manifests, directory)
            mounted[mount["mountPath"]] = directory

    def expand(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], text)

    provisioning = Path(env["GF_PATHS_PROVISIONING"])
    sources = mounted[str(provisioning / "datasources")]
    (datasource,) = yaml.safe_load(expand((sources / "influxdb.yaml").read_text()))["datasources"]
    url = urllib.parse.urlsplit(datasource["url"])
    assert url.hostname is not None and url.port == 8086
    (address,) = cluster.resolve(url.hostname)
    assert address == cluster.pods_of(f"{RELEASE}-influxdb")[0].address
    query = {"q": "SHOW DATABASES", "u": datasource["user"]}
    query["p"] = datasource["secureJsonData"]["password"]
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"http://{address}:{url.port}/query", params=query)
    assert response.status_code == 200, response.text
    assert [datasource["jsonData"]["dbName"]] in response.json()["results"][0]["series"][0][
        "values"
    ]
    providers_dir = mounted[str(provisioning / "dashboards")]
    providers = yaml.safe_load(expand((providers_dir / "fairprice.yaml").read_text()))
    (provider,) = providers["providers"]
    dashboards = mounted[provider["options"]["path"]]
    assert sorted(p.name for p in dashboards.glob("*.json")), "no dashboards mounted"
