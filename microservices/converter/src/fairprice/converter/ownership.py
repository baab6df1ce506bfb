"""``Ownership``: which partitions this replica owns, and the partition of each books subject.

Pure bookkeeping, no broker: the converter asks ``owns(subject)`` for every live book (a dict
lookup once the subject has been seen), and calls ``update(members)`` on every membership
change to learn which partitions it lost and gained.
"""

from __future__ import annotations

from fairprice.common.subjects import parse_subject
from fairprice.converter.partitions import owned_partitions, partition_of

__all__ = ["Ownership"]


class Ownership:
    def __init__(self, member_id: str, partitions: int) -> None:
        self._member_id = member_id
        self._count = partitions
        self._partitions: dict[str, int] = {}  # books subject -> partition (a cache)
        self.owned: frozenset[int] = frozenset()
        self.placed = False
        """Ownership has been computed at least once."""

    def partition(self, subject: str) -> int:
        partition = self._partitions.get(subject)
        if partition is None:
            _, exchange, symbol = parse_subject(subject)
            partition = partition_of(exchange, symbol, self._count)
            self._partitions[subject] = partition
        return partition

    def owns(self, subject: str) -> bool:
        """Whether the symbol of books ``subject`` is in an owned partition (read it each time:
        ownership changes between awaits)."""
        return self.partition(subject) in self.owned

    def update(self, members: tuple[str, ...]) -> tuple[frozenset[int], frozenset[int]]:
        """Own what rendezvous hashing gives this replica among ``members``: ``(lost,
        gained)``."""
        owned = owned_partitions(self._member_id, members, self._count)
        lost, gained = self.owned - owned, owned - self.owned
        self.owned = owned
        self.placed = True
        return lost, gained
