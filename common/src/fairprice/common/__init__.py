"""fairprice.common: what every fairprice service shares.

Modules, each small and named for what it holds. The JetStream boundary (nothing above it
imports nats-py's errors or parses a reply subject):

- ``bus``: the NATS connection (``connect_bus``) and the JetStream streams (``ensure_streams``).
- ``publisher``: the batched, in-order publisher that waits for every ack.
- ``consumer``: the durable pull consumer (``PullConsumer``), shared by replicas.
- ``tail``: ordered, ack-less reading of a stream from a chosen point (``StreamTail``).
- ``delivery``: a delivered message's JetStream metadata, from its reply subject.
- ``broker_errors``: nats-py's errors translated into ``BrokerError`` / ``NotFoundError``.
- ``kv``: the KV buckets, their keys, and a consistent snapshot of a bucket.
- ``membership``: replicas' heartbeats in KV and rendezvous ownership.
- ``nats_permissions``: each service's NATS user and what it may do (the one table), and
  ``nats_config``: the nats-server configuration holding those users (local runs, tests, the
  chart's and overlays' generated ``nats-users.conf``), and TLS.

The rest:

- ``errors``: the exception hierarchy (transient vs fatal).
- ``retry``: the one retry policy (``Backoff``: capped exponential, full jitter).
- ``settings``: pydantic-settings loading from TOML + ``FAIRPRICE_*`` environment.
- ``messages``: the wire schemas (msgspec) of books, fair prices, signals and candles.
- ``subjects``: stream names, subjects and message ids (the one place they are spelled).
- ``intervals``: candle interval names and lengths.
- ``feeds``: a feed's parameters (symbols, pricing, candles, indicators, strategies) and reading
  them from KV.
- ``health``: the ``/healthz`` ``/readyz`` ``/metrics`` HTTP server.
- ``logs``: structured logging.
- ``lifecycle``: signal handling and ``run_service``, the ``run(settings, stop=, ready=)`` shape.
- ``local_servers``: the real nats-server and influxd as child processes (``fairprice
  run``/``demo``, tests, benchmarks).
- ``testing``: the pytest plugin (fixtures on real servers), ``eventually``, test data.
"""
