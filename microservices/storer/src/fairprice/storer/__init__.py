"""fairprice storer: books, fair prices, signals and candles from JetStream into InfluxDB.

See docs/storer.md. ``run`` is the service; ``StorerSettings`` its settings.
"""

from fairprice.storer.service import run
from fairprice.storer.settings import StorerSettings

__all__ = ["StorerSettings", "run"]
