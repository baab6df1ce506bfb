"""nats-py's errors are translated at the bus, once: nothing above it names them."""

from __future__ import annotations

import re
from pathlib import Path

import nats.errors
import nats.js.errors
import pytest

from fairprice.common.broker_errors import broker_errors
from fairprice.common.bus import Bus
from fairprice.common.errors import BrokerError, NotFoundError, TransientError

ROOT = Path(__file__).resolve().parents[2]
COMMON = ROOT / "common" / "src" / "fairprice" / "common"
BUS_MODULES = {COMMON / f"{name}.py" for name in ("broker_errors", "bus", "consumer", "kv")}
NATS_ERROR = re.compile(r"\bnats\.(js\.)?errors\b|from nats(\.js)? import errors")


def _sources() -> list[Path]:
    roots = [ROOT / "common" / "src", ROOT / "cli" / "src", ROOT / "simulator" / "src"]
    roots += sorted((ROOT / "microservices").glob("*/src"))
    return [path for root in roots for path in sorted(root.rglob("*.py"))]


def test_no_module_above_the_bus_names_a_nats_error() -> None:
    sources = _sources()
    assert len(sources) > 50
    naming = [
        str(path.relative_to(ROOT))
        for path in sources
        if path not in BUS_MODULES and NATS_ERROR.search(path.read_text())
    ]
    assert naming == []


async def test_a_missing_key_is_not_found_and_a_dead_call_a_broker_error(bus: Bus) -> None:
    kv = await bus.js.create_key_value(bucket="t")
    with pytest.raises(NotFoundError, match="^key k: "), broker_errors("key k"):
        await kv.get("k")
    with pytest.raises(BrokerError, match="^request: ") as caught, broker_errors("request"):
        await bus.nc.request("nobody.listens", b"", timeout=0.5)
    assert isinstance(caught.value, TransientError)
    assert isinstance(caught.value.__cause__, nats.errors.Error)
    assert not isinstance(caught.value, nats.js.errors.Error)
