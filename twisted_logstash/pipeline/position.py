"""What a resumable source hands along with its events: where its read stands after each one.

A file source hands out the events of a whole chunk at once; the output may put only part of
them in the queue now (the queue is full) and the rest later. The cursor stored with each put
must be the position just after *that put's* last event: further on, a restart would skip the
events not put yet; further back, it would queue some twice. So a position holds one offset per
event, taken while the lines were cut, and is split along with its events. Nothing is derived
afterwards by reading the file again.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReadPosition"]


@dataclass(frozen=True, slots=True)
class ReadPosition:
    """``ends[i]`` is the offset just after the line of the ``i``-th event handed out with this
    position (one offset per event, in order); ``key`` names the source, as a cursor queue
    stores it (``IResumableSource.key``)."""

    key: str
    ends: list[int]

    @property
    def offset(self) -> int:
        """Where a source resumed after all these events would read on."""
        return self.ends[-1]

    def cursor(self) -> tuple[str, int]:
        """``(key, offset)``, the form ``ICursorQueue.put`` stores."""
        return self.key, self.ends[-1]

    def split(self, count: int) -> tuple[ReadPosition, ReadPosition]:
        """The positions of the first ``count`` events and of the rest (each non-empty)."""
        if not 0 < count < len(self.ends):
            raise ValueError(f"cannot split a position of {len(self.ends)} events at {count}")
        return ReadPosition(self.key, self.ends[:count]), ReadPosition(self.key, self.ends[count:])
