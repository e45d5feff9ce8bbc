"""The input skeleton (transport/server.py), driven with StringTransport and a Clock.

What the skeleton owns is checked against both wires where it applies (the connection cap, drain
and abort, pausing while the sink holds a batch, the re-entry guard, the deadlines, a TLS
handshake on a plain port), and against a scripted exchange for the contract alone.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest
from support_lumberjack import HeldSink, acks_in
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_logstash.interfaces import IInput, IInputConnection, IInputExchange, IInputRegistry
from twisted_logstash.transport import server as server_module
from twisted_logstash.transport.server import (
    BODY,
    HEAD,
    IDLE,
    WAITING,
    Close,
    InputFactory,
    tls_handshake,
)
from twisted_logstash.wires.lumberjack.frames import encode_window
from twisted_logstash.wires.lumberjack.server import LumberjackExchange, LumberjackInputFactory
from twisted_logstash.wires.native.server import HttpExchange, HttpInputFactory


def _request(n: int) -> bytes:
    body = gzip.compress(orjson.dumps({"n": n}) + b"\n")
    return (
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


@dataclass
class Wire:
    """How a test speaks one wire: a factory, one batch's bytes, what its ACK looks like."""

    name: str
    factory: Callable[..., InputFactory]
    batch: Callable[[int], bytes]
    acked: Callable[[bytes], int]  # how many batches these bytes acknowledge
    busy: bytes  # what a connection over the cap reads
    idle_option: str  # the factory argument of the idle deadline


