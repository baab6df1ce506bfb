"""The OpenAPI document, as the service serves it at ``/openapi.json``.

``python -m fairprice.api.openapi docs/openapi.json`` writes it (``make openapi``); a test
checks that the committed copy equals what the code generates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from fairprice.api.app import create_app
from fairprice.api.metrics import ApiMetrics
from fairprice.api.settings import ApiSection

__all__ = ["document", "main", "render"]


def document() -> dict[str, Any]:
    """The document of an API with default settings."""
    spec: dict[str, Any] = create_app(ApiSection(), ApiMetrics(CollectorRegistry())).openapi()
    return spec


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m fairprice.api.openapi PATH", file=sys.stderr)
        return 2
    Path(args[0]).write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
