"""Where a receiver puts the events it decoded: stdout, a file, nowhere, or a callable.

``@metadata`` is never written (as Logstash's codecs skip it). Every sink answers
``deliver(events)`` with a Deferred that fires only once the events are
handed on for good (written and flushed), because the receiver acknowledges the sender right
after: an error while writing becomes a failed Deferred, never an exception, so that the
receiver tells the sender to retry instead of losing the batch.

Writing to stdout and to a file is synchronous on purpose: a pipe or a local file takes a
batch in microseconds, and a sink that buffered in memory could not honestly say "written".
Each batch is one write, so that its lines are never interleaved with another writer's. Only a
file's ``fsync`` (the file sink's ``fsync`` option) runs in a thread: it waits on the disk for a
millisecond or more, which would stall every connection of the reactor; the Deferred still
fires only once it is done, so the input acknowledges synced events only. Standard output has no
fsync: what reads it (a pipe, a terminal) decides what becomes of the events.
"""

from __future__ import annotations

import os
import select
import stat
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.codecs import ndjson
from twisted_logstash.codecs.events import without_metadata
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
            data = ndjson.encode(without_metadata(events))
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

    With ``fsync=True`` the write is still made at once, in the reactor, and only the fsync
    runs in a thread (``in_thread``, ``deferToThread`` unless a test gives a stand-in); see
    ``_sync`` for how batches share it and stay in order.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        fsync: bool = False,
        *,
        in_thread: Callable[..., defer.Deferred] = threads.deferToThread,
    ) -> None:
        self.path = path
        self.fsync = fsync
        self._in_thread = in_thread
        self._closed = False
        self._syncing = False  # an fsync runs in a thread
        #: batches written since the fsync under way started, each (where it starts, its
        #: Deferred): they wait for the next fsync
        self._unsynced: list[tuple[int | None, defer.Deferred]] = []
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
            if self._closed:
                raise ValueError(f"file sink {self.path!r} is closed")
            data = ndjson.encode(without_metadata(events))
            start = self._write(data) if data else None
        except Exception:
            return defer.fail()
        if not self.fsync:
            return defer.succeed(None)
        synced: defer.Deferred = defer.Deferred()
        self._unsynced.append((start, synced))
        self._sync()
        return synced

    def _write(self, data: bytes) -> int:
        """Append ``data`` and say where it starts."""
        handle = self._file
        start = handle.seek(0, os.SEEK_END)
        try:
            write_all(handle, data)
        except OSError:
            self._cut(start)
            raise
        return start

    def _sync(self) -> None:
        """fsync in a thread, one at a time: the batches written while one runs wait for the
        next, which covers them all (a group commit), and their Deferreds fire in order."""
        if self._syncing or not self._unsynced:
            return
        group, self._unsynced = self._unsynced, []
        self._syncing = True
        self._in_thread(os.fsync, self._file.fileno()).addBoth(self._synced, group)

    def _synced(self, result, group: list[tuple[int | None, defer.Deferred]]) -> None:
        self._syncing = False
        if isinstance(result, Failure):
            # Written but maybe not on disk: cut them off with every batch written since (all
            # unacknowledged), so that the file never holds a batch twice once they are resent.
            group, self._unsynced = group + self._unsynced, []
            starts = [start for start, _ in group if start is not None]
            if starts:
                self._cut(starts[0])
            for _, d in group:
                d.errback(result)
        else:
            for _, d in group:
                d.callback(None)
        self._sync()
        if self._closed and not self._syncing:
            self._file.close()

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
        """Close the file (once the fsync under way, if any, is done); later deliveries fail."""
        self._closed = True
        if not self._syncing:
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


def sink_from_string(spec: str, fsync: bool = False) -> IEventSink:
    """The sink a command-line value names: ``stdout``, ``file:PATH`` or ``null``; ``fsync``
    (``file:`` only) syncs each batch to disk before it is acknowledged."""
    if fsync and spec in ("stdout", "null"):
        raise ConfigurationError(f"fsync is for the file sink (file:PATH), not for {spec!r}")
    if spec == "stdout":
        return StdoutSink()
    if spec == "null":
        return NullSink()
    if spec.startswith("file:"):
        path = spec[len("file:") :]
        if not path:
            raise ConfigurationError("sink 'file:' needs a path, as in file:/var/log/events.ndjson")
        return FileSink(path, fsync=fsync)
    raise ConfigurationError(f"unknown sink {spec!r}: expected 'stdout', 'file:PATH' or 'null'")
