"""Cutting a batch of encoded events into parts under a byte bound (`--batch-max-bytes`).

A batch is counted in events (`--batch-size`), but a receiver bounds what it takes in bytes
(100 MiB by default, Logstash's and ours): 125 events of 1 MB are one body over it, refused
for good, and every event of it would be dead-lettered. Both transmitters serialise each event
once anyway; `cut` turns the lengths they get into consecutive parts, so the bound costs no
encoding of its own. The common case, a batch within the bound, is one sum and one part.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DEFAULT_BATCH_MAX_BYTES", "cut"]

DEFAULT_BATCH_MAX_BYTES = 20 * 1024 * 1024
"""20 MiB of JSON: well under a receiver's 100 MiB, with room for the wire's own bytes."""


def cut(lengths: Iterable[int], max_bytes: int) -> list[int]:
    """How many events each consecutive part takes: as many as fit in ``max_bytes`` together
    (the sum of their ``lengths``), and at least one, so that an event longer than
    ``max_bytes`` goes alone in a part of its own."""
    counts: list[int] = []
    count = total = 0
    for length in lengths:
        if count and total + length > max_bytes:
            counts.append(count)
            count = total = 0
        count += 1
        total += length
    if count:
        counts.append(count)
    return counts
