"""Helpers for the framed-wire tests: a sink whose answers the test controls, frame bytes."""

from __future__ import annotations

import struct

from twisted.internet import defer
from zope.interface import implementer

from twisted_logstash.interfaces import IEventSink


@implementer(IEventSink)
class HeldSink:
    """Records every batch; each `deliver` returns a Deferred the test fires (or, with
    `auto=True`, one that has already fired)."""

    def __init__(self, auto: bool = False):
        self.auto = auto
        self.batches: list[list[dict]] = []
        self.pending: list[defer.Deferred] = []
        self.arrived: defer.Deferred | None = None

    def deliver(self, events: list[dict]) -> defer.Deferred:
        self.batches.append(list(events))
        if self.arrived is not None:
            arrived, self.arrived = self.arrived, None
            arrived.callback(events)
        if self.auto:
            return defer.succeed(None)
        d = defer.Deferred()
        self.pending.append(d)
        return d

    def next_batch(self) -> defer.Deferred:
        """A Deferred firing with the next batch handed to the sink."""
        self.arrived = defer.Deferred()
        return self.arrived

    def release(self, index: int = 0) -> None:
        self.pending.pop(index).callback(None)

    def fail(self, index: int = 0, error: Exception | None = None) -> None:
        self.pending.pop(index).errback(error or RuntimeError("sink is full"))

    @property
    def events(self) -> list[dict]:
        return [event for batch in self.batches for event in batch]


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def window(count: int, version: bytes = b"2") -> bytes:
    return version + b"W" + u32(count)


def json_frame(seq: int, payload: bytes) -> bytes:
    return b"2J" + u32(seq) + u32(len(payload)) + payload


def ack(seq: int, version: bytes = b"2") -> bytes:
    return version + b"A" + u32(seq)


def acks_in(data: bytes) -> list[int]:
    """The seqs of a run of v2/v1 ACK frames (what the receiver wrote)."""
    assert len(data) % 6 == 0, data
    out = []
    for i in range(0, len(data), 6):
        assert data[i : i + 2] in (b"2A", b"1A"), data
        out.append(struct.unpack(">I", data[i + 2 : i + 6])[0])
    return out
