"""fairprice.common: what every fairprice service shares.

Modules, each small and named for what it holds:

- ``errors``: the exception hierarchy (transient vs fatal).
- ``settings``: pydantic-settings loading from TOML + ``FAIRPRICE_*`` environment.
- ``messages``: the wire schemas (msgspec) of books, fair prices, signals and candles.
- ``subjects``: stream names, subjects and message ids (the one place they are spelled).
- ``intervals``: candle interval names and lengths.
- ``feeds``: a feed's parameters (symbols, pricing, candles, indicators, strategies).
- ``bus``: NATS connection, JetStream streams, consumers and the batched publisher.
- ``health``: the ``/healthz`` ``/readyz`` ``/metrics`` HTTP server.
- ``logs``: structured logging.
- ``lifecycle``: signal handling and the ``run(settings, stop=, ready=)`` shape.
- ``testing``: real nats-server / influxd fixtures for tests.
"""
