"""Each service's NATS user may do its job and nothing else, on the real nats-server.

One server for the module, holding every stream and bucket (created by the tests' admin), so
that a refusal is the permissions' doing and not a missing stream. An attempt is a raw publish
or subscription as the role's user; the server answers one outside the user's permissions
with ``Permissions Violation`` before the flush's PONG, so each verdict is exact, with no
waiting. A refused JetStream API request would otherwise have been carried out: the streams
and buckets are checked unchanged afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client

from fairprice.common.bus import connect_bus, ensure_streams
from fairprice.common.errors import FatalError
from fairprice.common.kv import Bucket, kv_stream, open_bucket
from fairprice.common.local_servers import NatsServer
from fairprice.common.nats_permissions import Role, inbox_prefix
from fairprice.common.settings import NatsSettings, StreamsSettings
from fairprice.common.subjects import DEADLETTER_STREAM, Stream
from fairprice.common.testing import eventually, nats_settings_of, run_secured_nats

pytestmark = pytest.mark.asyncio(loop_scope="module")

STREAMS = StreamsSettings(storage="memory", partitions=4)
EVERY_STREAM = [s.value for s in Stream] + [kv_stream(b) for b in Bucket]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    async with run_secured_nats(tmp_path_factory.mktemp("nats-permissions")) as running:
        async with connect_bus(nats_settings_of(running), name="setup") as bus:
            await ensure_streams(bus.jsm, STREAMS)
            await bus.jsm.add_stream(name=DEADLETTER_STREAM, subjects=["deadletter.>"])
            for bucket in Bucket:
                await open_bucket(bus.js, bucket)
        yield running


SENTINEL = "fairprice.nobody"
"""A subject nobody may publish to: its refusal, reported last, means every attempt before it
has been reported (the server answers in order)."""


class Attempts:
    """A role's raw connection and the permission violations the server reported to it."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    async def verdicts(self, attempts: list[tuple[str, str]]) -> list[bool]:
        """Whether each ``(action, subject)`` was refused."""
        for action, subject in attempts:
            if action == "publish":
                await self.nc.publish(subject, b"{}")
            else:
                await self.nc.subscribe(subject)
        await self.nc.publish(SENTINEL, b"")
        await eventually(lambda: _violation("publish", SENTINEL) in self.errors, within=10)
        return [_violation(*attempt) in self.errors for attempt in attempts]


def _violation(action: str, subject: str) -> str:
    kind = "publish" if action == "publish" else "subscription"
    return f'nats: permissions violation for {kind} to "{subject}"'.lower()


async def _attempts(server: NatsServer, role: Role) -> Attempts:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    nc = await nats.connect(
        server.url,
        user=role.value,
        password=server.passwords[role.value],
        inbox_prefix=inbox_prefix(role.value),
        error_cb=on_error,
        allow_reconnect=False,
    )
    return Attempts(nc, errors)


REFUSED = [
    (Role.CRAWLER, "publish", "prices.sim.XUSDT"),
    (Role.CRAWLER, "publish", "$KV.feeds.markets.fake"),
    (Role.CRAWLER, "publish", "$KV.latest.sim.XUSDT"),
    (Role.CRAWLER, "publish", "$JS.API.STREAM.DELETE.BOOKS"),
    (Role.CRAWLER, "publish", "$JS.API.STREAM.PURGE.BOOKS"),
    (Role.CRAWLER, "publish", "$JS.API.CONSUMER.CREATE.PRICES"),
    (Role.CRAWLER, "subscribe", "books.>"),
    (Role.CONVERTER, "publish", "books.sim.XUSDT"),
    (Role.CONVERTER, "publish", "deadletter.storer.books"),
    (Role.CONVERTER, "publish", "$KV.feeds.markets.fake"),
    (Role.CONVERTER, "publish", "$JS.API.STREAM.UPDATE.BOOKS"),
    (Role.CONVERTER, "publish", "$JS.API.STREAM.DELETE.PRICES"),
    (Role.CONVERTER, "publish", "$JS.API.STREAM.PURGE.CANDLES"),
    (Role.CONVERTER, "publish", "$JS.API.STREAM.DELETE.KV_latest"),
    (Role.STORER, "publish", "books.sim.XUSDT"),
    (Role.STORER, "publish", "prices.sim.XUSDT"),
    (Role.STORER, "publish", "$KV.feeds.markets.fake"),
    (Role.STORER, "publish", "$JS.API.STREAM.UPDATE.BOOKS"),
    (Role.STORER, "publish", "$JS.API.STREAM.DELETE.DEADLETTER"),
    (Role.STORER, "publish", "$JS.API.CONSUMER.CREATE.KV_feeds"),
    (Role.OPERATOR, "publish", "books.sim.XUSDT"),
    (Role.OPERATOR, "publish", "$KV.latest.sim.XUSDT"),
    (Role.OPERATOR, "publish", "$JS.API.STREAM.DELETE.KV_feeds"),
    (Role.OPERATOR, "publish", "$JS.API.CONSUMER.CREATE.BOOKS"),
    (Role.API, "publish", "prices.sim.XUSDT"),
    (Role.API, "publish", "$KV.latest.sim.XUSDT"),
    (Role.API, "publish", "$JS.API.STREAM.UPDATE.PRICES"),
    (Role.API, "publish", "$JS.API.CONSUMER.CREATE.BOOKS"),
    (Role.API, "subscribe", f"{inbox_prefix('converter')}.>"),
    (Role.VIEWER, "publish", "books.sim.XUSDT"),
    (Role.VIEWER, "publish", "$KV.feeds.markets.fake"),
    (Role.VIEWER, "publish", "$JS.API.STREAM.CREATE.BOOKS"),
    (Role.VIEWER, "publish", "$JS.API.STREAM.DELETE.BOOKS"),
    (Role.VIEWER, "publish", "$JS.API.CONSUMER.CREATE.PRICES"),
    (Role.VIEWER, "subscribe", "_INBOX.>"),
]
"""What each service's user tried outside its job, every one refused."""

