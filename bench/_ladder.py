"""Which symbol count a system is measured at next: up a ladder until one is not kept up with,
then halve the gap between the last that was and the first that was not."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Ladder:
    steps: list[int]
    bisect: int
    grain: int
    """Bisected counts are multiples of this."""
    good: int = 0
    bad: int = 0
    done: list[int] = field(default_factory=list)

    def next(self) -> int | None:
        """The next count to measure, or None when this system is done."""
        if not self.bad:
            ahead = [n for n in self.steps if n > max(self.done, default=0)]
            return ahead[0] if ahead else None
        if self.bisect <= 0:
            return None
        middle = (self.good + self.bad) // 2 // self.grain * self.grain
        return middle if middle > self.good and middle not in self.done else None

    def record(self, symbols: int, kept_up: bool) -> None:
        if self.bad:  # every count after the first failure is a bisection
            self.bisect -= 1
        self.done.append(symbols)
        if kept_up:
            self.good = max(self.good, symbols)
        else:
            self.bad = min(self.bad, symbols) if self.bad else symbols
