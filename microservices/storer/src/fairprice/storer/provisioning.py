"""The storer's start-up on InfluxDB: the database, its retention policy and the users.

With ``[storer.provisioning]`` admin credentials (a cluster's generated Secret, a local run's
or a test's), the storer connects as the admin once, at start-up, to create the database and
retention policy and the users, each with one right on the database:

| user | right | used by |
|---|---|---|
| ``[influx] username`` of the storer | ``WRITE`` | the storer (it can neither read nor drop) |
| ``[storer.provisioning] reader_username`` | ``READ`` | Grafana, the price API, ``fairprice`` |

and then writes as its own user only; nothing else ever holds the admin's password at run
time. Without admin credentials it creates the database and policy with its own user (which
then needs that right: InfluxDB without authentication).
"""

from __future__ import annotations

from fairprice.common.settings import InfluxSettings
from fairprice.storer.influx import InfluxWriter
from fairprice.storer.settings import ProvisioningSettings

__all__ = ["READ", "WRITE", "provision"]

WRITE = "WRITE"
READ = "READ"


async def provision(influx: InfluxSettings, settings: ProvisioningSettings) -> None:
    """Create the database, its retention policy and the users, idempotently (1.x)."""
    if settings.admin_username is None or influx.api == "v2":
        async with InfluxWriter(influx) as own:
            await own.ensure_database()
        return
    admin = influx.model_copy(
        update={"username": settings.admin_username, "password": settings.admin_password}
    )
    async with InfluxWriter(admin) as writer:
        await writer.ensure_database()
        if influx.username is not None and influx.password is not None:
            await writer.ensure_user(influx.username, influx.password.get_secret_value(), WRITE)
        if settings.reader_password is not None:
            await writer.ensure_user(
                settings.reader_username, settings.reader_password.get_secret_value(), READ
            )
