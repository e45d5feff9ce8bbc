"""How a run is going, for both programs: the counts, a line every ``--stats-interval`` seconds,
a live progress line on a terminal (``logstash-output`` with a finite source), and the one
human line each program ends with.

The counts are read, never kept here: an output's from its ``OutputStats`` and its source, an
input's from ``input_counts`` (the one place that knows where an input keeps them). The lines are
pure functions of counts and seconds, so they are tested alone; the timers take an
``IReactorTime``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twisted_logstash import logs
from twisted_logstash.errors import ConfigurationError

log = Logger(namespace="twisted_logstash.progress")

#: ``--progress`` values
PROGRESS_CHOICES = ("auto", "always", "never")
#: seconds between two updates of the progress line (tqdm redraws no faster either)
PROGRESS_EVERY = 0.5
#: the default of ``--stats-interval``
DEFAULT_STATS_INTERVAL = 30
#: its row in both programs' option lists
STATS_OPTION = [
    "stats-interval",
    None,
    None,
    f"seconds between two lines of counts in the log; 0: none [{DEFAULT_STATS_INTERVAL}]",
]


def stats_interval_of(value: str | None) -> float:
    """``--stats-interval``: seconds (a whole or decimal number, at least 0)."""
    if value is None:
        return float(DEFAULT_STATS_INTERVAL)
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigurationError(f"--stats-interval takes a number of seconds, not {value!r}")
    if not seconds >= 0 or seconds == float("inf"):
        raise ConfigurationError(f"--stats-interval must be 0 or more seconds, not {value!r}")
    return seconds


# -- counts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputCounts:
    """An output's counts at one moment, in events unless named otherwise."""

    read: int = 0  # taken from the source (or send())
    acknowledged: int = 0
    dead_lettered: int = 0
    dropped: int = 0  # refused and not dead-lettered: lost
    retries: int = 0
    undelivered: int = 0  # neither acknowledged nor dead-lettered yet
    bytes_read: int | None = None  # a file source: bytes read so far
    bytes_total: int | None = None  # a file source: its size
    events_total: int | None = None  # a counted generator


@dataclass(frozen=True)
class InputCounts:
    """An input's counts at one moment."""

    events: int = 0  # acknowledged to senders
    batches: int = 0
    connections: int | None = None  # open now (None: not known)
    connections_total: int | None = None  # accepted since the start (None: not known)


def output_counts(output, source=None) -> OutputCounts:
    """The counts of an ``Output`` (its ``stats``) and of its source."""
    stats = output.stats
    bytes_read = bytes_total = events_total = None
    path = getattr(source, "path", None)
    if path is not None:
        bytes_read = getattr(source, "offset", None)
        try:
            bytes_total = os.path.getsize(path)
        except OSError:
            bytes_total = None
    count = getattr(source, "count", None)
    if isinstance(count, int) and count > 0:
        events_total = count
    return OutputCounts(
        read=stats.queued,
        acknowledged=stats.acknowledged,
        dead_lettered=stats.dead_lettered,
        dropped=stats.dropped,
        retries=stats.retries,
        undelivered=output.undelivered() if hasattr(output, "undelivered") else 0,
        bytes_read=bytes_read,
        bytes_total=bytes_total,
        events_total=events_total,
    )


def input_counts(factory) -> InputCounts:
    """An input's counts, read from its factory: THE one place that knows where they are kept
    (the input's ``InputStats``, ``transport/inputstats.py``, which its metrics read too)."""
    stats = getattr(factory, "stats", None)
    if stats is None:
        return InputCounts()
    return InputCounts(
        events=stats.events_acknowledged,
        batches=stats.batches,
        connections=stats.connections_open,
        connections_total=stats.connections_total,
    )


# -- lines ----------------------------------------------------------------------------------------


def plural(count: int, one: str, many: str) -> str:
    """``one`` for a count of 1, ``many`` otherwise (the number is the caller's)."""
    return one if count == 1 else many


def rate(count: int, seconds: float) -> str:
    """``count`` per second, as a person reads it (``0`` when no time passed)."""
    if seconds <= 0 or count <= 0:
        return "0"
    value = count / seconds
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def duration(seconds: float) -> str:
    """``0.045 s``, ``0.4 s``, ``12 s``, ``3 min 20 s``, ``2 h 5 min``."""
    if 0 < seconds < 0.1:
        return f"{seconds:.3f} s"  # a short run's time is not "0.0 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def output_summary(
    counts: OutputCounts, elapsed: float, isolations: Sequence[tuple[str, int, str]] = ()
) -> str:
    """The line ``logstash-output`` ends with: what was acknowledged, in how long, at what
    rate, what was dead-lettered, retried, lost or left, and which hosts were isolated and
    why (``(host, times, last reason)``, as ``Balancer.isolations()`` gives them)."""
    parts = [
        f"{counts.acknowledged} events acknowledged in {duration(elapsed)}"
        f" ({rate(counts.acknowledged, elapsed)} events/s)",
        f"{counts.dead_lettered} dead-lettered",
        f"{counts.retries} {plural(counts.retries, 'retry', 'retries')}",
    ]
    if counts.dropped:
        parts.append(f"{counts.dropped} refused and lost")
    if counts.undelivered:
        parts.append(f"{counts.undelivered} not delivered (of {counts.read} read)")
    line = "sent: " + ", ".join(parts)
    if isolations:
        hosts = ", ".join(
            f"{host} ({times} {plural(times, 'time', 'times')}, last: {reason})"
            for host, times, reason in isolations
        )
        line += f"; hosts isolated: {hosts}"
    return line


