"""``SymbolState``: what a replica holds for one symbol it owns."""

from __future__ import annotations

from dataclasses import dataclass, field

from fairprice.converter.symbol_pipeline import SymbolPipeline

__all__ = ["SymbolState"]


@dataclass(eq=False)
class SymbolState:
    subject: str
    """The symbol's books subject."""
    exchange: str
    symbol: str
    pipeline: SymbolPipeline | None = None
    """``None`` while the state is being rebuilt (``takeover``); live books are buffered."""
    buffer: list[tuple[int, bytes]] = field(default_factory=list)
    """Live books (stream sequence, payload) that arrived during the rebuild."""
    last_seq: int = 0
    """The stream sequence of the last book handled."""
