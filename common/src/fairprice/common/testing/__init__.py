"""What tests share: the pytest plugin (``plugin``: fixtures ``nats_server``, ``bus``,
``influxd``, the leaked-task check), ``eventually``, the recordings folder, and the server
runners of ``fairprice.common.local_servers`` that the fixtures yield.

Tests never mock the broker or the database: they start the real ``nats-server -js`` and
``influxd`` (1.x) on free loopback ports with their data in a temporary folder.
"""

from fairprice.common.local_servers import (
    InfluxServer,
    NatsServer,
    ServerError,
    find_binary,
    run_influxd,
    run_nats,
)
from fairprice.common.testing.data import recordings_dir
from fairprice.common.testing.polling import eventually

__all__ = [
    "InfluxServer",
    "NatsServer",
    "ServerError",
    "eventually",
    "find_binary",
    "recordings_dir",
    "run_influxd",
    "run_nats",
]
