"""``fairprice-converter`` / ``python -m fairprice.converter``."""

from __future__ import annotations

from fairprice.common.lifecycle import run_service
from fairprice.converter.service import run
from fairprice.converter.settings import ConverterSettings


def main() -> None:
    run_service("converter", ConverterSettings, run)


if __name__ == "__main__":
    main()
