"""Partitions to replicas.

A symbol's partition is computed by nats-server when it stores the book (the BOOKS stream's
subject transform ``partition(n, exchange, symbol)``: a stable hash, the same for every
replica; see ``fairprice.common.subjects``). A partition belongs to the live converter replica
that rendezvous hashing ranks first for it, so a join or a leave moves only the partitions of
the replica that came or went, and a symbol's state is never split: one partition, one owner,
all its symbols.
"""

from __future__ import annotations

from fairprice.common.membership import rendezvous_owners

__all__ = ["owned_partitions"]


def owned_partitions(member: str, members: tuple[str, ...], partitions: int) -> frozenset[int]:
    """The partitions ``member`` owns among the live ``members``."""
    if member not in members:
        return frozenset()
    return frozenset(
        p for p in range(partitions) if rendezvous_owners(f"partition-{p}", members) == [member]
    )
