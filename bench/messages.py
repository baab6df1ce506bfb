"""Why the wire schemas are msgspec Structs: encode/decode cost of a top-20 book message.

Compares the candidates for the hot path (thousands of messages a second per process):
msgspec typed Structs (validating decode), orjson on plain dicts (no validation), pydantic
models, and the standard library's json; and the head of a book alone (``BookHead``: what the
storer decodes of a book its thinning leaves out). Run: ``uv run python bench/messages.py``.
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable

import msgspec
import orjson
import pydantic
from _report import report

from fairprice.common.messages import Book, BookHead, decode, encode

BOOK = Book(
    exchange="binance",
    symbol="BTCUSDT",
    update_id=40_000_000_123,
    first_update_id=40_000_000_100,
    event_time_ms=1_700_000_000_123,
    receive_time_ms=1_700_000_000_130,
    bids=[(f"{60000 - i * 0.01:.2f}", f"{0.5 + i:.8f}") for i in range(20)],
    asks=[(f"{60000.01 + i * 0.01:.2f}", f"{0.25 + i:.8f}") for i in range(20)],
)
DATA = encode(BOOK)


class PydanticBook(pydantic.BaseModel):
    exchange: str
    symbol: str
    update_id: int
    first_update_id: int
    event_time_ms: int
    receive_time_ms: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


def _per_call_us(fn: Callable[[], object], number: int = 20_000) -> float:
    timer = timeit.Timer(fn)
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def main() -> None:
    as_dict = orjson.loads(DATA)
    model = PydanticBook.model_validate_json(DATA)
    rows = [
        (
            "msgspec Struct (chosen)",
            _per_call_us(lambda: encode(BOOK)),
            _per_call_us(lambda: decode(DATA, Book)),
            "yes",
        ),
        (
            "orjson dict",
            _per_call_us(lambda: orjson.dumps(as_dict)),
            _per_call_us(lambda: orjson.loads(DATA)),
            "no",
        ),
        (
            "pydantic v2 model",
            _per_call_us(model.model_dump_json),
            _per_call_us(lambda: PydanticBook.model_validate_json(DATA)),
            "yes",
        ),
        (
            "stdlib json dict",
            _per_call_us(lambda: json.dumps(as_dict)),
            _per_call_us(lambda: json.loads(DATA)),
            "no",
        ),
        (
            "msgspec BookHead (the storer's thinning)",
            None,
            _per_call_us(lambda: decode(DATA, BookHead)),
            "yes",
        ),
        (
            "msgspec untyped",
            _per_call_us(lambda: msgspec.json.encode(as_dict)),
            _per_call_us(lambda: msgspec.json.decode(DATA)),
            "no",
        ),
    ]
    print(f"top-20 book message, {len(DATA)} bytes")
    report(
        "messages",
        ["library", "encode_us", "decode_us", "validates"],
        rows,
        message_bytes=len(DATA),
    )


if __name__ == "__main__":
    main()
