"""The InfluxDB 2 write endpoint in front of influxd 1.6, for the peer (bench/peer.py).

    python bench/influx_v2.py --port PORT --influx http://127.0.0.1:8086

cryptofeed's InfluxDB backend posts ``/api/v2/write?org=&bucket=B&precision=us``, which
influxd 1.6 does not serve (1.8 added it). This pass-through posts the body unchanged to
``/write?db=B&precision=u`` (1.x spells microseconds ``u``; it reads ``us`` as nanoseconds)
and answers with influxd's status and body. It runs as its own process so that the bench
reports its CPU apart from the peer's and influxd's.

``GET /metrics`` (Prometheus text): requests and points by influxd's status, and the
end-to-end latency of every point influxd acknowledged, from its exchange event time (the
``timestamp=`` field, seconds, that cryptofeed writes) to influxd's answer, in the same
buckets as the storer's histogram (so bench/end_to_end.py reads both the same way).
"""

from __future__ import annotations

import argparse
import re
import time

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from fairprice.storer.metrics import _E2E_BUCKETS

_EVENT_TIME = re.compile(rb"[ ,]timestamp=([0-9.e+-]+)")
_PRECISION = {"ns": "ns", "us": "u", "ms": "ms", "s": "s"}


class PassThrough:
    def __init__(self, influx_url: str) -> None:
        self.influx_url = influx_url
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "peer_influx_requests_total", "Writes posted", ["status"], registry=self.registry
        )
        self.points = Counter(
            "peer_influx_points_total", "Lines posted", ["status"], registry=self.registry
        )
        self.e2e = Histogram(
            "peer_influx_end_to_end_latency_seconds",
            "Exchange event time -> influxd's acknowledgement",
            buckets=_E2E_BUCKETS,
            registry=self.registry,
        )
        self.session: aiohttp.ClientSession | None = None

    async def write(self, request: web.Request) -> web.Response:
        body = await request.read()
        params = {
            "db": request.query.get("bucket", ""),
            "precision": _PRECISION.get(request.query.get("precision", "ns"), "ns"),
        }
        assert self.session is not None
        async with self.session.post(self.influx_url + "/write", params=params, data=body) as r:
            text = await r.read()
            status = r.status
        acked = time.time()
        lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
        self.requests.labels(str(status)).inc()
        self.points.labels(str(status)).inc(lines)
        if status < 300:
            for match in _EVENT_TIME.finditer(body):
                self.e2e.observe(acked - float(match.group(1)))
        return web.Response(status=status, body=text)

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain")

    async def _session(self, _: web.Application) -> None:
        self.session = aiohttp.ClientSession()

    async def _close(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/api/v2/write", self.write)
        app.router.add_get("/metrics", self.metrics)
        app.on_startup.append(self._session)
        app.on_cleanup.append(self._close)
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--influx", required=True, help="influxd 1.x base URL")
    args = parser.parse_args()
    # aiohttp stops on SIGTERM and SIGINT (GracefulExit), closing the session on the way.
    web.run_app(PassThrough(args.influx).app(), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
