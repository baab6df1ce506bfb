"""Where the shared test data lives: real Binance recordings beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RECORDINGS_ENV", "recordings_dir"]

RECORDINGS_ENV = "FAIRPRICE_RECORDINGS"
# common/src/fairprice/common/testing/data.py -> the repository root is five folders up, and
# the project's shared data sits beside it (../shared/data/binance-recordings).
_BESIDE_REPO = Path(__file__).resolve().parents[5].parent / "shared/data/binance-recordings"


def recordings_dir() -> Path:
    """The recordings folder (``$FAIRPRICE_RECORDINGS``, else ../shared/data/...).

    A missing folder is an error, not a skip: the golden tests are the proof that order books
    are rebuilt correctly, and CI always has the data beside the clone.
    """
    path = Path(os.environ.get(RECORDINGS_ENV) or _BESIDE_REPO)
    if not path.is_dir():
        raise FileNotFoundError(
            f"Binance recordings not found at {path}: the golden tests need "
            f"../shared/data/binance-recordings beside the repository (or ${RECORDINGS_ENV})"
        )
    return path
