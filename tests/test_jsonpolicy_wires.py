"""Issue 10 item 4 on both wires, over real loopback: events holding values JSON has no type for.

Ten ``send()`` callers each send one event at once, so that their events share one batch; one of
them holds an odd value (``Decimal``, ``datetime``, ``set``, ``bytes``, NaN, an arbitrary object,
or one the fast encoder cannot write at all). Every event must arrive, the odd one in its string
form, and when the receiver refuses the batch for good, the dead-letter file must take all ten.
"""

from __future__ import annotations

import datetime
import decimal

import orjson
import pytest
import pytest_twisted
from support_lumberjack import HeldSink
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from zope.interface import implementer

from twisted_logstash.errors import DeadLettered, TerminalError
from twisted_logstash.interfaces import ITransmitter
from twisted_logstash.pipeline.deadletter import DeadLetterFile, unwrap
from twisted_logstash.pipeline.output import Dropped, Output
from twisted_logstash.transport.hosts import Host
from twisted_logstash.transport.inputservice import InputService
from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter
from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory
from twisted_logstash.wires.native.client import HttpTransmitter
from twisted_logstash.wires.native.server import HttpInputFactory

TIMEOUT = 10.0
CALLERS = 10
ODD = 3  # which caller holds the odd value


class Thing:
    """An arbitrary object: JSON has no type for it."""

    def __str__(self) -> str:
        return "a thing"


def _deep(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def _loop() -> dict:
    loop: dict = {"name": "loop"}
    loop["self"] = loop
    return loop


UTC = datetime.UTC
# (id, the odd value, what the receiver gets for it)
CASES = [
    ("decimal", decimal.Decimal("1.10"), "1.10"),
    (
        "datetime",
        datetime.datetime(2026, 12, 3, 6, 30, 0, 123000, tzinfo=UTC),
        "2026-12-03T06:30:00.123000+00:00",
    ),
    ("date", datetime.date(2026, 12, 3), "2026-12-03"),
    ("set", {3, 1, 2}, [1, 2, 3]),
    ("frozenset", frozenset({"b", "a"}), ["a", "b"]),
    ("bytes", b"caf\xc3\xa9 \xff", "café \ufffd"),
    ("nan", float("nan"), None),
    ("infinity", float("-inf"), None),
    ("object", Thing(), "a thing"),
    ("decimal-key", {decimal.Decimal("2.5"): 1, 7: 2}, {"2.5": 1, "7": 2}),
    ("huge-int", 2**70, str(2**70)),
    ("lone-surrogate", "x\udcff", "x\ufffd"),
    ("nested-deeper-than-orjson", _deep(300), _deep(300)),
    ("circular", _loop(), {"name": "loop", "self": "<circular reference>"}),
]


def _odd_batch(value) -> list[list[dict]]:
    """What each of the ten callers sends: one event each, the odd value in one of them."""
    sends = [[{"caller": n, "message": f"event {n}"}] for n in range(CALLERS)]
    sends[ODD][0]["value"] = value
    return sends


def plain(host: Host):
    return TCP4ClientEndpoint(reactor, host.host, host.port, timeout=TIMEOUT)


def native_input(sink):
    return HttpInputFactory(sink, reactor)


def framed_input(sink):
    return LumberjackInputFactory(sink, reactor)


def native_transmitter():
    return HttpTransmitter(reactor, plain)


def framed_transmitter():
    return LumberjackTransmitter(reactor, plain, ack_timeout=TIMEOUT)


WIRES = {
    "native": (native_input, native_transmitter),
    "framed": (framed_input, framed_transmitter),
}


@defer.inlineCallbacks
def _start_input(factory):
    service = InputService(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), factory, reactor)
    service.startService()
    port = yield service.listening
    return service, Host("127.0.0.1", port.getHost().port)


def _output(transmitter, host: Host, **kw) -> Output:
    # batch_size == CALLERS: the ten events leave as one batch as soon as the tenth is queued
    output = Output(transmitter, [host], reactor, batch_size=CALLERS, batch_delay=5.0, **kw)
    output.startService()
    return output


def _settle_all(sends: list[defer.Deferred]) -> defer.Deferred:
    """Fires with [(succeeded, result or exception)] for every send(), in order."""
    d = defer.DeferredList(sends, consumeErrors=True)
    d.addCallback(lambda results: [(ok, r if ok else r.value) for ok, r in results])
    return d.addTimeout(TIMEOUT, reactor)


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest_twisted.inlineCallbacks
def test_an_odd_value_travels_in_its_string_form_beside_other_callers_events(wire, value, expected):
    make_input, make_transmitter = WIRES[wire]
    sink = HeldSink(auto=True)
    service, host = yield _start_input(make_input(sink))
    output = _output(make_transmitter(), host)
    try:
        sends = [output.send(events) for events in _odd_batch(value)]
        outcomes = yield _settle_all(sends)
    finally:
        yield output.stopService()
        yield service.stopService()
    assert outcomes == [(True, None)] * CALLERS
    assert output.stats.dropped == 0
    assert len(sink.batches) == 1  # they did share one batch
    got = {event["caller"]: event for event in sink.events}
    assert sorted(got) == list(range(CALLERS))
    assert got[ODD]["value"] == expected
    assert all("value" not in got[n] for n in range(CALLERS) if n != ODD)


