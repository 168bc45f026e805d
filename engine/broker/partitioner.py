"""Which partition a record key goes to: Kafka's default partitioner, as every producer of the inbound topics uses."""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as in the Java client) gives a record key."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions
