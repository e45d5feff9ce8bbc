"""The output's memory queue: events between their source and an acknowledgement.

Events are held from ``put`` until ``ack``: a batch handed out by ``get`` stays counted in
``pending()`` while it is being sent and retried, so a full queue means "this many events are not
acknowledged yet", which is what bounds memory while every receiver is down. Nothing here
survives the process (``durable`` is False), so there is no read position worth keeping either:
this queue is an ``IEventQueue`` only; ``diskqueue.DiskQueue`` is the ``ICursorQueue``.
"""

from __future__ import annotations

import itertools
from collections import deque

from twisted.internet import defer
from zope.interface import implementer

from twisted_logstash.interfaces import IEventQueue

DEFAULT_CAPACITY = 4096  # the same default as `--queue-max-events`


@implementer(IEventQueue)
class MemoryQueue:
    """A FIFO of events with room for ``capacity`` unacknowledged events.

    ``put`` never refuses: the capacity is advice that the output follows by pausing its sources
    (and holding back ``send`` callers) while ``room()`` is 0. Refusing here would only move the
    events somewhere less visible.
    """

    durable = False

    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        if capacity < 1:
            raise ValueError("a queue needs a capacity of at least 1 event")
        self.capacity = capacity
        # The events not handed out yet, as the lists put (copied), oldest first; the first
        # one handed out from ``_head`` on. Whole lists, not events: a batch of the size put
        # leaves as it came, with no work per event.
        self._ready: deque[list[dict]] = deque()
        self._head = 0
        self._ready_count = 0
        self._out: dict[int, int] = {}
        self._out_count = 0
        self._tickets = itertools.count(1)

    def put(self, events: list[dict]) -> defer.Deferred:
        """Hold ``events``; in memory they are held as soon as this returns."""
        if events:
            self._ready.append(list(events))
            self._ready_count += len(events)
        return defer.succeed(None)

    def get(self, limit: int) -> tuple[int, list[dict]] | None:
        """Hand out up to ``limit`` events not handed out yet, oldest first."""
        count = min(limit, self._ready_count)
        if count <= 0:
            return None
        ready = self._ready
        head = self._head
        first = ready[0]
        if head == 0 and len(first) == count:
            events = ready.popleft()  # the common case: a batch leaves as it was put
        else:
            events = []
            while len(events) < count:
                chunk = ready[0]
                end = head + count - len(events)
                events += chunk[head:end]
                if end >= len(chunk):
                    ready.popleft()
                    head = 0
                else:
                    head = end
            self._head = head
        self._ready_count -= count
        ticket = next(self._tickets)
        self._out[ticket] = count
        self._out_count += count
        return ticket, events

    def ack(self, ticket: int) -> None:
        """Forget the events of ``ticket``; an unknown ticket is a bug, so it raises KeyError."""
        self._out_count -= self._out.pop(ticket)

    def pending(self) -> int:
        """Events held: waiting to be handed out, or handed out and not acknowledged."""
        return self._ready_count + self._out_count

    def available(self) -> int:
        """Events that ``get`` would hand out now."""
        return self._ready_count

    def room(self) -> int:
        """How many more events fit before the queue is full (0 when full or over)."""
        return max(0, self.capacity - self.pending())

    @property
    def full(self) -> bool:
        return self.pending() >= self.capacity

    def close(self) -> defer.Deferred:
        """Nothing to release; what is still held is lost with the process."""
        return defer.succeed(None)
