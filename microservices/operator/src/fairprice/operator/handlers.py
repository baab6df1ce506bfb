"""The kopf handlers of MarketFeed objects, registered on a registry made per run.

- create / update of the spec / resume at start-up: write the feed into the ``feeds`` bucket
  (idempotent: a put of the same value changes nothing downstream);
- delete (kopf adds its finalizer for this handler): remove the key, then kopf releases the
  object;
- a timer per object: refresh ``.status`` from the ``latest`` bucket, and write the feed again
  if the bucket lost or changed it (a broker that lost its storage, a manual edit): the object
  is the source of truth, the bucket follows it.

Broker errors (``BrokerError``) are temporary (kopf retries the handler with a delay); a spec
that cannot be a feed is permanent (logged and posted as a Kubernetes event, not retried until
it changes).
"""

from __future__ import annotations

import collections
import datetime
from collections.abc import Callable
from typing import Any

import kopf
from nats.js.kv import KeyValue

from fairprice.common.broker_errors import broker_errors
from fairprice.common.errors import BrokerError, NotFoundError
from fairprice.common.feeds import Feed, encode_feed
from fairprice.common.kv import feed_key
from fairprice.common.logs import get_logger
from fairprice.operator.feed_spec import InvalidSpecError, feed_from_spec
from fairprice.operator.latest import LatestReader
from fairprice.operator.metrics import OperatorMetrics
from fairprice.operator.settings import OperatorSection
from fairprice.operator.status import (
    SymbolState,
    feed_status,
    invalid_spec_conditions,
    symbol_states,
)

__all__ = ["GROUP", "PLURAL", "VERSION", "FeedHandlers"]

GROUP = "fairprice.io"
VERSION = "v1alpha1"
PLURAL = "marketfeeds"

log = get_logger(__name__)

_RETRY_DELAY_S = 2.0
_STATUS_KEYS = ("summary", "symbols", "conditions", "observedGeneration")


