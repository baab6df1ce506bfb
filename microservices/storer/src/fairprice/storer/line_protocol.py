"""InfluxDB line protocol for the measurements of docs/architecture.md, built for speed.

    <measurement>,<tag>=<value>,... <field>=<value>,... <timestamp ms>

Escaping (InfluxDB's rules): a measurement escapes commas and spaces; tag keys, tag values and
field keys escape commas, equals signs and spaces; a string field value is double-quoted with
``"`` and ``\\`` escaped. A newline cannot be escaped anywhere, and a tag value may not be
empty or end in a backslash (it would escape the separator that follows): such a message is
refused with ``InvalidMessageError`` and dead-lettered.

Field types never change between writes (InfluxDB rejects a point whose field changed type):
prices, quantities and derived values are always floats, counters always integers (``i``
suffix), ``action`` always a string. A field that has no value (``impact`` of a thin book) is
left out of the point, never written as a placeholder of another type.

Book prices and quantities are the exchange's own decimal strings, written as they are: no
float round trip (``repr(float)`` costs ~45-80 us a book against ~7 us for joining strings) and
no precision lost. In line protocol a bare number is a float (integers need the ``i``), so
``"5"`` is stored as the float 5.0. The strings come from outside, so a book is refused unless
every one of them is made of digits, ``.`` and ``-`` only (fixed-point, as exchanges write
them; no exponent, see ``_NUMBER_CHARS``): nothing can inject a field or a type suffix.
(Malformed numbers such as ``1.2.3`` pass this cheap check and are caught by InfluxDB's parser,
which the storer's bisection turns into a dead letter.)
"""

from __future__ import annotations

from decimal import Decimal
from itertools import chain

from fairprice.common.errors import InvalidMessageError
from fairprice.common.messages import Alert, Book, BookHead, Candle, FairPrice, Signal

__all__ = [
    "ALERT",
    "CANDLE",
    "FAIR_PRICE",
    "INDICATOR",
    "ORDERBOOK",
    "SIGNAL",
    "LineEncoder",
    "escape_field_key",
    "escape_measurement",
    "escape_string",
    "escape_tag",
]

ORDERBOOK = "orderbook"
FAIR_PRICE = "fair_price"
INDICATOR = "indicator"
SIGNAL = "signal"
CANDLE = "candle"
ALERT = "alert"
_CANDLE_VALUES = (
    "rsi",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr",
)
_SIGNAL_VALUES = ("sma_fast", "sma_slow", "rsi", "macd", "macd_signal")

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_TAG = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})
# Deleting every character an exchange's decimal string may hold leaves nothing when it is one.
# No exponent: exchanges write fixed-point, and "1e999999999" would make Decimal's mid a
# billion-digit string.
_NUMBER_CHARS = str.maketrans("", "", "0123456789.-")
# Prefix caches hold one entry per (exchange, symbol[, method|strategy]); a flood of made-up
# names must not grow them without bound.
_MAX_CACHED = 10_000
# The third tag of a series, after exchange and symbol.
_EXTRA_TAG = {FAIR_PRICE: "method", SIGNAL: "strategy", CANDLE: "interval"}


def escape_measurement(name: str) -> str:
    _check_unescapable(name, "measurement")
    return name.translate(_MEASUREMENT)


def escape_tag(value: str) -> str:
    """A tag key or value, escaped; refuses what line protocol cannot carry."""
    if not value:
        raise InvalidMessageError("empty tag value")
    if value.endswith("\\"):
        raise InvalidMessageError(f"tag value ends with a backslash: {value!r}")
    _check_unescapable(value, "tag")
    return value.translate(_TAG)


escape_field_key = escape_tag


def escape_string(value: str) -> str:
    """A string field value, quoted."""
    _check_unescapable(value, "string field")
    return '"' + value.translate(_STRING) + '"'


def _check_unescapable(value: str, what: str) -> None:
    if "\n" in value or "\r" in value:
        raise InvalidMessageError(f"{what} holds a line break: {value!r}")


def _levels_template(bids: int, asks: int) -> str:
    """``,bid_price_0=%s,bid_qty_0=%s,...,ask_qty_<asks-1>=%s``: one ``%`` fills a book's
    levels in C, ~35% faster than appending them in a Python loop."""
    return "".join(f",bid_price_{i}=%s,bid_qty_{i}=%s" for i in range(bids)) + "".join(
        f",ask_price_{i}=%s,ask_qty_{i}=%s" for i in range(asks)
    )


