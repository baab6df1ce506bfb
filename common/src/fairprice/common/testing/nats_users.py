"""nats-server as the cluster runs it, for tests: every service's user and permissions
(``fairprice.common.nats_permissions``) plus ``TEST_ADMIN``, the tests' own client with every
right (fixtures publish books and read any stream)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import SecretStr

from fairprice.common.local_servers import NatsServer, run_nats
from fairprice.common.nats_config import TlsFiles, local_users
from fairprice.common.settings import NatsSettings

__all__ = ["TEST_ADMIN", "nats_env_of", "nats_settings_of", "run_secured_nats"]

TEST_ADMIN = "pytest"


@contextlib.asynccontextmanager
async def run_secured_nats(
    workdir: Path | None = None, port: int = 0, *, tls: TlsFiles | None = None
) -> AsyncIterator[NatsServer]:
    """``run_nats`` with every role's user (random passwords, in ``server.passwords``)."""
    users = local_users(admins=(TEST_ADMIN,), tls=tls)
    async with run_nats(workdir, port, config=users.config, passwords=users.passwords) as server:
        yield server


def nats_settings_of(server: NatsServer, user: str = TEST_ADMIN) -> NatsSettings:
    """Settings that connect to ``server`` as ``user`` (a role's name, or ``TEST_ADMIN``)."""
    return NatsSettings(
        servers=[server.url],
        reconnect_wait_s=0.2,
        user=user,
        password=SecretStr(server.passwords[user]),
    )


def nats_env_of(server: NatsServer, user: str) -> dict[str, str]:
    """The ``FAIRPRICE_NATS__*`` variables that connect a process to ``server`` as ``user``."""
    return {
        "FAIRPRICE_NATS__SERVERS": json.dumps([server.url]),
        "FAIRPRICE_NATS__USER": user,
        "FAIRPRICE_NATS__PASSWORD": server.passwords[user],
    }
