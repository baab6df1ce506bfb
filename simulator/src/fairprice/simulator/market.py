"""The simulated market: one random-walk order book per symbol, deterministic from a seed.

A book lives on an integer price grid (ticks of the symbol's ``tickSize``) around a centre
``c``: bids in ``[c - D, c - 1]``, asks in ``[c + 1, c + D]`` with ``D = depth_levels``. Each
``step()`` is one tick of the market: the centre may move one tick (the level it crosses and the
level that falls off the far end are deleted), then a few levels near the top get new quantities
(0 deletes). The tick spans several update ids (``U..u``). Everything is drawn from a
``random.Random`` seeded with ``"<seed>:<SYMBOL>"``, so the n-th step of a symbol is the same in
every run with the same settings, whoever is watching and however late the loop runs.

Each step keeps an undo record (bounded by ``history_ticks``), so the book at any recent update
id can be rebuilt exactly: ``true_book`` for tests, stale snapshots for fault injection.
"""

from __future__ import annotations

import random
import re
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from fairprice.simulator.settings import MarketSettings

__all__ = [
    "BookView",
    "HistoryError",
    "Market",
    "StepResult",
    "SymbolBook",
    "SymbolSpec",
    "fmt_units",
]

_SCALE = 100_000_000  # Binance prints prices and quantities with 8 decimals
_QUOTES = ("USDT", "BUSD", "USDC", "FDUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL")
_TICK_UNITS = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)  # tickSize 1e-8 .. 1e-2
_STEP_UNITS = (1_000, 100_000, 1_000_000, 100_000_000)  # stepSize 1e-5 .. 1
_MEAN_QTY_STEPS = 60.0
_SYMBOL = re.compile(r"[A-Z0-9]{5,20}")  # a Binance spot symbol: base + quote asset
_TOP_DISTANCE = 12.0  # mean distance (in ticks) from the centre of a changed level


class HistoryError(LookupError):
    """The asked update id is older than the kept history, or newer than the book."""


