"""``fairprice-api`` / ``python -m fairprice.api``."""

from __future__ import annotations

from fairprice.api.service import run
from fairprice.api.settings import ApiSettings
from fairprice.common.lifecycle import run_service

__all__ = ["main"]


def main() -> None:
    run_service("api", ApiSettings, run)


if __name__ == "__main__":
    main()