class LineEncoder:
    """Turns messages into lines, caching the escaped ``measurement,tags `` prefix of each
    series. ``books_interval_ms`` thins books (see ``book``)."""

    def __init__(self, *, books_interval_ms: int | None = None) -> None:
        self._prefixes: dict[tuple[str, str, str, str], str] = {}
        self._templates: dict[tuple[int, int], str] = {}
        self._books_interval_ms = books_interval_ms
        # (exchange, symbol) -> (index of the interval whose book was last kept, its update id)
        self._kept: dict[tuple[str, str], tuple[int, int]] = {}

    def _prefix(self, measurement: str, exchange: str, symbol: str, extra: str = "") -> str:
        """``measurement,exchange=..,symbol=..[,<extra tag>=..] `` (``extra``: the method of a
        fair price, the strategy of a signal, the interval of a candle)."""
        key = (measurement, exchange, symbol, extra)
        prefix = self._prefixes.get(key)
        if prefix is None:
            if len(self._prefixes) >= _MAX_CACHED:
                self._prefixes.clear()
            prefix = (
                f"{escape_measurement(measurement)},exchange={escape_tag(exchange)},"
                f"symbol={escape_tag(symbol)}"
            )
            if measurement in _EXTRA_TAG:
                prefix += f",{_EXTRA_TAG[measurement]}={escape_tag(extra)}"
            prefix += " "
            self._prefixes[key] = prefix
        return prefix

    @property
    def thins(self) -> bool:
        """Whether books are thinned (``books_interval_ms`` set)."""
        return self._books_interval_ms is not None

    def thinned(self, book: Book | BookHead) -> bool:
        """Whether thinning leaves ``book`` out (see ``book``): its head is enough to tell."""
        interval = self._books_interval_ms
        if interval is None:
            return False
        kept = self._kept.get((book.exchange, book.symbol))
        # The kept book itself, delivered again (after a nak or ack_wait), is kept again: its
        # first write may never have happened.
        return (
            kept is not None
            and kept[0] == book.event_time_ms // interval
            and kept[1] != book.update_id
        )

    def book(self, book: Book) -> str | None:
        """The ``orderbook`` line of ``book``, or ``None`` when thinning leaves it out.

        Thinned (``books_interval_ms`` set): a book is kept when it is the first this process
        sees in its interval for its symbol (in stream order: the interval's first book), and
        its point is stamped with the interval's start. A redundant replica or a restart that
        keeps another book of the same interval then overwrites that one point instead of
        adding a second: at most one point per symbol per interval, whatever happens. With
        one replica and no restart, the kept book is the interval's first; with several, each
        keeps the first of the books it was given and the last write of the interval's point
        wins (still one point, and a book of that interval).
        """
        timestamp = book.event_time_ms
        interval = self._books_interval_ms
        if interval is not None:
            if self.thinned(book):
                return None
            index = timestamp // interval
            timestamp = index * interval

        bids, asks = book.bids, book.asks
        values = (*chain.from_iterable(bids), *chain.from_iterable(asks))
        if "".join(values).translate(_NUMBER_CHARS) or "" in values:
            raise InvalidMessageError("book holds a price or quantity that is not a number")
        shape = (len(bids), len(asks))
        template = self._templates.get(shape)
        if template is None:
            template = self._templates[shape] = _levels_template(*shape)
        parts = [
            self._prefix(ORDERBOOK, book.exchange, book.symbol),
            "update_id=",
            str(book.update_id),
            "i",
            template % values,
        ]
        if bids and asks:
            # Decimal, not float: the mid of 100.10 and 100.30 is 100.20, not 100.19999999999999
            # (and Decimal parses these short strings faster than float does).
            try:
                best_bid, best_ask = Decimal(bids[0][0]), Decimal(asks[0][0])
                mid, spread = (best_bid + best_ask) / 2, best_ask - best_bid
            except ArithmeticError as exc:
                raise InvalidMessageError(f"book's best price is not a number: {exc!r}") from exc
            parts += (",mid=", format(mid, "f"), ",spread=", format(spread, "f"))
        parts += (" ", str(timestamp))
        if interval is not None:  # recorded only once the book proved writable
            if len(self._kept) >= _MAX_CACHED:
                self._kept.clear()
            self._kept[(book.exchange, book.symbol)] = (index, book.update_id)
        return "".join(parts)

    def fair_price(self, price: FairPrice) -> str:
        """The ``fair_price`` line, and the ``indicator`` line when both SMAs are known."""
        exchange, symbol = price.exchange, price.symbol
        line = (
            f"{self._prefix(FAIR_PRICE, exchange, symbol, price.method)}"
            f"price={price.price!r},mid={price.mid!r},microprice={price.microprice!r},"
            f"spread={price.spread!r},imbalance={price.imbalance!r}"
        )
        if price.impact is not None:
            line += f",impact={price.impact!r}"
        line += f" {price.event_time_ms}"
        if price.sma_fast is not None and price.sma_slow is not None:
            line += (
                f"\n{self._prefix(INDICATOR, exchange, symbol)}"
                f"sma_fast={price.sma_fast!r},sma_slow={price.sma_slow!r} {price.event_time_ms}"
            )
        return line

    def signal(self, signal: Signal) -> str:
        """The ``signal`` line, with the values its strategy decided on (SMAs, RSI, MACD)."""
        prefix = self._prefix(SIGNAL, signal.exchange, signal.symbol, signal.strategy)
        line = f"{prefix}action={escape_string(signal.action)},price={signal.price!r}"
        for name in _SIGNAL_VALUES:
            value = getattr(signal, name)
            if value is not None:
                line += f",{name}={value!r}"
        return f"{line} {signal.event_time_ms}"

    def candle(self, candle: Candle) -> str:
        """The ``candle`` line of any interval (tag ``interval``), with the indicators a
        candle of the indicator interval carries (their state is not stored)."""
        prefix = self._prefix(CANDLE, candle.exchange, candle.symbol, candle.interval)
        line = (
            f"{prefix}open={candle.open!r},high={candle.high!r},low={candle.low!r},"
            f"close={candle.close!r},count={candle.count}i"
        )
        if candle.state is not None:
            for name in _CANDLE_VALUES:
                value = getattr(candle, name)
                if value is not None:
                    line += f",{name}={value!r}"
        return f"{line} {candle.start_ms}"

    def alert(self, alert: Alert) -> str:
        """A market alert's firing or resolution: tags exchange, symbol, rule, state (so that
        an instantaneous alert's two events at one time are two points) and severity."""
        return (
            f"{ALERT},exchange={escape_tag(alert.exchange)},symbol={escape_tag(alert.symbol)},"
            f"rule={escape_tag(alert.rule)},state={escape_tag(alert.state)},"
            f"severity={escape_tag(alert.severity)} kind={escape_string(alert.kind)},"
            f"price={alert.price!r},summary={escape_string(alert.summary)},"
            f"update_id={alert.update_id}i {alert.event_time_ms}"
        )
