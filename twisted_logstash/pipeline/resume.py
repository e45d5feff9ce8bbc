"""Resuming a file source after a restart, with the disk queue's cursors.

A ``DiskQueue`` stores a source's read position in the same transaction as the events it put
(``put(events, cursor=(key, offset))``). ``resumable()`` wires that for the output program: the
file source starts at the position stored for its path, and each put of its events carries the
position just after the last line whose events are all in the queue. After a ``kill -9`` the
next run therefore reads on from exactly there: no line is skipped, and none is queued twice
(the events already queued are sent from the queue).

The output puts a source's events in order; when the queue is full it puts part of them now and
the rest later (the source is paused meanwhile). A put of part of a read carries the position
after the line of its last event, so the stored position never runs ahead of the queue nor
falls behind it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_logstash.interfaces import IEventQueue
from twisted_logstash.pipeline.sources import FileSource

__all__ = ["CursorQueue", "cursor_key", "resumable"]

log = Logger()


def cursor_key(path: str) -> str:
    """The name a file source's position is stored under: its absolute path."""
    return "file:" + os.path.abspath(path)


@implementer(IEventQueue)
class CursorQueue:
    """A queue with cursors, whose puts carry ``source``'s position; the rest is delegated.

    A put of everything the source read so far carries ``source.offset``. When the queue is
    full the output puts part of a read now and the rest later: such a put carries the position
    just after the line of its last event, found by reading those bytes of the file again (a
    line holds one event unless it is blank), so that a restart neither skips a line nor queues
    one twice.

    Only the source's events may go through it: the count of events put is matched against the
    count the source emitted. If more arrive (another producer), cursors stop being stored and
    a restart reads from the last stored position again (at least once, never less).
    """

    def __init__(self, queue, source: FileSource, key: str) -> None:
        self._queue = queue
        self._source = source
        self._key = key
        self._put = 0  # events of the source put so far in this run
        self._tracking = True
        # The last point where every event read was put: its file offset and event count.
        self._base_offset = source.offset
        self._base_count = 0
        self._ends: list[int] | None = None  # end offsets of the event lines after the base

    def put(self, events: Iterable[dict]) -> defer.Deferred:
        if not isinstance(events, list | tuple):
            events = list(events)
        cursor = None
        if self._tracking:
            self._put += len(events)
            cursor = self._cursor()
        return self._queue.put(events, cursor=cursor)

    def _cursor(self) -> tuple[str, int] | None:
        emitted = self._source.events
        if self._put == emitted:
            self._base_offset = self._source.offset
            self._base_count = self._put
            self._ends = None
            return (self._key, self._base_offset)
        if self._put > emitted:
            self._tracking = False
            log.warn(
                "events from elsewhere than {key} were queued; its read position is no "
                "longer stored (a restart reads on from the last one stored)",
                key=self._key,
            )
            return None
        if self._ends is None:
            self._ends = self._line_ends(self._base_offset, self._source.offset)
        taken = self._put - self._base_count  # events of the pending read now in the queue
        if not 0 < taken <= len(self._ends):
            return None  # the file changed under the source: keep the older position
        return (self._key, self._ends[taken - 1])

    def _line_ends(self, start: int, end: int) -> list[int]:
        """The offset just after each line of ``[start, end)`` that holds an event."""
        try:
            with open(self._source.path, "rb") as f:
                f.seek(start)
                data = f.read(end - start)
        except OSError:
            return []
        ends = []
        position = start
        for line in data.split(b"\n"):
            position += len(line) + 1
            if line.strip():
                ends.append(min(position, end))
        return ends

    def __getattr__(self, name: str):
        return getattr(self._queue, name)


def resumable(source, queue, reactor=None):
    """``(source, queue)`` to build the output with: for a ``FileSource`` and a queue that
    keeps cursors, a source reopened at the stored position and a ``CursorQueue``; anything
    else is returned as it is."""
    if not isinstance(source, FileSource) or not callable(getattr(queue, "cursor", None)):
        return source, queue
    key = cursor_key(source.path)
    offset = queue.cursor(key)
    if offset:
        try:
            size = os.path.getsize(source.path)
        except OSError:
            size = 0
        if offset > size:
            log.warn(
                "{path} is shorter ({size} bytes) than the position stored for it ({offset}); "
                "it was replaced or truncated, reading it from the start",
                path=source.path,
                size=size,
                offset=offset,
            )
            offset = 0
        else:
            log.info(
                "resuming {path} at byte {offset} (stored with the queued events)",
                path=source.path,
                offset=offset,
            )
        if offset:
            source.stopProducing()  # closes the file opened at offset 0
            source = FileSource(
                source.path,
                reactor if reactor is not None else source.reactor,
                offset=offset,
                chunk_size=source.chunk_size,
                max_line_length=source._decoder.max_line_length,
            )
    return source, CursorQueue(queue, source, key)
