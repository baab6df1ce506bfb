"""fairprice price API: latest prices, history and a live stream over HTTP (docs/api.md)."""
