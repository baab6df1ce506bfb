"""Binance's JSON payloads, byte for byte in the shapes its spot API documents.

Key order follows Binance's own frames (see the recordings in shared/data/binance-recordings):
``{"e":"depthUpdate","E":..,"s":..,"U":..,"u":..,"b":[[p,q]..],"a":[..]}``,
``{"lastUpdateId":..,"bids":..,"asks":..}``, ``{"u":..,"s":..,"b":..,"B":..,"a":..,"A":..}``,
combined streams ``{"stream":"<name>","data":<payload>}``.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "book_ticker",
    "combined",
    "depth_update",
    "encode",
    "error_body",
    "method_error",
    "method_result",
    "partial_book",
    "server_shutdown",
]

encode = msgspec.json.Encoder().encode


def depth_update(
    event_time: int,
    symbol: str,
    first: int,
    final: int,
    bids: list[list[str]],
    asks: list[list[str]],
) -> bytes:
    return encode(
        {
            "e": "depthUpdate",
            "E": event_time,
            "s": symbol,
            "U": first,
            "u": final,
            "b": bids,
            "a": asks,
        }
    )


def partial_book(last_update_id: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    return encode({"lastUpdateId": last_update_id, "bids": bids, "asks": asks})


def book_ticker(
    update_id: int, symbol: str, bid: str, bid_qty: str, ask: str, ask_qty: str
) -> bytes:
    return encode({"u": update_id, "s": symbol, "b": bid, "B": bid_qty, "a": ask, "A": ask_qty})


def combined(stream: bytes, payload: bytes) -> bytes:
    """The combined-stream wrapper around an already encoded payload (no re-encoding)."""
    return b'{"stream":"' + stream + b'","data":' + payload + b"}"


def server_shutdown(event_time: int) -> bytes:
    return encode({"e": "serverShutdown", "E": event_time})


def method_result(result: object, request_id: object) -> bytes:
    return encode({"result": result, "id": request_id})


def method_error(code: int, msg: str, request_id: object) -> bytes:
    """A WebSocket method error as Binance sends it: ``{"error":{"code":2,"msg":..},"id":..}``."""
    return encode({"error": {"code": code, "msg": msg}, "id": request_id})


def error_body(code: int, msg: str) -> bytes:
    """A REST error body: ``{"code":-1121,"msg":"Invalid symbol."}``."""
    return encode({"code": code, "msg": msg})
