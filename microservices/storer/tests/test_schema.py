"""Every measurement written by the running storer and read back exactly by InfluxQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fairprice.common.messages import Candle, FairPrice, IndicatorState, Signal

if TYPE_CHECKING:
    from conftest import Harness

EX = "sim ex"
SYM = "A,B=C D"  # a tag value with a comma, an equals sign and a space


async def test_every_measurement_read_back_exactly(h: Harness) -> None:
    t = h.book(0).event_time_ms
    book = h.book(
        0,
        exchange=EX,
        symbol=SYM,
        bids=[("100.5", "1"), ("100", "2.5")],
        asks=[("101", "0.00100000")],
    )
    later = h.book(1, exchange=EX, symbol=SYM, bids=[("5", "5.5")], asks=[])
    price = FairPrice(
        exchange=EX,
        symbol=SYM,
        update_id=1000,
        event_time_ms=t,
        method="micro price",
        price=100.9,
        mid=100.75,
        microprice=100.9,
        impact=None,
        spread=0.5,
        imbalance=0.3333,
        sma_fast=100.1,
        sma_slow=99.9,
    )
    price_without_sma = FairPrice(
        exchange=EX,
        symbol=SYM,
        update_id=1001,
        event_time_ms=t + 100,
        method="micro price",
        price=101.0,
        mid=101.0,
        microprice=101.0,
        impact=101.25,
        spread=1.0,
        imbalance=-1.0,
    )
    signal = Signal(
        exchange=EX,
        symbol=SYM,
        update_id=1000,
        event_time_ms=t,
        strategy='sma "fast,slow"=20 60',
        action="BUY",
        price=100.9,
        sma_fast=100.1,
        sma_slow=99.9,
    )
    candle = Candle(
        exchange=EX,
        symbol=SYM,
        start_ms=t - t % 60_000,
        open=100.0,
        high=102.5,
        low=99.25,
        close=101.0,
        count=600,
    )

    async with h.storer(h.settings) as storer:
        await h.publish(
            [book, later, price, price_without_sma, signal, candle], subject_symbol="WEIRD"
        )
        await h.wait_count("candle", "count", 1)
        await h.wait_count("signal", "price", 1)
        await h.wait_count("fair_price", "price", 2)
        await h.wait_count("orderbook", "update_id", 2)
        expected = {"books": 2, "prices": 2, "signals": 1, "candles": 1}

        async def all_counted() -> bool:
            return all(
                storer.metric("fairprice_storer_messages_total", stream=stream, outcome="stored")
                == count
                for stream, count in expected.items()
            )

        await h.wait_for(all_counted, what="messages counted")
        for stream, count in expected.items():
            latency = "fairprice_storer_end_to_end_latency_seconds_count"
            assert storer.metric(latency, stream=stream) == count
        assert storer.metric("fairprice_storer_points_written_total", measurement="indicator") == 1

    tags = {"exchange": EX, "symbol": SYM}
    assert await h.rows("SELECT * FROM orderbook") == [
        {
            "time": t,
            **tags,
            "update_id": 1000,
            "mid": 100.75,
            "spread": 0.5,
            "bid_price_0": 100.5,
            "bid_qty_0": 1,
            "bid_price_1": 100,
            "bid_qty_1": 2.5,
            "ask_price_0": 101,
            "ask_qty_0": 0.001,
        },
        {
            "time": t + 100,
            **tags,
            "update_id": 1001,
            "mid": None,
            "spread": None,
            "bid_price_0": 5,
            "bid_qty_0": 5.5,
            "bid_price_1": None,
            "bid_qty_1": None,
            "ask_price_0": None,
            "ask_qty_0": None,
        },
    ]
    assert await h.rows("SELECT * FROM fair_price") == [
        {
            "time": t,
            **tags,
            "method": "micro price",
            "price": 100.9,
            "mid": 100.75,
            "microprice": 100.9,
            "spread": 0.5,
            "imbalance": 0.3333,
            "impact": None,
        },
        {
            "time": t + 100,
            **tags,
            "method": "micro price",
            "price": 101,
            "mid": 101,
            "microprice": 101,
            "spread": 1,
            "imbalance": -1,
            "impact": 101.25,
        },
    ]
    assert await h.rows("SELECT * FROM indicator") == [
        {"time": t, **tags, "sma_fast": 100.1, "sma_slow": 99.9}
    ]
    assert await h.rows("SELECT * FROM signal") == [
        {
            "time": t,
            **tags,
            "strategy": 'sma "fast,slow"=20 60',
            "action": "BUY",
            "price": 100.9,
            "sma_fast": 100.1,
            "sma_slow": 99.9,
        }
    ]
    assert await h.rows("SELECT * FROM candle") == [
        {
            "time": candle.start_ms,
            **tags,
            "interval": "1m",
            "open": 100,
            "high": 102.5,
            "low": 99.25,
            "close": 101,
            "count": 600,
        }
    ]
    # Tag values are found by exact match: escaped on the way in, not mangled.
    selected = await h.rows(
        "SELECT update_id FROM orderbook WHERE symbol = 'A,B=C D' AND exchange = 'sim ex'"
    )
    assert [row["update_id"] for row in selected] == [1000, 1001]


INDICATOR_FIELDS = (
    "rsi",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr",
)


async def test_field_types_are_fixed(h: Harness) -> None:
    """Bare integer strings are floats; update_id and count integers; action a string."""
    t = h.book(0).event_time_ms
    messages = [
        h.book(0, bids=[("5", "7")], asks=[("6", "1")]),
        h.book(1, bids=[("5.5", "7.25")], asks=[("6.5", "1.5")]),
        Candle(exchange="sim", symbol="AAA", start_ms=t, open=1, high=2, low=1, close=2, count=3),
        Candle(
            exchange="sim",
            symbol="AAA",
            interval="5m",
            start_ms=t,
            open=1,
            high=2,
            low=1,
            close=2,
            count=3,
            **dict.fromkeys(INDICATOR_FIELDS, 1.0),
            state=IndicatorState(
                params="p",
                count=30,
                prev_close=2.0,
                rsi_gain=0.1,
                rsi_loss=0.1,
                atr=1.0,
                warmup=[],
                ema_fast=1.0,
                ema_slow=1.0,
                macd_count=5,
                macd_signal=1.0,
                window=[2.0] * 20,
            ),
        ),
        Signal(
            exchange="sim",
            symbol="AAA",
            update_id=1,
            event_time_ms=t,
            strategy="s",
            action="SELL",
            price=5,
            sma_fast=4,
            sma_slow=5,
        ),
    ]
    async with h.storer(h.settings):
        await h.publish(messages)
        await h.wait_count("orderbook", "update_id", 2)
        await h.wait_count("candle", "count", 2)
        await h.wait_count("signal", "price", 1)
    types: dict[str, str] = {}
    for series in await h.query("SHOW FIELD KEYS"):
        for key, kind in series["values"]:
            types[f"{series['name']}.{key}"] = kind
    assert types == {
        "orderbook.ask_price_0": "float",
        "orderbook.ask_qty_0": "float",
        "orderbook.bid_price_0": "float",
        "orderbook.bid_qty_0": "float",
        "orderbook.mid": "float",
        "orderbook.spread": "float",
        "orderbook.update_id": "integer",
        "candle.open": "float",
        "candle.high": "float",
        "candle.low": "float",
        "candle.close": "float",
        "candle.count": "integer",
        **{f"candle.{name}": "float" for name in INDICATOR_FIELDS},
        "signal.action": "string",
        "signal.price": "float",
        "signal.sma_fast": "float",
        "signal.sma_slow": "float",
    }
