"""A Binance-compatible spot exchange for tests, demos and benchmarks."""
