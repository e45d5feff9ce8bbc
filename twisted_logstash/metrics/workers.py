"""The input's metrics with ``--workers N``: each worker reports, the parent serves the sum.

Each worker keeps its own ``InputStats`` (counted exactly as a single input counts, nothing
more on its hot path) and writes a snapshot of it, one JSON line, on a pipe to its parent
(descriptor ``REPORT_FD``) once a second and once more when it stopped (``StatsReporter``).
The parent keeps the last snapshot of each live worker and, when a worker ends, adds its last
snapshot to what the ended workers counted (``WorkerStats``); ``/metrics`` serves that sum plus
the live snapshots. So a restarted worker, which starts again from zero in a new process, never
makes a counter go backwards, and nothing is counted twice. What a worker killed outright
(SIGKILL) counted after its last report (under a second of work) is not counted.

Why not prometheus_client's multiprocess mode: it counts through memory-mapped files written on
every increment (the hot path would pay a lock and a write per counter, and the input's counters
are plain attributes read by its log lines too), reads no custom collectors, and needs a
directory to be created, cleaned of dead workers' gauges and removed. A snapshot a second over a
pipe the parent already has a reactor for is cheaper and keeps one way of counting.
"""

from __future__ import annotations

import errno
import json
import os

from twisted.internet import task
from twisted.logger import Logger
from zope.interface import implementer

from twisted_logstash.metrics.server import IHealth
from twisted_logstash.transport.inputstats import InputStats
from twisted_logstash.transport.workers import REPORT_FD

__all__ = ["REPORT_FD", "StatsReporter", "WorkerStats", "WorkersHealth"]

log = Logger()

INTERVAL = 1.0


class StatsReporter:
    """A worker's side: ``stats`` written to ``fd`` every ``interval`` seconds and at ``stop``.

    The descriptor is non-blocking: a report the pipe has no room for is skipped (the next one
    says everything again, snapshots being cumulative); the last one waits for room."""

    def __init__(self, stats: InputStats, fd: int, reactor, interval: float = INTERVAL) -> None:
        self.stats = stats
        self.fd = fd
        self._loop = task.LoopingCall(self.report)
        self._loop.clock = reactor
        self.interval = interval

    def start(self) -> None:
        os.set_blocking(self.fd, False)
        self._loop.start(self.interval, now=True)

    def report(self) -> None:
        line = (json.dumps(self.stats.snapshot(), separators=(",", ":")) + "\n").encode()
        try:
            os.write(self.fd, line)
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno != errno.EPIPE:
                log.warn("cannot report counts to the parent: {error}", error=str(e))
            self._stop_loop()

    def stop(self) -> None:
        """Report once more (waiting for room), and no more."""
        self._stop_loop()
        try:
            os.set_blocking(self.fd, True)
            self.report()
        except OSError:
            pass

    def _stop_loop(self) -> None:
        if self._loop.running:
            self._loop.stop()


#: bytes of a report line the parent holds while waiting for its end; a report is a few hundred
#: bytes, so a longer line is garbage (dropped) and the parent's memory stays bounded
MAX_REPORT_BYTES = 65536


class WorkerStats:
    """The parent's side: the last report of each live worker, plus what ended workers
    counted. ``WorkerPool`` calls ``received`` with what a worker wrote on ``REPORT_FD`` and
    ``ended`` once it ended (after its last bytes)."""

    def __init__(self) -> None:
        self.ended_total = InputStats()
        self._last: dict[object, dict] = {}
        self._partial: dict[object, bytes] = {}

    def received(self, worker: object, data: bytes) -> None:
        lines = (self._partial.pop(worker, b"") + data).split(b"\n")
        if lines[-1] and len(lines[-1]) <= MAX_REPORT_BYTES:
            self._partial[worker] = lines[-1]
        for line in reversed(lines[:-1]):  # the last whole line is the newest report
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if isinstance(report, dict):
                self._last[worker] = report
                break

    def ended(self, worker: object) -> None:
        self._partial.pop(worker, None)
        report = self._last.pop(worker, None)
        if report is not None:
            report["connections_open"] = 0  # a gauge: an ended worker holds none
            self.ended_total.add(report)

    def total(self) -> InputStats:
        """Every worker's counts summed: the ended ones' and the live ones' last reports."""
        total = InputStats()
        total.add(self.ended_total.snapshot())
        for report in self._last.values():
            total.add(report)
        return total


@implementer(IHealth)
class WorkersHealth:
    """The parent's health: ok while it has live workers and does not drain."""

    def __init__(self, pool) -> None:
        self.pool = pool

    def health(self) -> tuple[bool, str]:
        pool = self.pool
        if not pool.running or pool.stopping:
            return False, "draining"
        if not pool.workers:
            return False, "no live worker"
        return True, "ok"
