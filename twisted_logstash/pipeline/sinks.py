"""Where a receiver puts the events it decoded: stdout, a file, nowhere, or a callable.

Every sink answers ``deliver(events)`` with a Deferred that fires only once the events are
handed on for good (written and flushed), because the receiver acknowledges the sender right
after: an error while writing becomes a failed Deferred, never an exception, so that the
receiver tells the sender to retry instead of losing the batch.

Writing to stdout and to a file is synchronous on purpose: a pipe or a local file takes a
batch in microseconds, and a sink that buffered in memory could not honestly say "written".
"""

from __future__ import annotations

import os
import select
import stat
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_logstash.codecs import ndjson
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.interfaces import IEventSink

__all__ = ["CallableSink", "FileSink", "NullSink", "StdoutSink", "sink_from_string"]


@implementer(IEventSink)
class StdoutSink:
    """ndjson to a binary stream (standard output by default), flushed before acknowledging."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer

    def deliver(self, events: list[dict]) -> defer.Deferred:
        try:
            data = ndjson.encode(events)
            if data:
                write_all(self.stream, data)
                self.stream.flush()
        except Exception:
            return defer.fail()
        return defer.succeed(None)


def write_all(stream: BinaryIO, data: bytes) -> None:
    """Write every byte of ``data``, however the stream takes it.

    A buffered stream writes all at once; a raw one (an unbuffered stdout: ``python -u``,
    ``PYTHONUNBUFFERED``) may take part of it (a pipe interrupted by a signal) or nothing at all
    (a non-blocking pipe that is full: ``None``). Both are waited out here, since the batch is
    acknowledged as soon as this returns.
    """
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if written is None:
            select.select([], [stream.fileno()], [])
            continue
        view = view[written:]


def whole_lines_end(fd: int, size: int, chunk: int = 65536) -> int:
    """Where the whole lines of the file ``fd`` (``size`` bytes) end: just after its last
    newline, or 0 when it has none. Read backwards, so that a big file costs one read."""
    end = size
    while end > 0:
        begin = max(0, end - chunk)
        at = os.pread(fd, end - begin, begin).rfind(b"\n")
        if at >= 0:
            return begin + at + 1
        end = begin
    return 0


@implementer(IEventSink)
class FileSink:
    """ndjson appended to a file, written (and with ``fsync=True`` synced) before acknowledging.

    The file is opened at construction, so a path that cannot be written is a configuration
    error before anything listens. Each batch is one ``write`` on an ``O_APPEND`` descriptor
    (looping only on a short write), so another process appending to the same file lands before
    or after a batch, never between its lines. Writes bypass Python's buffer: when one fails (a
    full disk), the partial batch is cut off again, so that the file holds whole lines only and
    the retried batch is not written twice.

    A file whose last byte is not a newline on opening was torn: a process killed in mid-write
    (``kill -9``, power loss) left part of a batch. That tail is cut, not kept behind a newline:
    every write here ends with a newline, so the torn bytes can only belong to a batch whose
    ``deliver`` never returned, a batch never acknowledged that its sender sends again. Kept,
    they would be a line no reader can parse, forever; cut, the file holds whole events only.
    (The whole lines of that batch before the tear stay: the resent batch repeats them, which
    is at-least-once, not loss.) The cut is logged at warning with its size and offset.
    """

    log = Logger()

    def __init__(self, path: str, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        try:
            self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - held open across writes
            self._cut_torn_tail()
        except OSError as e:
            raise ConfigurationError(
                f"cannot open {path!r} for appending: {e.strerror or e}"
            ) from None

    def _cut_torn_tail(self) -> None:
        info = os.fstat(self._file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return  # a device, a pipe, a new file: nothing to read back
        try:
            with open(self.path, "rb", buffering=0) as reader:
                keep = whole_lines_end(reader.fileno(), info.st_size)
        except PermissionError as e:  # may be appended to, not read: the tail stays unchecked
            self.log.warn(
                "cannot check {path} for a torn last line: {error}", path=self.path, error=str(e)
            )
            return
        if keep == info.st_size:
            return
        self._file.truncate(keep)
        self.log.warn(
            "cut a torn last line from {path}: {count} bytes at offset {offset}, left by a "
            "write cut short (a batch never acknowledged, which its sender sends again)",
            path=self.path,
            count=info.st_size - keep,
            offset=keep,
        )

    def deliver(self, events: list[dict]) -> defer.Deferred:
        try:
            data = ndjson.encode(events)
            if data:
                self._write(data)
        except Exception:
            return defer.fail()
        return defer.succeed(None)

    def _write(self, data: bytes) -> None:
        handle = self._file
        if handle.closed:
            raise ValueError(f"file sink {self.path!r} is closed")
        start = handle.seek(0, os.SEEK_END)
        try:
            write_all(handle, data)
            if self.fsync:
                os.fsync(handle.fileno())
        except OSError:
            self._cut(start)
            raise

    def _cut(self, size: int) -> None:
        try:
            self._file.truncate(size)
        except OSError as e:
            self.log.error(
                "could not remove a partly written batch from {path}: {error}",
                path=self.path,
                error=str(e),
            )

    def close(self) -> None:
        """Close the file; later deliveries fail."""
        self._file.close()


@implementer(IEventSink)
class NullSink:
    """Takes every event and keeps only the count: for benchmarks and dry runs."""

    def __init__(self) -> None:
        self.count = 0

    def deliver(self, events: list[dict]) -> defer.Deferred:
        self.count += len(events)
        return defer.succeed(None)


@implementer(IEventSink)
class CallableSink:
    """Hands each batch to ``fn``, which may return a value or a Deferred (or raise)."""

    def __init__(self, fn: Callable[[list[dict]], Any]) -> None:
        self.fn = fn

    def deliver(self, events: list[dict]) -> defer.Deferred:
        return defer.maybeDeferred(self.fn, events).addCallback(lambda _: None)


def sink_from_string(spec: str) -> IEventSink:
    """The sink a command-line value names: ``stdout``, ``file:PATH`` or ``null``."""
    if spec == "stdout":
        return StdoutSink()
    if spec == "null":
        return NullSink()
    if spec.startswith("file:"):
        path = spec[len("file:") :]
        if not path:
            raise ConfigurationError("sink 'file:' needs a path, as in file:/var/log/events.ndjson")
        return FileSink(path)
    raise ConfigurationError(f"unknown sink {spec!r}: expected 'stdout', 'file:PATH' or 'null'")
