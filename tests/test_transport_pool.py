"""The transmitter skeleton on its own: the per-host pool and the attempt, with a toy wire.

The toy exchange writes the payload and settles on the answer ``ok`` (success), ``no``
(refused, connection kept) or ``bad`` (dropped); ``wait`` moves the deadline on. What each
wire adds is tested in test_native_client.py and test_lumberjack_client.py; here, what both
share, and that both real transmitters plug into it.
"""

from __future__ import annotations

import pytest
from twisted.internet import defer, error
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_logstash.errors import ConfigurationError, RetriableError, TerminalError
from twisted_logstash.interfaces import IAttempt, IConnectionPool, IExchange, IWire
from twisted_logstash.pipeline.output import Output
from twisted_logstash.transport.attempt import Attempt, describe_failure
from twisted_logstash.transport.hosts import Host
from twisted_logstash.transport.pool import TRANSMITTER_CLOSED, ConnectionPools
from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter
from twisted_logstash.wires.native.client import HttpTransmitter

HOST = Host("127.0.0.1", 9000)


@implementer(IExchange)
class ToyExchange:
    def __init__(self):
        self.lost_reasons = []

    def begin(self, transport, attempt):
        transport.write(attempt.payload)

    def receive(self, data, attempt):
        if data == b"ok":
            attempt.succeed()
        elif data == b"no":
            attempt.fail(TerminalError("refused", attempt.host))
        elif data == b"bad":
            attempt.drop(RetriableError("bad answer", attempt.host))
        elif data == b"wait":
            attempt.extend(10)

    def lost(self, reason, attempt):
        self.lost_reasons.append(reason)
        attempt.fail(RetriableError("lost: " + describe_failure(reason), attempt.host))

    def idle(self, data):
        return data == b"ping"


@implementer(IWire)
class ToyWire:
    protocol = None  # no hints

    def exchange(self, host):
        return ToyExchange()

    def timed_out(self, attempt, exchange):
        if exchange is None:
            return "waited"
        return "overdue" if attempt.overdue else "no answer"


class Endpoint:
    def __init__(self):
        self.connections = []
        self.hang = False
        self.hung = []

    def connect(self, factory):
        if self.hang:
            self.hung.append(factory)
            return defer.Deferred()
        proto = factory.buildProtocol(None)
        proto.makeConnection(StringTransport())
        self.connections.append(proto)
        return defer.succeed(proto)


class Toy:
    def __init__(self, **kwargs):
        self.clock = Clock()
        self.endpoint = Endpoint()
        self.pools = ConnectionPools(self.clock, lambda host: self.endpoint, ToyWire(), **kwargs)

    def attempt(self, payload=b"batch", timeout=5.0) -> defer.Deferred:
        return self.start(payload, timeout).result

    def start(self, payload=b"batch", timeout=5.0) -> Attempt:
        return Attempt(self.clock, self.pools.pool(HOST), ToyWire(), HOST, payload, timeout)

    def answer(self, data, index=-1):
        self.endpoint.connections[index].dataReceived(data)


def outcome(d: defer.Deferred):
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    result = results[0]
    return result.value if isinstance(result, Failure) else result


def test_the_pieces_provide_their_interfaces():
    toy = Toy()
    verifyObject(IAttempt, toy.start())
    verifyObject(IConnectionPool, toy.pools.pool(HOST))
    verifyObject(IExchange, toy.endpoint.connections[0].exchange)
    for transmitter in (
        HttpTransmitter(Clock(), lambda host: None),
        LumberjackTransmitter(Clock(), lambda host: None),
    ):
        verifyObject(IWire, transmitter)
        verifyObject(IExchange, transmitter.exchange(HOST))


def test_success_returns_the_connection_for_reuse():
    toy = Toy()
    first = toy.attempt(b"one")
    toy.answer(b"ok")
    assert outcome(first) is None
    second = toy.attempt(b"two")
    assert len(toy.endpoint.connections) == 1
    assert toy.endpoint.connections[0].transport.value() == b"onetwo"
    toy.answer(b"no")
    assert isinstance(outcome(second), TerminalError)
    assert toy.pools.idle(HOST) == 1  # a refusal keeps a reusable connection
    assert not toy.clock.getDelayedCalls()


def test_drop_aborts_the_connection():
    toy = Toy()
    d = toy.attempt()
    toy.answer(b"bad")
    assert outcome(d).reason == "bad answer"
    assert toy.endpoint.connections[0].transport.disconnected
    assert toy.pools.idle(HOST) == 0


def test_cap_and_first_come_waiting_line():
    toy = Toy(max_connections_per_host=1)
    first, second, third = toy.attempt(b"1"), toy.attempt(b"2"), toy.attempt(b"3")
    [conn] = toy.endpoint.connections
    toy.answer(b"ok")
    toy.answer(b"ok")
    toy.answer(b"ok")
    assert [outcome(d) for d in (first, second, third)] == [None] * 3
    assert conn.transport.value() == b"123"


def test_the_deadline_covers_waiting_and_the_exchange_may_set_a_nearer_one():
    toy = Toy(max_connections_per_host=1)
    busy = toy.attempt(timeout=20)
    waiting = toy.attempt(timeout=3)
    toy.clock.advance(3)
    assert outcome(waiting).reason == "waited"
    toy.answer(b"wait")  # at t=3: the answer is now due at t=13
    toy.clock.advance(9.9)
    assert not busy.called
    toy.clock.advance(0.1)
    assert outcome(busy).reason == "no answer"
    assert toy.endpoint.connections[0].transport.disconnected


