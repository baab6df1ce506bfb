"""The shape of the storer's InfluxDB requests (respx, for the API the real influxd 1.x lacks)
and how each answer is classified."""

from __future__ import annotations

import base64

import httpx
import pytest
import respx
from pydantic import SecretStr

from fairprice.common.errors import SettingsError
from fairprice.common.settings import InfluxSettings
from fairprice.storer.influx import InfluxUnavailableError, InfluxWriter, PointsRejectedError

URL = "http://influx.test:8086"
BODY = b"orderbook,exchange=sim,symbol=AAA update_id=1i,bid_price_0=5 1700000000000"


@respx.mock(assert_all_called=True)
async def test_v2_write_request_shape(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{URL}/api/v2/write").mock(return_value=httpx.Response(204))
    settings = InfluxSettings(
        url=URL, api="v2", org="acme", bucket="prices", token=SecretStr("s3cret")
    )
    async with InfluxWriter(settings) as influx:
        await influx.ensure_database()  # v2: the bucket exists; no request at all
        await influx.write(BODY)
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == "/api/v2/write"
    assert dict(request.url.params) == {"org": "acme", "bucket": "prices", "precision": "ms"}
    assert request.headers["Authorization"] == "Token s3cret"
    assert request.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert request.content == BODY
    assert route.call_count == 1


@respx.mock(assert_all_called=True)
async def test_v1_write_with_user_and_password(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{URL}/write").mock(return_value=httpx.Response(204))
    settings = InfluxSettings(url=URL, username="writer", password=SecretStr("pw"))
    async with InfluxWriter(settings) as influx:
        await influx.write(BODY)
    request = route.calls.last.request
    assert dict(request.url.params) == {"db": "fair_price", "rp": "fairprice", "precision": "ms"}
    expected = base64.b64encode(b"writer:pw").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert "pw" not in str(request.url)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, "server_error"), (503, "server_error"), (401, "auth"), (404, "not_found")],
)
@respx.mock
async def test_unavailable_answers_are_retried_not_rejected(
    respx_mock: respx.MockRouter, status: int, kind: str
) -> None:
    respx_mock.post(f"{URL}/write").mock(
        return_value=httpx.Response(status, json={"error": "nope"})
    )
    async with InfluxWriter(InfluxSettings(url=URL)) as influx:
        with pytest.raises(InfluxUnavailableError) as caught:
            await influx.write(BODY)
    assert caught.value.kind == kind


@pytest.mark.parametrize("status", [400, 413, 422])
@respx.mock
async def test_bad_points_answers_are_rejections(respx_mock: respx.MockRouter, status: int) -> None:
    respx_mock.post(f"{URL}/write").mock(
        return_value=httpx.Response(status, json={"error": "field type conflict"})
    )
    async with InfluxWriter(InfluxSettings(url=URL)) as influx:
        with pytest.raises(PointsRejectedError) as caught:
            await influx.write(BODY)
    assert caught.value.reason == "field type conflict"


@respx.mock
async def test_timeouts_and_refused_connections_are_unavailable(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(f"{URL}/write")
    route.side_effect = [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")]
    async with InfluxWriter(InfluxSettings(url=URL)) as influx:
        kinds = []
        for _ in range(2):
            with pytest.raises(InfluxUnavailableError) as caught:
                await influx.write(BODY)
            kinds.append(caught.value.kind)
    assert kinds == ["timeout", "connection"]


def test_v2_without_org_or_token_refuses_to_start() -> None:
    """Else InfluxDB 2.x would answer 400 to every write and everything would be
    dead-lettered as bad points."""
    with pytest.raises(SettingsError, match="FAIRPRICE_INFLUX__ORG"):
        InfluxWriter(InfluxSettings(url=URL, api="v2", token=SecretStr("t")))


@respx.mock
async def test_v2_error_message_is_the_reason(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(f"{URL}/api/v2/write").mock(
        return_value=httpx.Response(
            422, json={"code": "unprocessable entity", "message": "failure writing points"}
        )
    )
    settings = InfluxSettings(url=URL, api="v2", org="acme", token=SecretStr("t"))
    async with InfluxWriter(settings) as influx:
        with pytest.raises(PointsRejectedError) as caught:
            await influx.write(BODY)
    assert caught.value.reason == "failure writing points"
