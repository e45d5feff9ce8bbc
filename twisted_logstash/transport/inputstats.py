"""What an input counts: one small object the skeleton increments and everyone else reads.

The input skeleton (``transport/server.py``) owns one ``InputStats`` per input and adds to it
where the work happens, once per batch, connection or read, never once per event, so that both
wires are counted in one place. The metrics endpoint (``metrics/input.py``) and the input's
log lines read it; a worker of ``--workers`` sends ``snapshot()`` to its parent, which adds the
snapshots up (``add``).
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["SECONDS_BUCKETS", "InputStats", "Timings", "refusal_of"]

SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds, in seconds, of a latency histogram's buckets (Prometheus' defaults, from 1 ms)."""


class Timings:
    """A latency histogram as plain numbers: ``counts[i]`` durations fell in bucket ``i``
    (``bounds[i - 1] < d <= bounds[i]``; the last one is over every bound), ``total`` is
    their sum in seconds. Cumulative only when exposed."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = SECONDS_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def add(self, counts: list[int], total: float) -> None:
        """Add another histogram's buckets (the same bounds) and sum."""
        mine = self.counts
        for index, count in enumerate(counts[: len(mine)]):
            mine[index] += count
        self.total += total


class InputStats:
    """Counters of one input, over both wires.

    ``batches`` are the requests (native wire) or windows (framed wire) handed to the sink;
    ``refused`` counts the answers that refused a request or window, by the key of
    ``refusal_of`` (an HTTP status such as ``"429"``, or ``"closed"`` on the framed wire);
    ``events_refused`` the events of batches the sink failed. ``connections_open`` is a gauge,
    the others only grow. ``sink`` is how long the sink took per batch.
    """

    __slots__ = (
        "batches",
        "bytes_in",
        "bytes_out",
        "connections_open",
        "connections_refused",
        "connections_total",
        "events_acknowledged",
        "events_received",
        "events_refused",
        "refused",
        "sink",
    )

    COUNTERS = (
        "batches",
        "bytes_in",
        "bytes_out",
        "connections_refused",
        "connections_total",
        "events_acknowledged",
        "events_received",
        "events_refused",
    )

    def __init__(self) -> None:
        self.events_received = 0
        self.events_acknowledged = 0
        self.events_refused = 0
        self.batches = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.connections_open = 0
        self.connections_total = 0
        self.connections_refused = 0
        self.refused: dict[str, int] = {}
        self.sink = Timings()

    def refusal(self, key: str) -> None:
        self.refused[key] = self.refused.get(key, 0) + 1

    def snapshot(self) -> dict:
        """Every value as plain JSON-able data (what a worker sends its parent)."""
        data = {name: getattr(self, name) for name in self.COUNTERS}
        data["connections_open"] = self.connections_open
        data["refused"] = dict(self.refused)
        data["sink"] = [list(self.sink.counts), self.sink.total]
        return data

    def add(self, data: dict) -> None:
        """Add a ``snapshot()`` of another input (a worker) to these counts."""
        for name in self.COUNTERS:
            setattr(self, name, getattr(self, name) + int(data.get(name, 0)))
        self.connections_open += int(data.get("connections_open", 0))
        for key, count in data.get("refused", {}).items():
            self.refused[key] = self.refused.get(key, 0) + int(count)
        counts, total = data.get("sink", ([], 0.0))
        self.sink.add([int(c) for c in counts], float(total))

    def __repr__(self) -> str:
        return (
            f"InputStats(events_received={self.events_received}, "
            f"events_acknowledged={self.events_acknowledged}, batches={self.batches}, "
            f"bytes_in={self.bytes_in}, connections_open={self.connections_open})"
        )


def refusal_of(answer: bytes, closing: bool) -> str | None:
    """The refusal an answer stands for, or None when it is none: an HTTP answer's status when
    it is not 1xx or 2xx (``"401"``, ``"429"``), ``"closed"`` for a connection closed with no
    answer (the framed wire's only refusal: the sender resends what was not ACKed)."""
    if answer[:7] == b"HTTP/1.":
        status = answer[9:12]
        if status[:1] in (b"1", b"2"):
            return None
        return status.decode("ascii", "replace")
    if closing and not answer:
        return "closed"
    return None
