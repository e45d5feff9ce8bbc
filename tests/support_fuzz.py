"""What the fuzz tests of both inputs share: a transport that behaves like TCP, a sink that plays
a script, a log watcher, and byte mutations.

The inputs are driven exactly as the reactor drives them: bytes are handed to ``dataReceived`` only
while the transport is not paused (a paused TCP transport does not read), nothing more is handed
over once the protocol closed the connection, and ``connectionLost`` follows a close.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.interfaces import IEventSink

#: the hypothesis settings of both inputs' fuzz tests: bounded, no per-example deadline
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

__all__ = [
    "LogWatch",
    "ScriptedSink",
    "SinkRefused",
    "Wire",
    "mutate",
    "mutations",
    "split",
    "split_points",
]


class Wire(StringTransport):
    """A StringTransport with TCP's half-close; it records any write made after the protocol
    closed its side, which a real transport would silently drop (an answer lost)."""

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000), lenient=True)
        self.write_closed = False
        self.late_writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self.write_closed or self.disconnecting:
            self.late_writes.append(data)
            return
        super().write(data)

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    @property
    def paused(self) -> bool:
        return self.producerState == "paused"


class SinkRefused(Exception):
    """The scripted sink's failure (expected in the log; anything else logged is a defect)."""


@dataclass
class Batch:
    events: list[dict]
    mode: str
    deferred: defer.Deferred | None = None
    fired: str | None = None  # "ok" or "failed"
    offset: int | None = None  # bytes written to the transport when it fired
    connected: bool = True  # the connection was still up when it fired


SINK_MODES = ("ok", "held", "fail", "held-fail", "raise")


@implementer(IEventSink)
class ScriptedSink:
    """Each ``deliver`` takes the next mode of ``modes`` (cycled): ``ok`` fires at once, ``fail``
    fails at once, ``raise`` raises, ``held``/``held-fail`` wait for :meth:`fire_held`.

    It records, for every batch, where in the output stream the answer to it must start: the
    input writes its answer (200, 500, an ACK) from the Deferred's callback, synchronously.
    """

    def __init__(self, modes, wire: Wire, connected=lambda: True) -> None:
        self.modes = itertools.cycle(modes or ("ok",))
        self.wire = wire
        self.connected = connected
        self.batches: list[Batch] = []
        self.unhandled: list[Failure] = []

    def deliver(self, events):
        batch = Batch([dict(event) for event in events], next(self.modes))
        self.batches.append(batch)
        if batch.mode == "raise":
            batch.fired = "failed"
            batch.offset = len(self.wire.value())
            batch.connected = self.connected()
            raise SinkRefused("the sink raised")
        d = defer.Deferred()
        batch.deferred = d
        if batch.mode == "ok":
            self._mark(batch, "ok")
            d.callback(None)
        elif batch.mode == "fail":
            self._mark(batch, "failed")
            d.errback(SinkRefused("the sink refused"))
        return d

    def held(self) -> list[Batch]:
        return [b for b in self.batches if b.fired is None]

    def fire_held(self) -> bool:
        """Fire every held batch (as their mode says); True if there was one."""
        held = self.held()
        for batch in held:
            ok = batch.mode == "held"
            self._mark(batch, "ok" if ok else "failed")
            if ok:
                batch.deferred.callback(None)
            else:
                batch.deferred.errback(SinkRefused("the sink refused later"))
        return bool(held)

    def check_handled(self) -> None:
        """Every Deferred handed to the input ends handled: no failure left in a chain."""
        for batch in self.batches:
            d = batch.deferred
            if d is not None and d.called and isinstance(d.result, Failure):
                failure = d.result
                d.addErrback(lambda _: None)
                raise AssertionError(f"a sink Deferred ended in an unhandled failure: {failure}")

    def _mark(self, batch: Batch, outcome: str) -> None:
        batch.fired = outcome
        batch.offset = len(self.wire.value())
        batch.connected = self.connected()


class LogWatch:
    """Collects every log event while active; :meth:`defects` are those that say a bug:
    an error or a failure logged, other than the scripted sink's own refusal."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __enter__(self) -> LogWatch:
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc) -> None:
        globalLogPublisher.removeObserver(self.events.append)

    def defects(self) -> list[str]:
        found = []
        for event in self.events:
            failure = event.get("log_failure")
            if failure is not None:
                if not failure.check(SinkRefused):
                    found.append(formatEvent(event) + "\n" + failure.getTraceback())
            elif event.get("log_level") is not None and event["log_level"].name in (
                "error",
                "critical",
            ):
                found.append(formatEvent(event))
        return found

    def text(self) -> str:
        return "\n".join(formatEvent(event) for event in self.events)


# -- byte mutations ----------------------------------------------------------------------------


def split_points(data_size: int):
    """Sorted cut positions in a stream of ``data_size`` bytes."""
    return st.lists(st.integers(0, max(data_size, 0)), max_size=8).map(sorted)


def split(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at ``points`` (empty pieces dropped)."""
    pieces, start = [], 0
    for point in [*points, len(data)]:
        point = min(max(point, start), len(data))
        if point > start:
            pieces.append(data[start:point])
        start = point
    return pieces


def mutations(max_ops: int = 4):
    """A list of edits, each ``(kind, where (0..1), byte value, length)``."""
    op = st.tuples(
        st.sampled_from(("flip", "set", "insert", "delete", "duplicate")),
        st.floats(0.0, 1.0, allow_nan=False),
        st.integers(0, 255),
        st.integers(1, 16),
    )
    return st.lists(op, min_size=1, max_size=max_ops)


def mutate(data: bytes, ops) -> bytes:
    """Apply the edits of :func:`mutations` to ``data``."""
    buf = bytearray(data)
    for kind, where, value, length in ops:
        at = min(int(where * len(buf)), max(len(buf) - 1, 0))
        if kind == "insert" or not buf:
            buf[at:at] = bytes([value]) * length
        elif kind == "flip":
            buf[at] ^= 1 << (value % 8)
        elif kind == "set":
            buf[at] = value
        elif kind == "delete":
            del buf[at : at + length]
        else:  # duplicate a slice (a repeated header, a doubled frame)
            buf[at:at] = buf[at : at + length]
    return bytes(buf)


# -- JSON the policy reads, and JSON it refuses alone (issue 11) ---------------------------------

PARSE_FAILURE = "_jsonparsefailure"
#: NaN and Infinity are not JSON (RFC 8259), nor a float out of a double's range
NOT_JSON_NUMBERS = [b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"]


def deep_line(levels: int) -> bytes:
    """An event nested ``levels`` deep (the event itself is level 1)."""
    return b'{"d":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


@st.composite
def hostile_lines(draw, max_levels: int = 1100) -> tuple[bytes, dict]:
    """One ndjson line and the one event the inputs must make of it: the event it holds, or a
    ``_jsonparsefailure`` event holding the line (nested deeper than ``jsonpolicy.MAX_DEPTH``,
    or a NaN/Infinity token)."""
    import orjson

    from twisted_logstash.codecs.jsonpolicy import MAX_DEPTH

    kind = draw(st.sampled_from(["plain", "big", "deep", "nan"]))
    if kind == "plain":
        event = {"message": draw(st.text(max_size=8)), "n": draw(st.integers(-(2**63), 2**64 - 1))}
        return orjson.dumps(event), event
    if kind == "big":
        magnitude = draw(st.integers(2**63, 10**60))
        number = draw(st.sampled_from([magnitude, -magnitude, 2**64 + magnitude]))
        event = {"n": number, "s": "x" * draw(st.integers(0, 3))}
        return b'{"n":%d,"s":"%s"}' % (number, event["s"].encode()), event
    if kind == "deep":
        near = [254, 255, 256, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 1023, 1024, 1025]
        levels = draw(
            st.sampled_from([n for n in near if n <= max_levels]) | st.integers(2, max_levels)
        )
        line = deep_line(levels)
        if levels <= MAX_DEPTH:
            return line, orjson.loads(line)
        return line, {"message": line.decode(), "tags": [PARSE_FAILURE]}
    token = draw(st.sampled_from(NOT_JSON_NUMBERS))
    line = b'{"ok":1,"x":' + token + b"}"
    return line, {"message": line.decode(), "tags": [PARSE_FAILURE]}


def same_json(got, expected) -> bool:
    """Equality for values nested deeper than Python's own comparison recurses."""
    from twisted_logstash.codecs import jsonpolicy

    return jsonpolicy.dumps(got) == jsonpolicy.dumps(expected)