@pytest.mark.parametrize("wire", WIRES)
@pytest_twisted.inlineCallbacks
def test_every_odd_value_at_once_each_from_its_own_caller(wire):
    """Six of the ten callers each hold a different odd value; all ten share one batch."""
    make_input, make_transmitter = WIRES[wire]
    odd = [c for c in CASES if c[0] in ("decimal", "datetime", "set", "bytes", "nan", "object")]
    sends = [[{"caller": n}] for n in range(CALLERS)]
    for n, (_, value, _) in enumerate(odd):
        sends[n][0]["value"] = value
    sink = HeldSink(auto=True)
    service, host = yield _start_input(make_input(sink))
    output = _output(make_transmitter(), host)
    try:
        outcomes = yield _settle_all([output.send(events) for events in sends])
    finally:
        yield output.stopService()
        yield service.stopService()
    assert outcomes == [(True, None)] * CALLERS
    assert len(sink.batches) == 1
    got = {event["caller"]: event for event in sink.events}
    assert sorted(got) == list(range(CALLERS))
    assert [got[n]["value"] for n in range(len(odd))] == [c[2] for c in odd]


class RefusingServer(protocol.Protocol):
    """Reads one whole HTTP request and answers ``400 Bad Request``, as a receiver that
    cannot take the batch does."""

    def connectionMade(self):
        self.data = b""

    def dataReceived(self, data):
        self.data += data
        head, sep, body = self.data.partition(b"\r\n\r\n")
        if not sep:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(body) >= length:
            self.factory.bodies.append(body)
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.loseConnection()


@implementer(ITransmitter)
class RefusingFramed:
    """The framed wire has no refusal of its own: this encodes with the real framed
    transmitter, then refuses every attempt for good, as a receiver's 400 does on the other
    wire."""

    def __init__(self):
        self.inner = framed_transmitter()
        self.payloads = []

    def encode(self, events):
        return self.inner.encode(events)

    def transmit(self, host, payload):
        self.payloads.append(payload)
        return defer.fail(TerminalError("refused", host, 400))

    def close(self):
        return self.inner.close()


def _records(path) -> list[dict]:
    with open(path, "rb") as handle:
        return [orjson.loads(line) for line in handle]


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize(("value", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest_twisted.inlineCallbacks
def test_a_refused_batch_with_an_odd_value_is_dead_lettered_whole(wire, value, expected, tmp_path):
    port = None
    if wire == "native":
        factory = protocol.Factory.forProtocol(RefusingServer)
        factory.bodies = []
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        host = Host("127.0.0.1", port.getHost().port)
        transmitter = native_transmitter()
    else:
        host = Host("127.0.0.1", 1)  # never connected to
        transmitter = RefusingFramed()
    dead = DeadLetterFile(str(tmp_path / "dead.ndjson"), reactor)
    output = _output(transmitter, host, dead_letter=dead)
    try:
        sends = [output.send(events) for events in _odd_batch(value)]
        outcomes = yield _settle_all(sends)
    finally:
        yield output.stopService()
        dead.close()
        if port is not None:
            yield port.stopListening()
    assert [type(error) for _, error in outcomes] == [DeadLettered] * CALLERS
    assert not any(isinstance(error, Dropped) for _, error in outcomes)
    assert output.stats.dead_lettered == CALLERS
    assert output.stats.dropped == 0
    if wire == "native":
        assert len(factory.bodies) == 1  # one batch, refused once
    else:
        assert len(transmitter.payloads) == 1
    events = [unwrap(record) for record in _records(tmp_path / "dead.ndjson")]
    assert sorted(event["caller"] for event in events) == list(range(CALLERS))
    (odd,) = [event for event in events if event["caller"] == ODD]
    assert odd["value"] == expected


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("not_an_object", [42, "text", None, [1, 2], decimal.Decimal(1)])
@pytest_twisted.inlineCallbacks
def test_an_event_that_is_not_an_object_is_refused_alone_at_send(wire, not_an_object):
    """A Logstash event is a JSON object: a framed receiver drops the connection over a ``J``
    frame holding anything else, so such an event would hold its batch in retries forever.
    It is refused at send(), before it can share a batch."""
    make_input, make_transmitter = WIRES[wire]
    sends = _odd_batch("fine")
    sends[ODD] = [{"caller": ODD}, not_an_object]
    sink = HeldSink(auto=True)
    service, host = yield _start_input(make_input(sink))
    output = _output(make_transmitter(), host)
    try:
        deferreds = [output.send(events) for events in sends]
        output.send([{"caller": CALLERS}])  # makes the batch full without the refused caller
        outcomes = yield _settle_all(deferreds)
    finally:
        yield output.stopService()
        yield service.stopService()
    refused = outcomes.pop(ODD)
    assert outcomes == [(True, None)] * (CALLERS - 1)
    assert not refused[0]
    assert isinstance(refused[1], TypeError)
    assert str(refused[1]) == (
        f"an event must be a dict (a JSON object), not {type(not_an_object).__name__}"
    )
    assert sorted(e["caller"] for e in sink.events) == [n for n in range(CALLERS + 1) if n != ODD]
    assert output.stats.queued == CALLERS
