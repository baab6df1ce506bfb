"""``Ownership``: which partitions this replica owns, and the partition of each books subject.

Pure bookkeeping, no broker: a stored book's subject carries its partition
(``books.<partition>.<exchange>.<SYMBOL>``, put there by the BOOKS stream's subject transform),
so ``owns(subject)`` is a dict lookup once the subject has been seen; ``update(members)`` on
every membership change tells which partitions were lost and gained.
"""

from __future__ import annotations

from fairprice.common.subjects import books_partition
from fairprice.converter.partitions import owned_partitions

__all__ = ["Ownership"]


class Ownership:
    def __init__(self, member_id: str, partitions: int) -> None:
        self._member_id = member_id
        self._count = partitions
        self._partitions: dict[str, int] = {}  # stored books subject -> partition (a cache)
        self.owned: frozenset[int] = frozenset()
        self.placed = False
        """Ownership has been computed at least once."""

    def partition(self, subject: str) -> int:
        partition = self._partitions.get(subject)
        if partition is None:
            partition = self._partitions[subject] = books_partition(subject)
        return partition

    def owns(self, subject: str) -> bool:
        """Whether the stored book ``subject`` is in an owned partition (read it each time:
        ownership changes between awaits)."""
        return self.partition(subject) in self.owned

    @property
    def owns_all(self) -> bool:
        """Whether every partition is owned here (a lone replica)."""
        return len(self.owned) == self._count

    def update(self, members: tuple[str, ...]) -> tuple[frozenset[int], frozenset[int]]:
        """Own what rendezvous hashing gives this replica among ``members``: ``(lost,
        gained)``."""
        owned = owned_partitions(self._member_id, members, self._count)
        lost, gained = self.owned - owned, owned - self.owned
        self.owned = owned
        self.placed = True
        return lost, gained
