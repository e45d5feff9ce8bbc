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

Several writers (``logstash-input --workers N``: ``shared=True``). A batch is one ``write`` on
an ``O_APPEND`` descriptor, and Linux writes a regular file under the inode's lock, so two
processes' batches never mix; the loop in ``write_all`` only runs if the kernel returns a short
write, which it does for a regular file only when the disk is full or the process is being
killed. A pipe or a terminal is another matter (a write over ``PIPE_BUF``, 4096 bytes, may be
cut and mixed with another process's), and cutting a torn batch off a shared file must not cut
another worker's batch written after it: so with ``shared=True`` each batch is written under a
lock held across processes (``fcntl.lockf`` on standard output, ``flock`` on the file sink's
own descriptor), and the file sink looks for a torn tail (a worker killed in mid-write) before
each batch, not only on opening. ``NullSink`` shares nothing; what a ``CallableSink`` (or any
library sink) does with several processes is its caller's business.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import stat
import sys
from collections.abc import Callable, Iterator
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
    """ndjson to a binary stream (standard output by default), flushed before acknowledging.

    ``shared``: other processes write on the same stream (the workers of one input), so each
    batch is written and flushed under ``fcntl.lockf`` on the stream's descriptor.
    """

    log = Logger()

    def __init__(self, stream: BinaryIO | None = None, *, shared: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.shared = shared

    def deliver(self, events: list[dict]) -> defer.Deferred:
        try:
            data = ndjson.encode(without_metadata(events))
            if data:
                with self._locked():
                    write_all(self.stream, data)
                    self.stream.flush()
        except Exception:
            return defer.fail()
        return defer.succeed(None)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self.shared:
            yield
            return
        fd = self.stream.fileno()
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        except OSError as e:  # a stream that takes no lock: each batch is still one write
            self.shared = False
            self.log.warn(
                "cannot lock standard output ({error}): batches of several workers"
                " may mix on a pipe",
                error=str(e),
            )
            yield
            return
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)


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

    ``shared=True``: other processes append to the same file (the workers of one input, each
    with its own ``FileSink``). Each batch is then written under ``flock``, after cutting a torn
    tail a killed writer may have left (so its half line is not glued to the next batch), and a
    write that fails is cut off under the same lock, so no other writer's batch is cut with it.
    One guarantee is weaker: when an fsync fails, the batches it covered stay in the file,
    since other workers may have appended (and acknowledged) batches after them; their senders
    resend them, so they may be there twice (at least once, never lost).
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        fsync: bool = False,
        *,
        in_thread: Callable[..., defer.Deferred] = threads.deferToThread,
        shared: bool = False,
    ) -> None:
        self.path = path
        self.fsync = fsync
        self.shared = shared
        self._reader: int | None = None  # shared: a descriptor to read the tail back with
        self._in_thread = in_thread
        self._closed = False
        self._syncing = False  # an fsync runs in a thread
        #: batches written since the fsync under way started, each (where it starts, its
        #: Deferred): they wait for the next fsync
        self._unsynced: list[tuple[int | None, defer.Deferred]] = []
        try:
            self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - held open across writes
            if shared:
                self._open_reader()
            with self._locked():
                self._cut_torn_tail()
        except OSError as e:
            raise ConfigurationError(
                f"cannot open {path!r} for appending: {e.strerror or e}"
            ) from None

    def _open_reader(self) -> None:
        info = os.fstat(self._file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return
        try:
            self._reader = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except PermissionError as e:  # may be appended to, not read: the tail stays unchecked
            self.log.warn(
                "cannot check {path} for a torn last line: {error}", path=self.path, error=str(e)
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock other writers of the file take (``shared`` only)."""
        if not self.shared:
            yield
            return
        fd = self._file.fileno()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _cut_torn_tail(self) -> None:
        info = os.fstat(self._file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return  # a device, a pipe, a new file: nothing to read back
        if self.shared:
            if self._reader is None:
                return
            if os.pread(self._reader, 1, info.st_size - 1) == b"\n":
                return  # the usual case, one read: the last writer finished its batch
            keep = whole_lines_end(self._reader, info.st_size)
        else:
            try:
                with open(self.path, "rb", buffering=0) as reader:
                    keep = whole_lines_end(reader.fileno(), info.st_size)
            except PermissionError as e:  # may be appended to, not read: tail unchecked
                self.log.warn(
                    "cannot check {path} for a torn last line: {error}",
                    path=self.path,
                    error=str(e),
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
        with self._locked():
            if self.shared:
                self._cut_torn_tail()
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
            if starts and not self.shared:
                self._cut(starts[0])
            elif starts:
                self.log.error(
                    "fsync of {path} failed ({error}); the batches it covered stay in the file,"
                    " shared with other workers, and may be there twice once resent",
                    path=self.path,
                    error=str(result.value),
                )
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
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None
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


def sink_from_string(spec: str, fsync: bool = False, *, shared: bool = False) -> IEventSink:
    """The sink a command-line value names: ``stdout``, ``file:PATH`` or ``null``; ``fsync``
    (``file:`` only) syncs each batch to disk before it is acknowledged; ``shared``: other
    processes write on the same stream or file (see the module's docstring)."""
    if fsync and spec in ("stdout", "null"):
        raise ConfigurationError(f"fsync is for the file sink (file:PATH), not for {spec!r}")
    if spec == "stdout":
        return StdoutSink(shared=shared)
    if spec == "null":
        return NullSink()
    if spec.startswith("file:"):
        path = spec[len("file:") :]
        if not path:
            raise ConfigurationError("sink 'file:' needs a path, as in file:/var/log/events.ndjson")
        return FileSink(path, fsync=fsync, shared=shared)
    raise ConfigurationError(f"unknown sink {spec!r}: expected 'stdout', 'file:PATH' or 'null'")