ALLOWED = [
    (Role.CRAWLER, "publish", "books.sim.XUSDT"),
    (Role.CRAWLER, "publish", "$KV.members.crawler.a"),
    (Role.CONVERTER, "publish", "prices.sim.XUSDT"),
    (Role.CONVERTER, "publish", "$KV.latest.sim.XUSDT"),
    (Role.CONVERTER, "publish", "$JS.API.CONSUMER.CREATE.BOOKS"),
    (Role.STORER, "publish", "deadletter.storer.books"),
    (Role.STORER, "publish", "$JS.ACK.BOOKS.storer-books.1.1.1.1.0"),
    (Role.OPERATOR, "publish", "$KV.feeds.markets.btc"),
    (Role.API, "publish", "$JS.API.DIRECT.GET.KV_latest.$KV.latest.sim.XUSDT"),
    (Role.VIEWER, "publish", "$JS.API.STREAM.LIST"),
    (Role.VIEWER, "subscribe", "prices.>"),
]
"""The same kind of attempt, within the job: not refused (the check can tell them apart)."""


async def test_permissions_refuse_each_attempt_outside_a_services_job(
    server: NatsServer,
) -> None:
    async with connect_bus(nats_settings_of(server), name="check") as bus:
        before = {name: (await bus.jsm.stream_info(name)).config for name in EVERY_STREAM}
    outcome: dict[tuple[Role, str, str], bool] = {}
    for role in Role:
        tried = [a for a in REFUSED + ALLOWED if a[0] is role]
        attempts = await _attempts(server, role)
        try:
            verdicts = await attempts.verdicts([(action, subject) for _, action, subject in tried])
        finally:
            await attempts.nc.close()
        outcome |= dict(zip(tried, verdicts, strict=True))
    print(
        "\n".join(
            f"{r.value:9} {a:9} {s}: {'refused' if v else 'allowed'}"
            for (r, a, s), v in outcome.items()
        )
    )
    assert [a for a in REFUSED if not outcome[a]] == []
    assert [a for a in ALLOWED if outcome[a]] == []
    async with connect_bus(nats_settings_of(server), name="check") as bus:
        after = {name: (await bus.jsm.stream_info(name)).config for name in EVERY_STREAM}
    assert after == before  # no stream deleted, purged (its config stays) or updated
    # The server logs each refusal: what the end-to-end tests check is absent.
    assert any('"prices.sim.XUSDT"' in line for line in server.refusals())


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, None), ("crawler", "wrong"), ("operator", "crawler's"), ("nobody", "x")],
)
async def test_connection_without_valid_credentials_is_refused(
    server: NatsServer, user: str | None, password: str | None
) -> None:
    """No credentials, a wrong password, another user's password, an unknown user: the
    service stops with a clear error instead of retrying for ever."""
    if password == "crawler's":
        password = server.passwords["crawler"]
    settings = NatsSettings.model_validate(
        {"servers": [server.url], "user": user, "password": password}
    )
    with pytest.raises(FatalError, match="refused the credentials"):
        async with connect_bus(settings, name="intruder"):
            pass
