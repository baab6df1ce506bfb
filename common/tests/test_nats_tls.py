"""TLS to NATS, switched on (``tls`` in the server's configuration, ``[nats] tls_ca_file`` in
the client's), with a self-signed certificate this module makes with openssl: a client
verifies the server's certificate, and a plain-text client is refused."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from fairprice.common.bus import connect_bus
from fairprice.common.errors import FatalError
from fairprice.common.local_servers import NatsServer
from fairprice.common.nats_config import TlsFiles
from fairprice.common.testing import nats_settings_of, run_secured_nats

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _self_signed(folder: Path, name: str) -> TlsFiles:
    """A certificate for 127.0.0.1 (its own CA), valid for a day."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return TlsFiles(cert=cert, key=key)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsFiles]:
    folder = tmp_path_factory.mktemp("tls")
    return {name: _self_signed(folder, name) for name in ("server", "other")}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, certificates: dict[str, TlsFiles]
) -> AsyncIterator[NatsServer]:
    tls = certificates["server"]
    async with run_secured_nats(tmp_path_factory.mktemp("nats-tls"), tls=tls) as running:
        yield running


async def test_client_verifying_the_servers_certificate_connects(
    server: NatsServer, certificates: dict[str, TlsFiles]
) -> None:
    """The server takes nothing but TLS: a JetStream round trip is one through TLS."""
    settings = nats_settings_of(server).model_copy(
        update={"tls_ca_file": certificates["server"].cert}
    )
    async with connect_bus(settings, name="tls") as bus:
        await bus.jsm.add_stream(name="TLS", subjects=["tls.>"])
        ack = await bus.js.publish("tls.x", b"over tls")
        assert (await bus.jsm.get_msg("TLS", ack.seq)).data == b"over tls"


@pytest.mark.parametrize("ca", [None, "other"])
async def test_certificate_that_does_not_verify_stops_the_client(
    server: NatsServer, certificates: dict[str, TlsFiles], ca: str | None
) -> None:
    """No CA (the system's, which never signed it) or another one: refused, with the reason."""
    tls_ca_file = certificates[ca].cert if ca else None
    settings = nats_settings_of(server, "storer").model_copy(update={"tls_ca_file": tls_ca_file})
    with pytest.raises(FatalError, match="did not verify"):
        async with connect_bus(settings, name="unverified"):
            pass


async def test_plain_text_client_is_refused(server: NatsServer) -> None:
    """A client that speaks NATS in plain text (CONNECT and PING without a TLS handshake)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        info = await reader.readline()
        assert b'"tls_required":true' in info
        password = server.passwords["storer"]
        writer.write(
            b'CONNECT {"user":"storer","pass":"' + password.encode() + b'","verbose":false}\r\n'
            b"PING\r\n"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(200), 10)
    finally:
        writer.close()
    assert answer == b""  # the server closed the connection: no PONG, nothing at all
    assert "TLS handshake error" in server.log_path.read_text()