def fmt_units(units: int) -> str:
    """An amount in 1e-8 units as Binance prints it: ``35280000 -> "0.35280000"``."""
    whole, frac = divmod(units, _SCALE)
    return f"{whole}.{frac:08d}"


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """What ``exchangeInfo`` says about a symbol."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_units: int
    """``tickSize`` in 1e-8 units."""
    step_units: int
    """``stepSize`` in 1e-8 units."""

    @property
    def tick_size(self) -> str:
        return fmt_units(self.tick_units)

    @property
    def step_size(self) -> str:
        return fmt_units(self.step_units)


@dataclass(frozen=True, slots=True)
class StepResult:
    """One market tick: update ids ``first_id..final_id`` and the levels they changed."""

    first_id: int
    final_id: int
    bids: dict[int, int]
    """Price tick -> new quantity in steps (0: deleted), last change of the tick wins."""
    asks: dict[int, int]


@dataclass(frozen=True, slots=True)
class BookView:
    """A book at one update id, levels best first, as Binance decimal strings."""

    last_update_id: int
    bids: list[list[str]]
    asks: list[list[str]]

    def to_json(self) -> dict[str, object]:
        return {"lastUpdateId": self.last_update_id, "bids": self.bids, "asks": self.asks}


class SymbolBook:
    """One symbol's book and its deterministic random walk.

    Quantities live in one flat ring ``array`` indexed by ``price % (2 * depth + 2)``: the book
    only ever holds prices within ``depth`` ticks of the centre, and a price leaving that window
    is deleted first, so a slot is never shared (~19 kB per book at depth 1200, O(1) access).
    Each step's undo record is a flat ``array`` ``[first_id, final_id, centre_before, price,
    old_qty, price, old_qty, ...]``, ~200 bytes.
    """

    def __init__(self, spec: SymbolSpec, settings: MarketSettings) -> None:
        self.spec = spec
        self._settings = settings
        self._rng = random.Random(f"{settings.seed}:{spec.symbol}")
        rng = self._rng
        depth = settings.depth_levels
        self.depth = depth
        self._size = 2 * depth + 2
        self.center = rng.randint(20 * depth, 400 * depth)
        self._qty = array("q", bytes(8 * self._size))
        for distance in range(1, depth + 1):
            if rng.random() < settings.fill_ratio:
                self._qty[(self.center - distance) % self._size] = self._quantity()
            if rng.random() < settings.fill_ratio:
                self._qty[(self.center + distance) % self._size] = self._quantity()
        # Binance ids are large and differ per symbol.
        self.last_update_id = rng.randint(10**8, 10**10)
        self.steps = 0
        self.trend = 0
        """Ticks the centre still has to move, one a step (``FaultPlan.trend_ticks``)."""
        self._history: deque[array[int]] = deque(maxlen=settings.history_ticks)
        self._price_names: dict[int, str] = {}
        self._qty_names: dict[int, str] = {}
        self._drift = 0  # ticks the centre still has to move on purpose (+ up, - down)
        self._drift_per_step = 0

    def drift(self, percent: float, steps: int) -> int:
        """Move the price by ``percent`` (negative: down) over the next ``steps`` steps, on
        top of the random walk: a move or a level crossing made on purpose (tests, demos).
        Returns the ticks it will move."""
        ticks = round(self.center * percent / 100)
        self._drift = ticks
        self._drift_per_step = max(1, -(-abs(ticks) // max(1, steps)))
        return ticks

    def _quantity(self) -> int:
        return 1 + int(self._rng.expovariate(1.0 / _MEAN_QTY_STEPS))

    def step(self) -> StepResult | None:
        """Advance one tick; ``None`` when this tick changes nothing (no event)."""
        self.steps += 1
        rng = self._rng
        settings = self._settings
        if settings.event_probability < 1.0 and rng.random() >= settings.event_probability:
            return None
        book, size, depth = self._qty, self._size, self.depth
        changed_bids: dict[int, int] = {}
        changed_asks: dict[int, int] = {}
        undo = array("q", (0, 0, self.center))

        def change(is_bid: bool, price: int, qty: int) -> None:
            slot = price % size
            undo.append(price)
            undo.append(book[slot])
            book[slot] = qty
            (changed_bids if is_bid else changed_asks)[price] = qty

        draw = rng.random()
        move = settings.move_probability
        up, down = draw < move, move <= draw < 2 * move
        if self.trend:  # a forced move (the draw is still taken: the rest stays seeded)
            up, down = self.trend > 0, self.trend < 0
            self.trend += -1 if up else 1
        if up:
            self.center += 1
            if book[self.center % size]:
                change(False, self.center, 0)
            if book[(self.center - depth - 1) % size]:
                change(True, self.center - depth - 1, 0)
        elif down and self.center - depth > 1:
            self.center -= 1
            if book[self.center % size]:
                change(True, self.center, 0)
            if book[(self.center + depth + 1) % size]:
                change(False, self.center + depth + 1, 0)
        if self._drift:
            ticks = min(abs(self._drift), self._drift_per_step)
            up = self._drift > 0
            self._drift -= ticks if up else -ticks
            # Tick by tick, as the walk moves; the book keeps its shape: the level left
            # behind gets the other side's quantity, the far end of the front side a new one.
            for _ in range(ticks):
                if up:
                    self.center += 1
                    if book[self.center % size]:
                        change(False, self.center, 0)
                    if book[(self.center - depth - 1) % size]:
                        change(True, self.center - depth - 1, 0)
                    change(True, self.center - 1, self._quantity())
                    change(False, self.center + depth, self._quantity())
                elif self.center - depth > 1:
                    self.center -= 1
                    if book[self.center % size]:
                        change(True, self.center, 0)
                    if book[(self.center + depth + 1) % size]:
                        change(False, self.center + depth + 1, 0)
                    change(False, self.center + 1, self._quantity())
                    change(True, self.center - depth, self._quantity())
        low, high = settings.levels_per_event
        for _ in range(rng.randint(low, high)):
            is_bid = rng.random() < 0.5
            distance = min(depth, 1 + int(rng.expovariate(1.0 / _TOP_DISTANCE)))
            price = self.center - distance if is_bid else self.center + distance
            qty = 0 if rng.random() < settings.delete_probability else self._quantity()
            change(is_bid, price, qty)
        first = self.last_update_id + 1
        self.last_update_id += rng.randint(*settings.updates_per_event)
        undo[0], undo[1] = first, self.last_update_id
        self._history.append(undo)
        return StepResult(first, self.last_update_id, changed_bids, changed_asks)

    # ---- reading the book -------------------------------------------------------------

    def price(self, tick: int) -> str:
        name = self._price_names.get(tick)
        if name is None:
            if len(self._price_names) > 8 * self.depth:
                self._price_names.clear()
            name = self._price_names[tick] = fmt_units(tick * self.spec.tick_units)
        return name

    def qty(self, steps: int) -> str:
        name = self._qty_names.get(steps)
        if name is None:
            if len(self._qty_names) > 4096:
                self._qty_names.clear()
            name = self._qty_names[steps] = fmt_units(steps * self.spec.step_units)
        return name

    def levels(self, changes: dict[int, int]) -> list[list[str]]:
        """Changed levels as Binance ``[[price, qty], ...]`` (in change order)."""
        return [[self.price(p), self.qty(q)] for p, q in changes.items()]

    def _best_first(
        self, book: array[int], center: int, is_bid: bool, limit: int
    ) -> Iterator[tuple[int, int]]:
        size = self._size
        direction = -1 if is_bid else 1
        price = center + direction
        end = center + direction * (self.depth + 1)
        found = 0
        while price != end and found < limit:
            qty = book[price % size]
            if qty:
                found += 1
                yield price, qty
            price += direction

    def _view(self, book: array[int], center: int, update_id: int, limit: int) -> BookView:
        return BookView(
            update_id,
            [[self.price(p), self.qty(q)] for p, q in self._best_first(book, center, True, limit)],
            [[self.price(p), self.qty(q)] for p, q in self._best_first(book, center, False, limit)],
        )

    def top(self, limit: int) -> BookView:
        """The current book, ``limit`` levels a side."""
        return self._view(self._qty, self.center, self.last_update_id, limit)

    def best(self) -> tuple[int, int, int, int] | None:
        """Best bid price, qty, best ask price, qty (ticks and steps); None if a side is empty."""
        bid = next(self._best_first(self._qty, self.center, True, 1), None)
        ask = next(self._best_first(self._qty, self.center, False, 1), None)
        if bid is None or ask is None:
            return None
        return bid[0], bid[1], ask[0], ask[1]

    def book_at(self, update_id: int, limit: int) -> BookView:
        """The book as it was after the last tick whose final id is ``<= update_id``.

        Raises ``HistoryError`` if that is older than the kept history or newer than the book.
        """
        if update_id > self.last_update_id:
            raise HistoryError(
                f"update id {update_id} is ahead of the book ({self.last_update_id})"
            )
        book, center, at, size = self._qty[:], self.center, self.last_update_id, self._size
        for undo in reversed(self._history):
            if undo[1] <= update_id:
                break
            for index in range(len(undo) - 2, 2, -2):
                book[undo[index] % size] = undo[index + 1]
            center, at = undo[2], undo[0] - 1
        if at > update_id:
            raise HistoryError(f"update id {update_id} is older than the kept history")
        return self._view(book, center, at, limit)

    def history_range(self) -> tuple[int, int]:
        """The oldest and newest update id ``book_at`` can rebuild."""
        oldest = self._history[0][0] - 1 if self._history else self.last_update_id
        return oldest, self.last_update_id

    def final_id_ticks_ago(self, ticks: int) -> int:
        """The book's update id ``ticks`` events ago (as far back as the history goes)."""
        if ticks <= 0 or not self._history:
            return self.last_update_id
        index = max(0, len(self._history) - ticks)
        return self._history[index][0] - 1


