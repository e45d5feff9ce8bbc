"""Exponential backoff for retrying one batch: Logstash's 0.1 s doubling to 30 s."""

from __future__ import annotations


class Backoff:
    """Delays that grow by `factor` from `initial` up to `maximum`, one sequence per batch.

    Kept separate from the output so the schedule is testable alone and each batch can carry
    its own (a batch that just failed does not slow down batches that are doing fine).
    """

    def __init__(self, initial: float = 0.1, factor: float = 2.0, maximum: float = 30.0):
        if initial <= 0 or factor < 1 or maximum < initial:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self._next = initial

    def next(self) -> float:
        """Return the delay to wait now and grow the following one."""
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        """Start over from `initial` (after a success)."""
        self._next = self.initial
