"""What tests share: the pytest plugin (``plugin``: fixtures ``nats_server``, ``bus``,
``influxd``, ``alertmanager``, the leaked-task check), ``eventually``, the recordings folder,
the server runners of ``fairprice.common.local_servers`` that the fixtures yield, and the
monitoring servers only tests start (``monitoring``: Prometheus, Alertmanager, a webhook
receiver).

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
from fairprice.common.testing.monitoring import (
    AlertmanagerServer,
    PrometheusServer,
    WebhookReceiver,
    run_alertmanager,
    run_prometheus,
    run_webhook_receiver,
)
from fairprice.common.testing.nats_users import (
    TEST_ADMIN,
    nats_env_of,
    nats_settings_of,
    run_secured_nats,
)
from fairprice.common.testing.polling import eventually

__all__ = [
    "TEST_ADMIN",
    "AlertmanagerServer",
    "InfluxServer",
    "NatsServer",
    "PrometheusServer",
    "ServerError",
    "WebhookReceiver",
    "eventually",
    "find_binary",
    "nats_env_of",
    "nats_settings_of",
    "recordings_dir",
    "run_alertmanager",
    "run_influxd",
    "run_nats",
    "run_prometheus",
    "run_secured_nats",
    "run_webhook_receiver",
]
