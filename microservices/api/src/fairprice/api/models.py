"""The API's response bodies (pydantic models: FastAPI writes the OpenAPI schemas from them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "CandleOut",
    "CandlesOut",
    "ErrorOut",
    "PriceOut",
    "PricesOut",
    "SignalOut",
    "SignalsOut",
]


class PriceOut(BaseModel):
    exchange: str = Field(examples=["binance"])
    symbol: str = Field(examples=["BTCUSDT"])
    method: str = Field(description="which method `price` is: mid, microprice or impact")
    price: float = Field(description="the fair price")
    mid: float | None = Field(description="(best bid + best ask) / 2")
    spread: float | None = Field(description="best ask - best bid")
    sma_fast: float | None
    sma_slow: float | None
    signal: Literal["BUY", "SELL"] | None = Field(description="the symbol's last signal")
    signal_time_ms: int | None = Field(description="event time of that signal (ms)")
    update_id: int = Field(description="the exchange's update id of the priced book")
    event_time_ms: int = Field(description="exchange event time of the priced book (ms)")
    age_s: float = Field(description="seconds between that event time and this answer")


class PricesOut(BaseModel):
    prices: list[PriceOut]


class CandleOut(BaseModel):
    time_ms: int = Field(description="start of the candle (ms, event time)")
    open: float
    high: float
    low: float
    close: float
    count: int = Field(description="prices in the candle")


class CandlesOut(BaseModel):
    exchange: str
    symbol: str
    interval: str
    candles: list[CandleOut]
    next_cursor: int | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


class SignalOut(BaseModel):
    time_ms: int = Field(description="event time of the book that triggered it (ms)")
    strategy: str
    action: Literal["BUY", "SELL"]
    price: float
    sma_fast: float | None = None
    sma_slow: float | None = None


class SignalsOut(BaseModel):
    exchange: str
    symbol: str
    signals: list[SignalOut]
    next_cursor: int | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


class ErrorOut(BaseModel):
    error: str = Field(
        description="unknown_symbol, invalid_parameter, unauthorized, unavailable, cursor_too_old"
    )
    message: str
    parameter: str | None = Field(default=None, description="the bad parameter (422)")
