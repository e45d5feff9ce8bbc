"""Resuming a file source after a restart, from the disk queue's cursor.

Two halves, each where it belongs. While running, the file source hands a ``ReadPosition``
along with its events (the offset just after each event's line, taken while the lines were
cut), and the output puts them in an ``ICursorQueue`` (the disk queue) with the position after
the put's last event, in the same transaction; when the queue is full the output puts part of a
read now and the rest later, splitting the position with the events. At start, ``resume()``
reads the stored position back and has the source read on from there.

After a ``kill -9`` the next run therefore reads on from exactly after the last event the queue
holds: no line is skipped, and none is queued twice (the events already queued are sent from
the queue). Events that did not come from the file (``send()`` callers) carry no position and
never move the cursor.
"""

from __future__ import annotations

from twisted_logstash.interfaces import ICursorQueue, IEventQueue, IResumableSource, ISource

__all__ = ["resume"]


def resume(source: ISource, queue: IEventQueue) -> int:
    """Have a resumable ``source`` read on from the position ``queue`` stored for it; call it
    before the source starts. Returns the offset it will read from (0: from the start).

    Any other pair is left as it is: a queue that keeps no cursors has nothing to resume from,
    and a source without a position (stdin, tcp, a generator) cannot be read again."""
    if not (IResumableSource.providedBy(source) and ICursorQueue.providedBy(queue)):
        return 0
    offset = queue.cursor(source.key)
    return source.resume_at(offset) if offset else 0