def _split(symbol: str) -> tuple[str, str]:
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-3], symbol[-3:]


class Market:
    """Every symbol of the exchange; books are built on first use (cheap to list thousands)."""

    def __init__(self, settings: MarketSettings) -> None:
        self.settings = settings
        names = [s.upper() for s in settings.symbols]
        names += [
            settings.symbol_pattern.format(n=n).upper() for n in range(settings.generated_symbols)
        ]
        self.specs: dict[str, SymbolSpec] = {}
        for name in names:
            self._add(name)
        self._books: dict[str, SymbolBook] = {}

    def _add(self, name: str) -> SymbolSpec:
        spec = self.specs.get(name)
        if spec is None:
            rng = random.Random(f"{self.settings.seed}:{name}:spec")
            base, quote = _split(name)
            spec = self.specs[name] = SymbolSpec(
                name, base, quote, rng.choice(_TICK_UNITS), rng.choice(_STEP_UNITS)
            )
        return spec

    def lookup(self, symbol: str) -> SymbolSpec | None:
        """The symbol's spec, or None when the exchange has no such symbol. With
        ``any_symbol`` every well-formed upper-case name exists, made up on first ask."""
        spec = self.specs.get(symbol)
        if spec is None and self.settings.any_symbol and _SYMBOL.fullmatch(symbol):
            spec = self._add(symbol)
        return spec

    def __contains__(self, symbol: str) -> bool:
        return self.lookup(symbol) is not None

    def book(self, symbol: str) -> SymbolBook:
        """The symbol's book (``KeyError`` for an unknown symbol), built on first use."""
        book = self._books.get(symbol)
        if book is None:
            spec = self.lookup(symbol)
            if spec is None:
                raise KeyError(symbol)
            book = self._books[symbol] = SymbolBook(spec, self.settings)
        return book

    def built(self) -> dict[str, SymbolBook]:
        """The books built so far."""
        return self._books
