"""Raw exchange traffic on disk: the ``--record`` writer and the readers of two formats.

fairprice format (what ``fairprice-crawler --record DIR`` writes): ``DIR/traffic.jsonl``, one
JSON object per line in the order things happened, ``t`` the local receipt time (epoch
seconds, float):

    {"t":..,"kind":"open","conn":1,"url":"wss://.../stream"}
    {"t":..,"kind":"send","conn":1,"data":"{\\"method\\":\\"SUBSCRIBE\\",..}"}
    {"t":..,"kind":"ws","conn":1,"data":"<the text frame exactly as received>"}
    {"t":..,"kind":"close","conn":1,"data":"<why>"}
    {"t":..,"kind":"rest","url":"https://.../api/v3/depth?symbol=..","status":200,
     "weight":"<X-MBX-USED-WEIGHT-1M>","data":"<the body exactly as received>"}

cryptofeed format (its raw-data collector, e.g. ../shared/data/binance-recordings): files
``<EXCHANGE>.ws.<conn>.<n>`` whose first line is ``<url> <-> <epoch s>`` and every later line
``<epoch s>: <frame>``, and ``<EXCHANGE>.http.<n>.<n>`` with lines ``<url> -> <epoch s>: <body>``.
Reading merges all files into one timeline by receipt time.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import msgspec

from fairprice.common.errors import InvalidMessageError

__all__ = ["Format", "Record", "Recorder", "read_recording"]

TRAFFIC_FILE = "traffic.jsonl"

Kind = Literal["open", "send", "ws", "close", "rest"]


class Format(enum.StrEnum):
    FAIRPRICE = "fairprice"
    CRYPTOFEED = "cryptofeed"


class Record(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One thing that happened on the wire."""

    t: float
    kind: Kind
    conn: int = 0
    url: str = ""
    status: int = 0
    weight: str = ""
    data: str = ""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Record).decode


class Recorder:
    """Appends records to ``DIR/traffic.jsonl`` (``with Recorder(dir) as rec: rec.ws(..)``)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / TRAFFIC_FILE
        self._directory = directory
        self._file: IO[bytes] | None = None

    def __enter__(self) -> Recorder:
        self._directory.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, kind: Kind, **fields: str | int) -> None:
        if self._file is None:
            return
        record = Record(t=time.time(), kind=kind, **fields)  # type: ignore[arg-type]
        self._file.write(_encode(record) + b"\n")


def read_recording(directory: Path, fmt: Format = Format.FAIRPRICE) -> list[Record]:
    """Every record of a recording, in receipt-time order."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory")
    if fmt is Format.FAIRPRICE:
        path = directory / TRAFFIC_FILE
        if not path.is_file():
            hint = (
                " (a cryptofeed recording? use --format cryptofeed)"
                if any(directory.glob("*.ws.*"))
                else ""
            )
            raise FileNotFoundError(f"{path}: no such file{hint}")
        records = list(_read_fairprice(path))
    else:
        records = []
        for path in sorted(directory.glob("*.ws.*")):
            records.extend(_read_cryptofeed_ws(path))
        for path in sorted(directory.glob("*.http.*")):
            records.extend(_read_cryptofeed_http(path))
        if not records:
            raise FileNotFoundError(f"{directory}: no <EXCHANGE>.ws.* or .http.* files")
    records.sort(key=lambda record: record.t)  # stable: same-time records keep file order
    return records


def _read_fairprice(path: Path) -> Iterator[Record]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield _decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise InvalidMessageError(f"{path}:{number}: {exc}") from exc


def _read_cryptofeed_ws(path: Path) -> Iterator[Record]:
    conn = _conn_number(path)
    with path.open(encoding="utf-8") as lines:
        header = lines.readline().rstrip("\n")
        url, sep, opened = header.rpartition(" <-> ")
        if not sep:
            raise InvalidMessageError(f"{path}:1: expected '<url> <-> <time>'")
        yield Record(t=float(opened), kind="open", conn=conn, url=url)
        for number, line in enumerate(lines, 2):
            stamp, sep, frame = line.rstrip("\n").partition(": ")
            if not sep:
                if line.strip():
                    raise InvalidMessageError(f"{path}:{number}: expected '<time>: <frame>'")
                continue
            yield Record(t=float(stamp), kind="ws", conn=conn, data=frame)


def _read_cryptofeed_http(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            url, sep, rest = line.rstrip("\n").partition(" -> ")
            stamp, sep2, body = rest.partition(": ")
            if not (sep and sep2):
                if line.strip():
                    raise InvalidMessageError(
                        f"{path}:{number}: expected '<url> -> <time>: <body>'"
                    )
                continue
            yield Record(t=float(stamp), kind="rest", url=url, status=200, data=body)


def _conn_number(path: Path) -> int:
    # BINANCE.ws.<conn>.<n>
    parts = path.name.split(".")
    try:
        return int(parts[2])
    except (IndexError, ValueError):
        return 0
