"""`fairprice price SYMBOL`: a symbol's latest fair price, from the price API.

With ``--exchange`` it asks ``GET /v1/prices/<exchange>/<SYMBOL>``; without, it reads
``GET /v1/prices`` and shows the symbol on every exchange that has it (``make demo`` prices
under ``sim``, ``make run`` under ``binance``). The API's address defaults to the local run's
(``[api] port`` of the configuration); ``--token`` (or ``[api] token``) is sent as a bearer token.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from fairprice.common.errors import FairpriceError

__all__ = ["describe", "fetch_prices", "run_price"]


async def fetch_prices(
    url: str, symbol: str, exchange: str | None, token: str | None
) -> list[dict[str, Any]]:
    """The latest value of ``symbol`` (on ``exchange``, or on every exchange that has it)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    symbol = symbol.upper()
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        path = f"/v1/prices/{exchange}/{symbol}" if exchange else "/v1/prices"
        try:
            response = await client.get(path)
        except httpx.HTTPError as exc:
            raise FairpriceError(
                f"cannot reach the price API at {url} ({type(exc).__name__})"
            ) from exc
    if response.status_code != 200:
        try:
            message = response.json()["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise FairpriceError(f"{url}{path} answered {response.status_code}: {message}")
    body = response.json()
    found = [body] if exchange else [p for p in body["prices"] if p["symbol"] == symbol]
    if not found:
        raise FairpriceError(f"no fair price for {symbol} on any exchange at {url}")
    return found


def describe(price: dict[str, Any]) -> str:
    """One line: exchange, symbol, price and method, mid, spread, SMAs, last signal, age."""

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.10g}"

    signal = "none"
    if price["signal"]:
        when = time.strftime("%H:%M:%S", time.gmtime(price["signal_time_ms"] / 1000))
        signal = f"{price['signal']} at {when} UTC"
    return (
        f"{price['exchange']} {price['symbol']} {num(price['price'])} ({price['method']})  "
        f"mid {num(price['mid'])}  spread {num(price['spread'])}  "
        f"sma {num(price['sma_fast'])}/{num(price['sma_slow'])}  signal {signal}  "
        f"age {price['age_s']:.1f}s"
    )


async def run_price(
    url: str, symbol: str, exchange: str | None, token: str | None, as_json: bool
) -> int:
    for price in await fetch_prices(url, symbol, exchange, token):
        print(json.dumps(price) if as_json else describe(price))
    return 0
