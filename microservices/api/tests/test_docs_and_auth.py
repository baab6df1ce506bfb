"""The OpenAPI document (committed copy current), the docs page served from local assets and
rendered by headless Chromium with no network, and the optional bearer token."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from fairprice.api.openapi import render
from fairprice.common.testing import InfluxServer, NatsServer, nats_settings_of

from .conftest import Api, api_settings, running_api

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "s3cret-token"


@pytest_asyncio.fixture
async def api(nats_server: NatsServer, influxd: InfluxServer) -> AsyncIterator[Api]:
    async with running_api(
        api_settings(nats_settings_of(nats_server, "api"), influxd.admin_url, token=TOKEN)
    ) as running:
        yield running


def test_committed_openapi_document_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert committed == render(), "docs/openapi.json is stale: run `make openapi`"


async def test_openapi_served_equals_the_committed_document(api: Api) -> None:
    served = (await api.client.get("/openapi.json")).json()
    assert served == json.loads((ROOT / "docs" / "openapi.json").read_text())


async def test_docs_pages_load_their_assets_from_this_server(api: Api) -> None:
    for page in ("/docs", "/redoc"):
        html = (await api.client.get(page)).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources, page
        assert not [s for s in sources if re.match(r"(https?:)?//", s)], f"{page}: {sources}"
        for source in sources:
            asset = await api.client.get(source)
            assert asset.status_code == 200, source
            assert len(asset.content) > 100, source


async def test_bearer_token_guards_v1_only(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = await api.client.get("/v1/prices", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"] == "unauthorized"
    ok = await api.client.get("/v1/prices", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json() == {"prices": []}
    assert (await api.client.get("/docs")).status_code == 200
    async with httpx.AsyncClient(base_url=api.health_url) as health:
        assert (await health.get("/healthz")).status_code == 200


@pytest.mark.slow
def test_docs_page_in_headless_chromium_lists_every_endpoint(tmp_path: Path) -> None:
    """scripts/api_docs_screenshot.py, run as documented: Chromium with no network renders
    the page from the local assets and shows every path of the document."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "api_docs_screenshot.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "chromium is not installed" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every endpoint of the OpenAPI document is on the page (5)" in done.stdout
    assert (tmp_path / "api-docs.png").stat().st_size > 10_000
    dom = (tmp_path / "api-docs.html").read_text()
    for path in ("/v1/prices", "/v1/candles/{exchange}/{symbol}", "/v1/stream"):
        assert f'data-path="{path}"' in dom
