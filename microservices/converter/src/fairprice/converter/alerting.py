"""Market alerts of a symbol: its feed's rules evaluated on every fair price, in event time.

Each rule is a condition of the price sequence; its state (firing or not) depends only on the
recent past (the last price, the prices of the last ``windowSeconds``, the crossover trend that
rides on every price), so a replica that rebuilt the symbol by replay reaches the same state
as the one that lived through it, and publishes the same events under the same ids:

- ``above`` / ``below``: firing while the price is above / below ``level``; it fires at the
  price that crosses the level and resolves at the one that crosses back;
- ``move``: firing while the high and low of the last ``windowSeconds`` differ by at least
  ``percent`` of the low;
- ``signal``: with ``strategy: sma_cross`` and an ``action``, firing while the crossover's last
  signal is that action (fires at the signal, resolves at the opposite one: the trend rides on
  every price, so a takeover resumes it); otherwise every signal of the rule's strategy (any of
  the feed's when left out) and action (either when left out) fires and resolves at once. The
  candle strategies' last signal rides on no message a takeover reads, so they are events only;
  one pair per price (its id names the book and the rule), naming every signal it matched;
- ``stale``: a gap of more than ``seconds`` of event time between two consecutive fair prices
  fires at the price after the gap and resolves with it: the firing carries the last price
  before the gap (its update id, its price) and the moment the gap reached ``seconds``
  (``event_time_ms``), the resolution the price that ended it. Decided by the two prices
  alone, so a replay or a takeover decides it the same way (``resume`` seeds the last
  published price, in case BOOKS no longer holds its book). No wall clock: a feed that stops
  for good fires nothing here; the pipeline rule ``FairpriceSymbolStale`` covers that.

An event is an ``Alert`` message on ``alerts.<exchange>.<SYMBOL>`` with the id
``<book id>:alert:<rule>:<firing|resolved>``: one per rule and event, so a redundant or
restarted converter does not alert twice (JetStream's duplicate window drops the copy).
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from fairprice.common.feeds import AlertRule, Strategy
from fairprice.common.messages import Action, Alert, AlertState, FairPrice, encode
from fairprice.common.subjects import Stream, alert_msg_id, alerts_subject, book_msg_id

__all__ = ["AlertPrice", "SymbolAlerts"]

Output = tuple[Stream, str, bytes, str]
SignalGiven = tuple[Strategy, Action]
"""A signal a price gave: ``(strategy, action)``."""


class AlertPrice(NamedTuple):
    """What the rules look at: the fair price of one book."""

    update_id: int
    event_time_ms: int
    time_ms: int
    """The symbol's event time (never going back; the windows' clock)."""
    price: float
    trend: int
    """The crossover trend after this price: +1 after a BUY, -1 after a SELL, 0 before any."""


class _Extremes:
    """High and low of the prices of the last ``span_ms`` of event time (monotonic deques)."""

    __slots__ = ("_highs", "_lows", "span_ms")

    def __init__(self, span_ms: int) -> None:
        self.span_ms = span_ms
        self._highs: deque[tuple[int, float]] = deque()
        self._lows: deque[tuple[int, float]] = deque()

    def push(self, time_ms: int, price: float) -> tuple[float, float]:
        while self._highs and self._highs[-1][1] <= price:
            self._highs.pop()
        while self._lows and self._lows[-1][1] >= price:
            self._lows.pop()
        self._highs.append((time_ms, price))
        self._lows.append((time_ms, price))
        oldest = time_ms - self.span_ms
        while self._highs[0][0] <= oldest:
            self._highs.popleft()
        while self._lows[0][0] <= oldest:
            self._lows.popleft()
        return self._lows[0][1], self._highs[0][1]


class SymbolAlerts:
    """The alert rules of one symbol and whether each is firing."""

    def __init__(self, exchange: str, symbol: str, rules: tuple[AlertRule, ...]) -> None:
        self._exchange = exchange
        self._symbol = symbol
        self._rules = rules
        self._subject = alerts_subject(exchange, symbol)
        self.firing: dict[str, bool] = {rule.name: False for rule in rules}
        self._windows = {
            rule.name: _Extremes((rule.window_seconds or 0) * 1000)
            for rule in rules
            if rule.kind == "move"
        }
        self._previous: AlertPrice | None = None
        """The last price evaluated (``stale`` measures the gap from it)."""

    def resume(self, last: FairPrice) -> None:
        """Continue after ``last``, the newest published price: the gap of a ``stale`` rule is
        measured from it when BOOKS no longer holds its book (a replay of it overrides this)."""
        t = last.event_time_ms
        self._previous = AlertPrice(last.update_id, t, t, last.price, last.trend)

    def evaluate(self, price: AlertPrice, signals: list[SignalGiven], emit: bool) -> list[Output]:
        """The events of ``price`` (with ``signals`` those it gave); computed for every price,
        returned only when ``emit``."""
        outputs: list[Output] = []
        previous, self._previous = self._previous, price
        for rule in self._rules:
            if rule.kind == "stale":
                assert rule.seconds is not None
                limit_ms = rule.seconds * 1000
                if emit and previous is not None and price.time_ms - previous.time_ms > limit_ms:
                    outputs += self._gap(rule, previous, price, limit_ms)
                continue
            if not _held(rule):
                matched = [
                    f"{strategy} {action}"
                    for strategy, action in signals
                    if rule.strategy in (None, strategy) and rule.action in (None, action)
                ]
                if emit and matched:  # one event per price (its id), however many signals
                    summary = f"{self._symbol} {', '.join(matched)} at {price.price:g}"
                    outputs.append(self._event(rule, price, "firing", summary))
                    outputs.append(self._event(rule, price, "resolved", summary))
                continue
            was = self.firing[rule.name]
            now, summary = self._condition(rule, price)
            if now == was:
                continue
            self.firing[rule.name] = now
            if emit:
                outputs.append(self._event(rule, price, "firing" if now else "resolved", summary))
        return outputs

    def _gap(
        self, rule: AlertRule, before: AlertPrice, after: AlertPrice, limit_ms: int
    ) -> list[Output]:
        """A ``stale`` rule's two events for the gap between ``before`` and ``after``."""
        gap_s = (after.time_ms - before.time_ms) / 1000
        summary = f"{self._symbol} no price for {gap_s:g}s (more than {rule.seconds}s)"
        stale = before._replace(event_time_ms=before.time_ms + limit_ms)
        return [
            self._event(rule, stale, "firing", summary),
            self._event(rule, after, "resolved", summary),
        ]

    def _condition(self, rule: AlertRule, price: AlertPrice) -> tuple[bool, str]:
        value = price.price
        symbol = self._symbol
        if rule.kind == "above":
            assert rule.level is not None
            return value > rule.level, f"{symbol} {value:g} above {rule.level:g}"
        if rule.kind == "below":
            assert rule.level is not None
            return value < rule.level, f"{symbol} {value:g} below {rule.level:g}"
        if rule.kind == "move":
            assert rule.percent is not None
            low, high = self._windows[rule.name].push(price.time_ms, value)
            moved = (high - low) / low * 100 if low > 0 else 0.0
            return moved >= rule.percent, (
                f"{symbol} moved {moved:.2f}% within {rule.window_seconds}s (low {low:g}, "
                f"high {high:g})"
            )
        # a held sma_cross signal: the crossover trend that every price carries says which
        # signal was last
        last = {1: "BUY", -1: "SELL"}.get(price.trend)
        return last == rule.action, f"{symbol} sma_cross {rule.action} at {value:g}"

    def _event(self, rule: AlertRule, price: AlertPrice, state: AlertState, summary: str) -> Output:
        alert = Alert(
            exchange=self._exchange,
            symbol=self._symbol,
            rule=rule.name,
            kind=rule.kind,
            severity=rule.severity,
            state=state,
            update_id=price.update_id,
            event_time_ms=price.event_time_ms,
            price=price.price,
            summary=summary,
        )
        book_id = book_msg_id(self._exchange, self._symbol, price.update_id)
        msg_id = alert_msg_id(book_id, rule.name, state)
        return (Stream.ALERTS, self._subject, encode(alert), msg_id)


def _held(rule: AlertRule) -> bool:
    """Whether a rule fires and resolves at different prices (all but signal events)."""
    if rule.kind != "signal":
        return True
    return rule.strategy == "sma_cross" and rule.action is not None
