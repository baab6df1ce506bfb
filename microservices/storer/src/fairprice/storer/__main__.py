"""``fairprice-storer`` / ``python -m fairprice.storer``."""

from __future__ import annotations

from fairprice.common.lifecycle import run_service
from fairprice.storer.service import run
from fairprice.storer.settings import StorerSettings

__all__ = ["main"]


def main() -> None:
    run_service("storer", StorerSettings, run)


if __name__ == "__main__":
    main()
