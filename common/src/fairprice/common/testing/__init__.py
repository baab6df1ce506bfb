"""Real servers for tests: ``run_nats()`` and ``run_influxd()``, and a pytest plugin.

Tests never mock the broker or the database: they start the real ``nats-server -js`` and
``influxd`` (1.x) on free loopback ports with their data in a temporary folder.
"""

from fairprice.common.testing.data import recordings_dir
from fairprice.common.testing.polling import eventually
from fairprice.common.testing.servers import (
    InfluxServer,
    NatsServer,
    ServerError,
    find_binary,
    run_influxd,
    run_nats,
)

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