def input_summary(counts: InputCounts, elapsed: float) -> str:
    """The line ``logstash-input`` ends with (connections: how many were accepted over the
    run, when that is known)."""
    connections = counts.connections_total
    line = (
        f"received: {counts.events} events acknowledged ({counts.batches}"
        f" {plural(counts.batches, 'batch', 'batches')}"
    )
    if connections is not None:
        line += f", {connections} {plural(connections, 'connection', 'connections')}"
    return line + f") in {duration(elapsed)} ({rate(counts.events, elapsed)} events/s)"


def output_interval_line(before: OutputCounts, now: OutputCounts, seconds: float) -> str:
    """The periodic line of ``logstash-output``: totals, and the rate over the last interval."""
    acked = now.acknowledged - before.acknowledged
    line = (
        f"sending: {now.acknowledged} events acknowledged"
        f" (+{acked} in {duration(seconds)}, {rate(acked, seconds)} events/s),"
        f" {now.read} read, {now.undelivered} waiting or in flight,"
        f" {now.dead_lettered} dead-lettered, {now.retries}"
        f" {plural(now.retries, 'retry', 'retries')}"
    )
    if now.bytes_total:
        line += f", {percent(now.bytes_read or 0, now.bytes_total)} of the file read"
    elif now.events_total:
        line += f", {percent(now.acknowledged, now.events_total)} done"
    return line


def input_interval_line(before: InputCounts, now: InputCounts, seconds: float) -> str:
    """The periodic line of ``logstash-input``."""
    events = now.events - before.events
    line = (
        f"receiving: {now.events} events acknowledged in {now.batches}"
        f" {plural(now.batches, 'batch', 'batches')}"
        f" (+{events} in {duration(seconds)}, {rate(events, seconds)} events/s)"
    )
    if now.connections is not None:
        line += f", {now.connections} {plural(now.connections, 'connection', 'connections')}"
        line += " open"
    return line


def percent(part: int, whole: int) -> str:
    return f"{min(100.0, 100.0 * part / whole):.0f} %" if whole else "100 %"


# -- timers ---------------------------------------------------------------------------------------


class PeriodicReport:
    """Logs ``line(before, now, seconds)`` at info level every ``interval`` seconds, ``now``
    being ``sample()``; ``interval`` 0 logs nothing."""

    def __init__(
        self,
        clock: IReactorTime,
        interval: float,
        sample: Callable[[], object],
        line: Callable[[object, object, float], str],
        emit: Callable[[str], None] | None = None,
    ) -> None:
        self.clock = clock
        self.interval = interval
        self.sample = sample
        self.line = line
        self.emit = emit or (lambda text: log.info("{line}", line=text))
        self._loop: LoopingCall | None = None
        self._before = None
        self._since = 0.0

    def start(self) -> None:
        if self.interval <= 0 or self._loop is not None:
            return
        self._before = self.sample()
        self._since = self.clock.seconds()
        self._loop = LoopingCall(self._report)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _report(self) -> None:
        now = self.sample()
        at = self.clock.seconds()
        self.emit(self.line(self._before, now, at - self._since))
        self._before, self._since = now, at


def wants_progress(choice: str, finite: bool, stream: IO[str]) -> bool:
    """``--progress``: ``always``, ``never``, or ``auto`` (a finite source, ``stream`` a
    terminal)."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    try:
        return finite and stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressLine:
    """A live line on a terminal (tqdm): events read and acknowledged, rate, and an ETA when
    the size is known (a file: in bytes read; a counted generator: in events acknowledged)."""

    def __init__(
        self, clock: IReactorTime, sample: Callable[[], OutputCounts], stream: IO[str]
    ) -> None:
        self.clock = clock
        self.sample = sample
        self.stream = stream
        self._bar = None
        self._loop: LoopingCall | None = None

    def start(self) -> None:
        from tqdm import tqdm

        counts = self.sample()
        if counts.bytes_total is not None:
            total, unit, scale = counts.bytes_total, "B", True
        else:
            total, unit, scale = counts.events_total, " events", False
        self._bar = tqdm(
            total=total,
            unit=unit,
            unit_scale=scale,
            unit_divisor=1024 if scale else 1000,
            file=self.stream,
            desc="sending",
            mininterval=0,
            # the terminal's width as it changes; a terminal that reports none (0 columns, a
            # bare pseudo-terminal) would get an empty line: a fixed width then
            dynamic_ncols=_width(self.stream) > 0,
            ncols=None if _width(self.stream) > 0 else 100,
            leave=True,
        )
        # log lines on the same terminal: the line is cleared before each and drawn after
        logs.guard_writes(lambda: tqdm.external_write_mode(file=self.stream))
        self._loop = LoopingCall(self.update)
        self._loop.clock = self.clock
        self._loop.start(PROGRESS_EVERY, now=True)

    def update(self) -> None:
        bar = self._bar
        if bar is None:
            return
        counts = self.sample()
        bar.n = progress_position(counts)
        bar.set_postfix_str(progress_text(counts), refresh=False)
        bar.refresh()

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._bar is not None:
            self.update()
            self._bar.close()
            self._bar = None
            logs.guard_writes(None)


def _width(stream: IO[str]) -> int:
    """Columns of the terminal ``stream`` writes to (0: unknown)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def progress_position(counts: OutputCounts) -> int:
    """Where the bar is: bytes read of a file, else events acknowledged."""
    if counts.bytes_total is not None:
        return counts.bytes_read or 0
    return counts.acknowledged


def progress_text(counts: OutputCounts) -> str:
    """What follows the bar: the event counts."""
    text = f"{counts.read} read, {counts.acknowledged} acknowledged"
    if counts.dead_lettered:
        text += f", {counts.dead_lettered} dead-lettered"
    if counts.retries:
        text += f", {counts.retries} {plural(counts.retries, 'retry', 'retries')}"
    return text
