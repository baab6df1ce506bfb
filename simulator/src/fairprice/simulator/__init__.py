"""A Binance-compatible spot exchange for tests, demos and benchmarks.

``async with run_simulator(SimulatorSection(port=0)) as sim:`` then point a Binance client at
``sim.rest_url`` and ``sim.ws_url``; ``sim.true_book(symbol, update_id)`` is the truth to check
it against, ``sim.set_faults(...)``, ``sim.disconnect(...)`` and ``sim.server_shutdown(...)``
break things on demand. ``fairprice-sim`` runs it as a service.
"""

from fairprice.simulator.faults import FaultPlan
from fairprice.simulator.market import BookView, HistoryError
from fairprice.simulator.server import Simulator, run_simulator
from fairprice.simulator.settings import (
    FaultSettings,
    MarketSettings,
    SimulatorSection,
    SimulatorSettings,
)

__all__ = [
    "BookView",
    "FaultPlan",
    "FaultSettings",
    "HistoryError",
    "MarketSettings",
    "SimulatorSection",
    "SimulatorSettings",
    "Simulator",
    "run_simulator",
]