def _native_acks(data: bytes) -> int:
    count = data.count(b"HTTP/1.1 ")
    assert count == data.count(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nok"), data
    return count


NATIVE = Wire(
    "native",
    HttpInputFactory,
    _request,
    _native_acks,
    b"HTTP/1.1 503 Service Unavailable",
    "idle_timeout",
)
FRAMED = Wire(
    "framed",
    LumberjackInputFactory,
    lambda n: encode_window([{"n": n}], compression_level=None),
    lambda data: len(acks_in(data)),
    b"",
    "client_inactivity_timeout",
)


@pytest.fixture(params=[NATIVE, FRAMED], ids=lambda wire: wire.name)
def wire(request) -> Wire:
    return request.param


class Input:
    """One input factory on a Clock, and its connections on StringTransports."""

    def __init__(self, wire: Wire, auto: bool = False, **options) -> None:
        self.wire = wire
        self.clock = Clock()
        self.sink = HeldSink(auto=auto)
        self.factory = wire.factory(self.sink, self.clock, **options)

    def connect(self, port: int = 40000):
        addr = IPv4Address("TCP", "127.0.0.1", port)
        proto = self.factory.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        proto.makeConnection(transport)
        return proto, transport


def take(transport: StringTransport) -> bytes:
    data = transport.value()
    transport.clear()
    return data


# -- declared interfaces -----------------------------------------------------------------------


def test_both_wires_provide_the_declared_interfaces(wire):
    i = Input(wire)
    proto, _ = i.connect()
    assert verifyObject(IInput, i.factory)
    assert verifyObject(IInputRegistry, i.factory)
    assert verifyObject(IInputConnection, proto)
    assert verifyObject(IInputExchange, proto.exchange)
    assert isinstance(proto.exchange, (HttpExchange, LumberjackExchange))


# -- the connection cap ---------------------------------------------------------------------------


def test_connections_over_the_cap_get_the_wires_answer_and_are_closed(wire):
    i = Input(wire, max_connections=2)
    kept = [i.connect(40000 + n) for n in range(2)]
    with capturedLogs() as events:
        _, over = i.connect(50000)
    assert over.value().startswith(wire.busy) and over.disconnecting
    assert i.factory.connections == 2
    assert all(not t.disconnecting for _, t in kept)
    assert [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn] == [
        "refusing a connection from IPv4Address(type='TCP', host='127.0.0.1', port=50000):"
        " 2 connections already open"
    ]


def test_the_cap_has_the_same_default_on_both_wires(wire):
    assert Input(wire).factory.max_connections == 1000


# -- one batch at a time, pausing, re-entry --------------------------------------------------------


def test_one_batch_at_a_time_with_the_transport_paused_while_it_is_held(wire):
    i = Input(wire)
    proto, transport = i.connect()
    proto.dataReceived(wire.batch(1) + wire.batch(2) + wire.batch(3))
    assert [[e["n"] for e in b] for b in i.sink.batches] == [[1]]
    assert transport.producerState == "paused"
    assert proto.phase == WAITING and i.factory.pending == 1
    assert take(transport) == b""
    i.sink.release()
    assert wire.acked(take(transport)) == 1
    assert [[e["n"] for e in b] for b in i.sink.batches] == [[1], [2]]
    assert transport.producerState == "paused"
    i.sink.release()
    i.sink.release()
    assert wire.acked(take(transport)) == 2
    assert transport.producerState == "producing"
    assert i.factory.pending == 0


def test_bytes_arriving_while_a_batch_is_held_wait_for_its_answer(wire):
    i = Input(wire)
    proto, _ = i.connect()
    proto.dataReceived(wire.batch(1))
    proto.dataReceived(wire.batch(2))  # a transport may still deliver what it had read
    assert len(i.sink.batches) == 1
    i.sink.release()
    assert len(i.sink.batches) == 2


def test_a_sink_that_fires_at_once_neither_pauses_nor_recurses(wire):
    i = Input(wire, auto=True)
    proto, transport = i.connect()
    proto.dataReceived(b"".join(wire.batch(n) for n in range(3000)))
    assert len(i.sink.batches) == 3000
    assert wire.acked(take(transport)) == 3000
    assert transport.producerState == "producing"
    assert i.factory.pending == 0


def test_a_batch_settled_after_the_peer_left_writes_nothing_and_is_counted(wire):
    i = Input(wire)
    proto, transport = i.connect()
    proto.dataReceived(wire.batch(1))
    proto.connectionLost(None)
    assert i.factory.pending == 1 and i.factory.connections == 0
    i.sink.release()
    assert i.factory.pending == 0
    assert take(transport) == b""


# -- the native input's acknowledgements leave at the end of the reactor turn ---------------------


@pytest.fixture
def on_sockets(monkeypatch):
    """Connections taken for sockets, where acknowledgements are gathered for the turn's end (any
    other transport, such as these StringTransports, otherwise gets them at once)."""
    monkeypatch.setattr(server_module, "at_socket", lambda transport: True)


def test_acknowledgements_of_one_turn_leave_together_at_its_end(on_sockets):
    i = Input(NATIVE, auto=True)
    (p1, t1), (p2, t2) = i.connect(40000), i.connect(40001)
    p1.dataReceived(_request(1) + _request(2))  # pipelined: two answers, in order
    p2.dataReceived(_request(3))
    assert t1.value() == t2.value() == b"", "sent once the turn has read every connection"
    turn_end = [call for call in i.clock.getDelayedCalls() if call.getTime() == i.clock.seconds()]
    assert len(turn_end) == 1, "one timer for the whole turn"
    i.clock.advance(0)
    assert NATIVE.acked(take(t1)) == 2 and NATIVE.acked(take(t2)) == 1
    assert not turn_end[0].active()


def test_an_answer_written_at_once_goes_after_a_gathered_one(on_sockets):
    i = Input(NATIVE, auto=True)
    proto, transport = i.connect()
    proto.dataReceived(_request(1) + b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    answers = take(transport)
    assert answers.startswith(b"HTTP/1.1 200 OK\r\n"), answers
    assert answers.index(b"HTTP/1.1 405 ") > 0


def test_a_gathered_answer_goes_before_a_drain_closes_the_connection(on_sockets):
    i = Input(NATIVE, auto=True)
    proto, transport = i.connect()
    proto.dataReceived(_request(1))
    i.factory.drain()
    assert transport.disconnecting and NATIVE.acked(take(transport)) == 1


def test_no_timer_outlives_a_connection_lost_with_a_gathered_answer(on_sockets):
    i = Input(NATIVE, auto=True)
    proto, transport = i.connect()
    proto.dataReceived(_request(1))
    proto.connectionLost(None)
    assert i.clock.getDelayedCalls() == [], "neither the turn's end nor the deadlines' sweep"
    assert take(transport) == b""


# -- drain and abort ------------------------------------------------------------------------------


def test_drain_closes_idle_connections_and_waits_for_held_batches(wire):
    i = Input(wire)
    idle, idle_transport = i.connect(40000)
    busy, busy_transport = i.connect(40001)
    busy.dataReceived(wire.batch(1))
    drained = i.factory.drain()
    assert i.factory.draining
    assert idle_transport.disconnecting, "an idle connection closes at once"
    assert not busy_transport.disconnecting
    idle.connectionLost(None)
    assert not drained.called
    i.sink.release()
    assert wire.acked(take(busy_transport)) == 1, "the batch the sink took is acknowledged"
    assert busy_transport.disconnecting
    assert not drained.called
    busy.connectionLost(None)
    assert drained.called


def test_drain_waits_for_the_sink_after_the_peer_left(wire):
    i = Input(wire)
    proto, _ = i.connect()
    proto.dataReceived(wire.batch(1))
    drained = i.factory.drain()
    proto.connectionLost(None)
    assert not drained.called
    i.sink.release()
    assert drained.called


def test_drain_without_connections_fires_at_once_and_new_connections_close(wire):
    i = Input(wire)
    assert i.factory.drain().called
    _, transport = i.connect()
    assert transport.disconnecting and transport.value() == b""


def test_abort_drops_every_connection(wire):
    i = Input(wire)
    connections = [i.connect(40000 + n) for n in range(3)]
    connections[0][0].dataReceived(wire.batch(1))
    i.factory.abort()
    assert all(t.disconnected for _, t in connections)


# -- deadlines ------------------------------------------------------------------------------------


def test_an_idle_connection_closes_politely_at_its_deadline(wire):
    i = Input(wire, **{wire.idle_option: 10.0})
    proto, transport = i.connect()
    assert proto.phase == IDLE and proto.deadline == 10.0
    i.clock.advance(9.0)
    assert not transport.disconnecting
    i.clock.advance(1.0)
    assert transport.disconnecting and not transport.disconnected


def test_no_idle_deadline_while_the_sink_holds_a_batch(wire):
    no_sink_timeout = {"sink_timeout": None} if wire is NATIVE else {}
    i = Input(wire, **{wire.idle_option: 10.0}, **no_sink_timeout)
    proto, transport = i.connect()
    proto.dataReceived(wire.batch(1))
    i.clock.advance(100.0)
    assert not transport.disconnecting
    i.sink.release()
    assert proto.phase == IDLE and proto.deadline == 110.0
    i.clock.advance(10.0)
    assert transport.disconnecting


def test_the_sweep_stops_with_the_last_connection(wire):
    i = Input(wire)
    proto, _ = i.connect()
    assert i.clock.getDelayedCalls()
    proto.connectionLost(None)
    assert i.clock.getDelayedCalls() == []


def test_native_head_and_body_deadlines_run_from_their_phase_start():
    i = Input(NATIVE, header_timeout=5.0, body_timeout=8.0, idle_timeout=100.0)
    proto, transport = i.connect()
    proto.dataReceived(b"POST / HTTP/1.1\r\n")
    assert proto.phase == HEAD and proto.deadline == 5.0
    i.clock.advance(3.0)
    proto.dataReceived(b"Host: h\r\nContent-Length: 10\r\n\r\nabc")
    assert proto.phase == BODY and proto.deadline == 11.0
    i.clock.advance(7.0)
    proto.dataReceived(b"d")  # more body does not move the deadline
    assert proto.deadline == 11.0
    i.clock.advance(1.0)
    assert transport.disconnected  # aborted


def test_framed_reads_restart_the_inactivity_deadline_and_keepalives_go_out_while_held():
    i = Input(FRAMED, client_inactivity_timeout=10.0, keepalive_interval=2.0)
    proto, transport = i.connect()
    i.clock.advance(6.0)
    proto.dataReceived(b"2W")  # a read, even of half a frame
    assert proto.deadline == 16.0
    proto.dataReceived(b"\x00\x00\x00\x01" + encode_window([{"n": 1}])[6:])
    assert proto.phase == WAITING and proto.deadline == 8.0
    i.clock.pump([1.0] * 4)
    assert acks_in(take(transport)) == [0, 0]
    i.sink.release()
    assert acks_in(take(transport)) == [1]
    assert proto.phase == IDLE and proto.deadline == 20.0


# -- a TLS client on a plain port ----------------------------------------------------------------


TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32)


def test_tls_handshake_record_is_told_by_its_first_three_bytes():
    assert tls_handshake(b"") is None and tls_handshake(b"\x16\x03") is None
    assert tls_handshake(b"\x16\x03\x04")
    assert tls_handshake(b"\x16\x03\x05") is False
    assert tls_handshake(b"POS") is False


@pytest.mark.parametrize("pieces", [1, 3])
def test_a_tls_handshake_on_the_plain_port_closes_at_once(wire, pieces):
    i = Input(wire)
    proto, transport = i.connect()
    with capturedLogs() as events:
        if pieces == 1:
            proto.dataReceived(TLS_HELLO)
        else:
            for byte in TLS_HELLO[:3]:
                proto.dataReceived(bytes([byte]))
            proto.dataReceived(TLS_HELLO[3:])
    assert transport.disconnecting
    written = take(transport)
    if wire is NATIVE:
        assert written.startswith(b"HTTP/1.1 400 Bad Request")
    else:
        assert written == b""
    warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 1 and "TLS handshake" in warnings[0]
    proto.dataReceived(b"more handshake bytes")
    assert take(transport) == b"" and i.sink.batches == []


# -- the contract alone, with a scripted exchange ------------------------------------------------


@implementer(IInputExchange)
class Scripted:
    """An exchange that answers each received chunk with the results the test queued."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.queued: list[list] = []
        self.fed: list[bytes] = []
        self.calls: list[tuple] = []
        self.answer: bytes | Close = b"ack"

    def held(self):
        return sum(map(len, self.fed))

    def feed(self, data):
        self.fed.append(data)

    def receive(self, data):
        self.calls.append(("receive", data))
        return self.queued.pop(0) if self.queued else []

    def ack(self, events):
        self.calls.append(("ack", events))
        return self.answer

    def refuse(self, events, reason):
        self.calls.append(("refuse", events, reason.value))
        return Close(b"no")

    def keepalive(self):
        return b"ka"

    def timed_out(self, phase, seconds):
        self.calls.append(("timed_out", phase, seconds))
        return phase != IDLE

    def tls_hello(self):
        return Close(b"tls?")

    def drain(self):
        self.calls.append(("drain",))
        return True

    def lost(self):
        self.calls.append(("lost",))


def scripted(**options):
    clock = Clock()
    sink = HeldSink()
    factory = InputFactory(sink, clock, exchange=Scripted, **options)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return factory, proto, transport, sink, clock


def test_results_are_written_in_order_and_a_batch_goes_to_the_sink():
    _, proto, transport, sink, _ = scripted()
    assert verifyObject(IInputExchange, proto.exchange)
    proto.exchange.queued = [[b"a", b"b", [{"n": 1}]], [b"c"]]
    proto.dataReceived(b"x")
    assert transport.value() == b"ab"
    assert sink.batches == [[{"n": 1, "@timestamp": "1970-01-01T00:00:00.000Z", "@version": "1"}]]
    proto.dataReceived(b"y")
    assert proto.exchange.fed == [b"y"], "held while the sink has the batch"
    sink.release()
    assert transport.value() == b"abackc"
    assert proto.exchange.calls[-2:] == [("ack", sink.batches[0]), ("receive", b"")]


def test_a_close_result_writes_its_answer_and_closes():
    _, proto, transport, *_ = scripted()
    proto.exchange.queued = [[b"a", Close(b"bye")]]
    proto.dataReceived(b"x")
    assert transport.value() == b"abye" and transport.disconnecting
    proto.dataReceived(b"more")
    assert proto.exchange.calls == [("receive", b"x")]


def test_a_sink_failure_is_the_exchanges_to_answer():
    factory, proto, transport, sink, _ = scripted()
    proto.exchange.queued = [[[{"n": 1}]]]
    proto.dataReceived(b"x")
    sink.fail(error=RuntimeError("full"))
    assert transport.value() == b"no" and transport.disconnecting
    assert str(proto.exchange.calls[-1][2]) == "full"
    assert factory.pending == 0


def test_a_sink_that_raises_is_a_failure():
    class Raising:
        def deliver(self, events):
            raise RuntimeError("disk on fire")

    factory = InputFactory(Raising(), Clock(), exchange=Scripted)
    proto = factory.buildProtocol(None)
    proto.makeConnection(StringTransport())
    proto.exchange.queued = [[[{"n": 1}]]]
    proto.dataReceived(b"x")
    assert proto.exchange.calls[-1][0] == "refuse"


def test_timed_out_says_whether_to_abort_and_linger_bounds_a_close():
    _, proto, transport, _, clock = scripted(header_timeout=2.0, idle_timeout=9.0, linger=5.0)
    proto.set_phase(HEAD)
    clock.advance(2.0)
    assert transport.disconnected
    assert proto.exchange.calls[-1] == ("timed_out", HEAD, 2.0)
    _, proto, transport, _, clock = scripted(idle_timeout=9.0, linger=5.0)
    proto.exchange.queued = [[Close(b"bye")]]
    proto.dataReceived(b"x")
    assert transport.disconnecting and proto.phase == "linger"
    clock.advance(5.0)
    assert transport.disconnected


def test_keepalives_repeat_while_the_batch_is_held():
    _, proto, transport, sink, clock = scripted(keepalive_interval=1.0)
    proto.exchange.queued = [[[{"n": 1}]]]
    proto.dataReceived(b"x")
    clock.pump([1.0, 1.0, 1.0])
    assert transport.value() == b"kakaka"
    sink.release()
    clock.pump([1.0, 1.0])
    assert transport.value() == b"kakakaack"


def test_connection_lost_tells_the_exchange():
    factory, proto, *_ = scripted()
    proto.connectionLost(None)
    assert proto.exchange.calls == [("lost",)]
    assert factory.connections == 0 and proto.lost and proto.closing
