"""Symbols to partitions, partitions to replicas.

A symbol's partition is a stable hash of ``<exchange>.<SYMBOL>`` modulo the number of
partitions (blake2b, the same in every process and every Python; never the salted ``hash()``).
A partition belongs to the live converter replica that rendezvous hashing ranks first for it,
so a join or a leave moves only the partitions of the replica that came or went, and a
symbol's state is never split: one partition, one owner, all its symbols.
"""

from __future__ import annotations

import hashlib

from fairprice.common.membership import rendezvous_owners

__all__ = ["owned_partitions", "partition_of"]


def partition_of(exchange: str, symbol: str, partitions: int) -> int:
    digest = hashlib.blake2b(f"{exchange}.{symbol}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def owned_partitions(member: str, members: tuple[str, ...], partitions: int) -> frozenset[int]:
    """The partitions ``member`` owns among the live ``members``."""
    if member not in members:
        return frozenset()
    return frozenset(
        p for p in range(partitions) if rendezvous_owners(f"partition-{p}", members) == [member]
    )
