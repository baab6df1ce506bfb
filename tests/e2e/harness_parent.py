"""A program that runs a ``Pipeline`` until a signal ends it (tests/e2e/test_harness_exit.py).

    python tests/e2e/harness_parent.py WORKDIR

nats-server, influxd, the storer and the converter, plus one extra process started through
``Pipeline.spawn`` (as bench/peer.py starts the peer); prints one JSON line with every child's
PID once all are up, then waits.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from fairprice.cli.processes import Pipeline

# An extra child that ignores SIGTERM, as a service whose NATS is gone may (issue 14).
STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)"


async def main(workdir: Path) -> None:
    replicas = {"simulator": 0, "crawler": 0}
    async with Pipeline(workdir, symbols=["BTCUSDT"], replicas=replicas) as pipeline:
        extra = await pipeline.spawn("stubborn", [sys.executable, "-c", STUBBORN], grace_s=2)
        pids = [p.proc.pid for p in pipeline.processes if p.proc is not None]
        for server in (pipeline.nats, pipeline.influxd):
            assert server.process is not None
            pids.append(server.process.pid)
        print(json.dumps({"pids": pids, "extra": extra.proc.pid if extra.proc else None}))
        sys.stdout.flush()
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