def test_extend_never_moves_the_deadline_past_the_attempts_timeout():
    # a peer that only says it is working (keep-alives) cannot hold an attempt forever
    toy = Toy()
    attempt = toy.start(timeout=5)
    assert attempt.deadline == 5
    for _ in range(4):
        toy.clock.advance(1)
        toy.answer(b"wait")  # would be due 10 s later
    assert not attempt.result.called and not attempt.overdue
    toy.clock.advance(1)
    assert attempt.overdue
    assert outcome(attempt.result).reason == "overdue"
    assert toy.endpoint.connections[0].transport.disconnected
    assert not toy.clock.getDelayedCalls()


def test_cancel_aborts_its_own_connection_only():
    toy = Toy()
    mine, other = toy.attempt(), toy.attempt()
    mine.cancel()
    assert isinstance(outcome(mine), defer.CancelledError)
    a, b = toy.endpoint.connections
    assert a.transport.disconnected and a.attempt is None
    assert not b.transport.disconnecting
    assert not other.called
    assert not [c for c in toy.clock.getDelayedCalls() if c.active() and c.getTime() < 5]


def test_a_stale_reused_connection_is_retried_once_on_another():
    toy = Toy()
    toy.attempt()
    toy.answer(b"ok")
    d = toy.attempt(b"again")
    stale = toy.endpoint.connections[0]
    stale.connectionLost(Failure(error.ConnectionDone()))
    assert not d.called and len(toy.endpoint.connections) == 2
    toy.answer(b"ok")
    assert outcome(d) is None


def test_a_reused_connection_that_answered_something_is_not_retried():
    toy = Toy()
    toy.attempt()
    toy.answer(b"ok")
    d = toy.attempt()
    toy.answer(b"wait")
    toy.endpoint.connections[0].connectionLost(Failure(error.ConnectionDone()))
    assert outcome(d).reason == "lost: closed by the server"
    assert len(toy.endpoint.connections) == 1


def test_idle_bytes_are_judged_by_the_exchange():
    toy = Toy()
    toy.attempt()
    toy.answer(b"ok")
    conn = toy.endpoint.connections[0]
    conn.dataReceived(b"ping")
    assert not conn.transport.disconnecting
    conn.dataReceived(b"junk")
    assert conn.transport.disconnected
    toy.attempt()
    assert len(toy.endpoint.connections) == 2  # the distrusted one is not reused


def test_close_is_clean_then_aborts_after_the_grace_and_fails_what_waits():
    toy = Toy(max_connections_per_host=1, close_grace=1.0)
    busy = toy.attempt()
    waiting = toy.attempt()
    toy.endpoint.hang = True
    closed = toy.pools.close()
    again = toy.pools.close()
    assert outcome(waiting).reason == TRANSMITTER_CLOSED
    assert outcome(toy.attempt()).reason == TRANSMITTER_CLOSED
    conn = toy.endpoint.connections[0]
    assert not conn.transport.disconnecting  # busy: it may finish
    toy.clock.advance(1.0)
    assert conn.transport.disconnected
    assert outcome(closed) is None and outcome(again) is None
    assert not busy.called  # StringTransport does not report the abort; a real one does
    conn.connectionLost(Failure(error.ConnectionAborted()))
    assert isinstance(outcome(busy), RetriableError)
    assert not toy.clock.getDelayedCalls()


def test_close_cancels_connects_and_fires_at_once_when_nothing_is_open():
    toy = Toy()
    toy.endpoint.hang = True
    connecting = toy.attempt()
    closed = toy.pools.close()
    assert outcome(connecting).reason == TRANSMITTER_CLOSED
    assert outcome(closed) is None
    assert not toy.clock.getDelayedCalls()


def test_a_connection_made_after_close_is_closed():
    """An endpoint that does not stop connecting when its connect is cancelled."""
    toy = Toy()
    toy.endpoint.hang = True
    connecting = toy.attempt()
    toy.pools.close()
    assert outcome(connecting).reason == TRANSMITTER_CLOSED
    [factory] = toy.endpoint.hung
    late = factory.buildProtocol(None)
    late.makeConnection(StringTransport())
    assert late.transport.disconnecting and not late.transport.disconnected


@pytest.mark.parametrize(
    "kwargs", [{"max_connections_per_host": 0}, {"close_grace": -1}, {"close_grace": float("nan")}]
)
def test_bad_settings_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        ConnectionPools(Clock(), lambda host: None, ToyWire(), **kwargs)


# -- both wires: Output.abort_attempts goes through the one attempt ------------------------------


def http(clock, endpoint):
    return HttpTransmitter(clock, lambda host: endpoint, timeout=60)


def lumberjack(clock, endpoint):
    return LumberjackTransmitter(clock, lambda host: endpoint, ack_timeout=60, timeout=60)


@pytest.mark.parametrize("make", [http, lumberjack])
def test_output_abort_attempts_aborts_the_connection_on_both_wires(make):
    """Issue 10: on the framed wire, the cancelled attempt's connection stayed open."""
    clock = Clock()
    endpoint = Endpoint()
    output = Output(make(clock, endpoint), [HOST], clock, batch_size=1, batch_delay=0)
    output.startService()
    output.send([{"message": "held"}])
    [conn] = endpoint.connections
    assert conn.attempt is not None
    assert output.abort_attempts() == 1
    assert conn.transport.disconnected
    assert conn.attempt is None
    assert output.pending() == 1  # unacknowledged, still queued
