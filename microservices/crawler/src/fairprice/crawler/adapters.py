"""The exchange adapters by name (``[crawler] exchange``): add a new exchange's module here."""

from __future__ import annotations

from fairprice.common.errors import SettingsError
from fairprice.crawler.binance import Binance, BinanceSimulator
from fairprice.crawler.exchange import Exchange

__all__ = ["EXCHANGES", "exchange_for"]

EXCHANGES: dict[str, type[Exchange]] = {"binance": Binance, "sim": BinanceSimulator}


def exchange_for(name: str) -> Exchange:
    """A new adapter for ``name``; ``SettingsError`` naming the known ones otherwise."""
    try:
        return EXCHANGES[name]()
    except KeyError:
        known = ", ".join(sorted(EXCHANGES))
        raise SettingsError(
            f"crawler.exchange: unknown exchange {name!r} (known: {known})"
        ) from None
