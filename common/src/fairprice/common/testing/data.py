"""Where the shared test data lives: real Binance recordings beside the repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["RECORDINGS_ENV", "recordings_dir"]

RECORDINGS_ENV = "FAIRPRICE_RECORDINGS"
_RELATIVE = Path("shared/data/binance-recordings")
# common/src/fairprice/common/testing/data.py -> the repository root is five folders up.
_REPO = Path(__file__).resolve().parents[5]


def _candidates() -> list[Path]:
    named = os.environ.get(RECORDINGS_ENV)
    if named:
        return [Path(named)]
    found = [_REPO.parent / _RELATIVE]
    # A clone made elsewhere (e.g. a scratch CI run) looks beside the repository it was
    # cloned from, when that is a local folder.
    try:
        origin = subprocess.run(
            ["git", "-C", str(_REPO), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        origin = ""
    if origin and Path(origin).is_dir():
        found.append(Path(origin).resolve().parent / _RELATIVE)
    return found


def recordings_dir() -> Path:
    """The recordings folder: ``$FAIRPRICE_RECORDINGS``, else ../shared/data/... beside the
    repository (or beside the local repository it was cloned from).

    A missing folder is an error, not a skip: the golden tests are the proof that order books
    are rebuilt correctly, and CI always has the data beside the clone.
    """
    candidates = _candidates()
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"Binance recordings not found at {' or '.join(map(str, candidates))}: the golden "
        f"tests need ../shared/data/binance-recordings beside the repository "
        f"(or ${RECORDINGS_ENV})"
    )