class FeedHandlers:
    """The handlers' shared state: the buckets, settings and metrics of one operator run."""

    def __init__(
        self,
        feeds: KeyValue,
        latest: LatestReader,
        settings: OperatorSection,
        metrics: OperatorMetrics,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._feeds = feeds
        self._stopping = stopping
        self._latest = latest
        self._settings = settings
        self._metrics = metrics
        self._states: dict[str, collections.Counter[SymbolState]] = {}
        self._firing: dict[str, set[tuple[str, str]]] = {}
        """(symbol, rule) of the market alerts firing per feed key, as last refreshed."""

    def register(self, registry: kopf.OperatorRegistry) -> None:
        resource = (GROUP, VERSION, PLURAL)
        kopf.on.create(*resource, registry=registry, id="feed")(self.apply)
        kopf.on.update(*resource, registry=registry, id="feed", field="spec")(self.apply)
        kopf.on.resume(*resource, registry=registry, id="feed")(self.apply)
        kopf.on.delete(*resource, registry=registry, id="feed")(self.remove)
        kopf.timer(
            *resource,
            registry=registry,
            id="status",
            interval=self._settings.status_interval_s,
            initial_delay=self._settings.status_interval_s,
        )(self.refresh)

    async def apply(
        self,
        spec: kopf.Spec,
        namespace: str | None,
        name: str | None,
        status: kopf.Status,
        meta: kopf.Meta,
        patch: kopf.Patch,
        body: kopf.Body | None = None,
        **_: Any,
    ) -> None:
        """Write the object's feed into the bucket; show its symbols at once in the status."""
        feed = self._feed(spec)
        key = feed_key(str(namespace), str(name))
        await self._put(key, feed)
        log.info("feed written", key=key, symbols=len(feed.symbols), enabled=feed.enabled)
        await self._refresh_status(key, feed, status, meta, patch, body)

    async def remove(self, namespace: str | None, name: str | None, **_: Any) -> None:
        key = feed_key(str(namespace), str(name))
        try:
            with broker_errors(f"cannot delete feed {key}"):
                await self._feeds.delete(key)
        except BrokerError as exc:
            self._metrics.errors.labels("nats").inc()
            raise kopf.TemporaryError(str(exc), _RETRY_DELAY_S) from exc
        self._metrics.feed_writes.labels("delete").inc()
        self._forget(key)
        log.info("feed removed", key=key)

    async def refresh(
        self,
        spec: kopf.Spec,
        namespace: str | None,
        name: str | None,
        status: kopf.Status,
        meta: kopf.Meta,
        patch: kopf.Patch,
        body: kopf.Body | None = None,
        **_: Any,
    ) -> None:
        """Refresh the status from the latest values, and repair the bucket's entry."""
        if self._stopping():
            # An event kopf handles after its stop flag (kmock, like any API server, can have
            # one in flight) starts this timer after kopf's daemon killer has run: nothing stops
            # it, and a status patch from it would open an API session after kopf closed them.
            return
        try:
            feed = feed_from_spec(spec)
        except InvalidSpecError as exc:
            self._show_invalid(str(exc), status, meta, patch)
            return
        key = feed_key(str(namespace), str(name))
        try:
            with broker_errors(f"cannot read feed {key}"):
                entry = await self._feeds.get(key)
            stored = entry.value
        except NotFoundError:
            stored = None
        except BrokerError as exc:
            self._metrics.errors.labels("nats").inc()
            raise kopf.TemporaryError(str(exc), _RETRY_DELAY_S) from exc
        if stored != encode_feed(feed):
            log.warning("feed missing or changed in the bucket, writing it again", key=key)
            await self._put(key, feed)
        await self._refresh_status(key, feed, status, meta, patch, body)

    async def _refresh_status(
        self,
        key: str,
        feed: Feed,
        status: kopf.Status,
        meta: kopf.Meta,
        patch: kopf.Patch,
        body: kopf.Body | None,
    ) -> None:
        """Put into ``patch`` the status keys whose value changed: a refresh that finds nothing
        new patches nothing, so an idle feed costs no API writes and no watch events. A market
        alert that started or stopped firing is an Event on the MarketFeed (``body``: kopf
        always passes it)."""
        try:
            with broker_errors("cannot read latest values"):
                latest = await self._latest.read(feed)
        except BrokerError as exc:
            self._metrics.errors.labels("nats").inc()
            raise kopf.TemporaryError(str(exc), _RETRY_DELAY_S) from exc
        now = datetime.datetime.now(tz=datetime.UTC)
        generation = meta.get("generation")
        conditions = status.get("conditions")
        states = symbol_states(feed, latest, now=now, stale_after_s=self._settings.stale_after_s)
        fresh = feed_status(
            feed,
            latest,
            states,
            now=now,
            previous_conditions=conditions if isinstance(conditions, list) else (),
            generation=generation if isinstance(generation, int) else None,
        )
        changed = False
        for name in _STATUS_KEYS:
            if status.get(name) != fresh.get(name):
                patch.status[name] = fresh.get(name)
                changed = True
        self._metrics.status_refreshes.labels(str(changed).lower()).inc()
        self._states[key] = collections.Counter(states.values())
        self._update_symbol_gauge()
        # What was firing: as this replica last saw it, else (after a restart) the status.
        before = self._firing.get(key)
        if before is None:
            before = _firing(status.get("symbols"))
        self._firing[key] = now_firing = _firing(fresh["symbols"])
        if body is not None:
            _post_alert_events(body, before, now_firing)

    def _show_invalid(
        self, message: str, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch
    ) -> None:
        """Conditions saying why the spec is refused (the create/update handler also posted an
        event, and kopf does not retry it until the spec changes)."""
        conditions = status.get("conditions")
        generation = meta.get("generation")
        fresh = invalid_spec_conditions(
            message,
            now=datetime.datetime.now(tz=datetime.UTC),
            previous_conditions=conditions if isinstance(conditions, list) else (),
            generation=generation if isinstance(generation, int) else None,
        )
        if conditions != fresh:
            patch.status["conditions"] = fresh

    def _feed(self, spec: kopf.Spec) -> Feed:
        try:
            return feed_from_spec(spec)
        except InvalidSpecError as exc:
            self._metrics.errors.labels("spec").inc()
            raise kopf.PermanentError(str(exc)) from exc

    async def _put(self, key: str, feed: Feed) -> None:
        try:
            with broker_errors(f"cannot write feed {key}"):
                await self._feeds.put(key, encode_feed(feed))
        except BrokerError as exc:
            self._metrics.errors.labels("nats").inc()
            raise kopf.TemporaryError(str(exc), _RETRY_DELAY_S) from exc
        self._metrics.feed_writes.labels("put").inc()

    def _forget(self, key: str) -> None:
        self._states.pop(key, None)
        self._firing.pop(key, None)
        self._update_symbol_gauge()

    def _update_symbol_gauge(self) -> None:
        totals: collections.Counter[SymbolState] = collections.Counter()
        for counts in self._states.values():
            totals.update(counts)
        for state in SymbolState:
            self._metrics.symbols.labels(state.value).set(totals[state])


def _firing(symbols: Any) -> set[tuple[str, str]]:
    """(symbol, rule) of the market alerts firing in a status's ``symbols`` list."""
    if not isinstance(symbols, list):
        return set()
    return {
        (str(entry.get("symbol")), str(rule))
        for entry in symbols
        if isinstance(entry, dict)
        for rule in entry.get("alerts") or ()
    }


def _post_alert_events(
    body: kopf.Body, before: set[tuple[str, str]], now: set[tuple[str, str]]
) -> None:
    for symbol, rule in sorted(now - before):
        kopf.warn(body, reason="MarketAlertFiring", message=f"{symbol}: alert {rule} firing")
    for symbol, rule in sorted(before - now):
        # kopf.event: kopf.info obeys the posting level (warning, for the logs' events).
        kopf.event(
            body,
            type="Normal",
            reason="MarketAlertResolved",
            message=f"{symbol}: alert {rule} resolved",
        )
