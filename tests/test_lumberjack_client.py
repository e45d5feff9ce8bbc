"""The framed transmitter against scripted receivers (in-memory transports, a Clock)."""

from __future__ import annotations

import zlib

import pytest
from support_lumberjack import ack
from twisted.internet import defer, error
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_logstash.errors import RetriableError
from twisted_logstash.interfaces import ITransmitter
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.lumberjack.client import (
    LumberjackTransmitter,
    compressed_frame,
    json_frames,
)
from twisted_logstash.wires.lumberjack.decoder import FrameDecoder
from twisted_logstash.wires.lumberjack.frames import (
    JsonDataFrame,
    WindowSizeFrame,
    encode_json_documents,
    encode_window_size,
)

HOST = Host("127.0.0.1", 5044)
OTHER = Host("127.0.0.1", 5045)


class MemoryTransport(StringTransport):
    """A StringTransport whose close reaches the protocol, as a real one's would."""

    def __init__(self):
        super().__init__()
        self.lost = False

    def _lose(self, reason):
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(reason))

    def loseConnection(self):
        super().loseConnection()
        self._lose(error.ConnectionDone())

    def abortConnection(self):
        super().abortConnection()
        self._lose(error.ConnectionAborted())


class Receivers:
    """An endpoint factory whose connections are in-memory; the test plays the receiver."""

    def __init__(self):
        self.connections: list[tuple[Host, object, MemoryTransport]] = []
        self.refuse: set[Host] = set()
        self.hang: set[Host] = set()

    def __call__(self, host: Host):
        receivers = self

        @implementer(IStreamClientEndpoint)
        class Endpoint:
            def connect(self, factory):
                if host in receivers.refuse:
                    return defer.fail(error.ConnectionRefusedError())
                if host in receivers.hang:
                    return defer.Deferred()
                proto = factory.buildProtocol(None)
                transport = MemoryTransport()
                transport.protocol = proto
                proto.makeConnection(transport)
                receivers.connections.append((host, proto, transport))
                return defer.succeed(proto)

        return Endpoint()

    def received(self, index: int = -1) -> list:
        transport = self.connections[index][2]
        frames = FrameDecoder().feed(transport.value())
        transport.clear()
        return frames

    def reply(self, data: bytes, index: int = -1) -> None:
        self.connections[index][1].dataReceived(data)

    def drop(self, index: int = -1) -> None:
        self.connections[index][2]._lose(error.ConnectionLost("reset by peer"))


def events(n: int, start: int = 0) -> list[dict]:
    return [{"n": i} for i in range(start, start + n)]


def sent_events(frames) -> list[int]:
    return [f.event["n"] for f in frames if isinstance(f, JsonDataFrame)]


def make(**options):
    clock = Clock()
    receivers = Receivers()
    return clock, receivers, LumberjackTransmitter(clock, receivers, **options)


def failure_of(d: defer.Deferred) -> RetriableError:
    failures = []
    d.addErrback(failures.append)
    assert failures, "expected the attempt to fail"
    assert failures[0].check(RetriableError)
    return failures[0].value


def test_implements_itransmitter():
    verifyObject(ITransmitter, make()[2])


@pytest.mark.parametrize("level", [3, None])
def test_window_is_sent_as_go_lumber_sends_it_and_done_on_the_last_ack(level):
    _clock, receivers, t = make(compression_level=level)
    d = t.transmit(HOST, t.encode(events(3)))
    transport = receivers.connections[0][2]
    raw = transport.value()
    assert raw[:6] == b"2W\x00\x00\x00\x03"
    assert raw[6:8] == (b"2C" if level else b"2J")
    frames = receivers.received()
    assert frames[0] == WindowSizeFrame(3)
    assert [f.seq for f in frames[1:]] == [1, 2, 3]
    assert sent_events(frames) == [0, 1, 2]
    assert not d.called
    receivers.reply(ack(2))
    assert not d.called
    receivers.reply(ack(3))
    assert d.called and d.result is None


def test_connection_is_reused_across_windows_and_one_window_per_connection():
    _clock, receivers, t = make()
    first = t.transmit(HOST, t.encode(events(1)))
    second = t.transmit(HOST, t.encode(events(1)))
    assert len(receivers.connections) == 2
    receivers.reply(ack(1), 0)
    receivers.reply(ack(1), 1)
    assert first.called and second.called
    third = t.transmit(HOST, t.encode(events(2)))
    assert len(receivers.connections) == 2
    receivers.reply(ack(2), 1)
    assert third.called
    t.transmit(OTHER, t.encode(events(1)))
    assert receivers.connections[-1][0] == OTHER


def test_partial_ack_then_loss_resends_only_the_rest_numbered_from_one():
    _clock, receivers, t = make()
    payload = t.encode(events(4))
    d = t.transmit(HOST, payload)
    receivers.received()
    receivers.reply(ack(2))
    receivers.drop()
    reason = failure_of(d).reason
    assert "connection lost after 2 of 4 events were acknowledged" in reason
    assert payload.acked == 2 and payload.remaining == 2
    again = t.transmit(OTHER, payload)
    frames = receivers.received()
    assert frames[0] == WindowSizeFrame(2)
    assert [(f.seq, f.event["n"]) for f in frames[1:]] == [(1, 2), (2, 3)]
    receivers.reply(ack(1))
    receivers.reply(ack(2))
    assert again.called and payload.remaining == 0
    assert t.transmit(HOST, payload).called  # nothing left: done at once, nothing sent
    assert len(receivers.connections) == 2


def test_ack_timeout_is_retriable_and_drops_the_connection():
    clock, receivers, t = make(ack_timeout=30.0)
    d = t.transmit(HOST, t.encode(events(2)))
    clock.advance(29.9)
    assert not d.called
    clock.advance(0.1)
    assert "no ACK within 30.0 s (0 of 2 events acknowledged)" in failure_of(d).reason
    assert receivers.connections[0][2].lost
    t.transmit(HOST, t.encode(events(1)))
    assert len(receivers.connections) == 2


def test_keepalive_and_partial_acks_restart_the_ack_timer():
    clock, receivers, t = make(ack_timeout=10.0, timeout=100.0)
    d = t.transmit(HOST, t.encode(events(2)))
    for _ in range(5):
        clock.advance(9)
        receivers.reply(ack(0))
    receivers.reply(ack(1))
    clock.advance(9)
    assert not d.called
    receivers.reply(ack(2))
    assert d.called and d.result is None
    clock.advance(100)
    assert clock.getDelayedCalls() == []


def test_keepalives_do_not_hold_a_window_past_the_attempt_timeout():
    # a receiver stuck forever that keeps sending keep-alives: the window fails at `timeout`
    # from the start of the attempt, so that the output can move it to another host
    clock, receivers, t = make(ack_timeout=10.0, timeout=60.0)
    payload = t.encode(events(2))
    d = t.transmit(HOST, payload)
    receivers.reply(ack(1))
    for _ in range(6):
        clock.advance(9)
        receivers.reply(ack(0))
    assert not d.called  # 54 s: keep-alives still stop a premature resend
    clock.advance(5.9)
    assert not d.called
    clock.advance(0.1)
    reason = failure_of(d).reason
    assert "window not fully acknowledged within 60 s (1 of 2 events acknowledged)" in reason
    assert receivers.connections[0][2].lost
    assert payload.acked == 1 and payload.remaining == 1
    assert clock.getDelayedCalls() == []


def test_the_ack_timeout_still_ends_a_silent_window_before_the_attempt_timeout():
    clock, receivers, t = make(ack_timeout=10.0, timeout=60.0)
    d = t.transmit(HOST, t.encode(events(2)))
    clock.advance(5)
    receivers.reply(ack(0))
    clock.advance(9.9)
    assert not d.called
    clock.advance(0.1)
    assert "no ACK within 10.0 s (0 of 2 events acknowledged)" in failure_of(d).reason


def test_the_attempt_timeout_counts_the_wait_for_a_connection():
    # the deadline runs from the start of the attempt, not from the window being written
    clock, receivers, t = make(ack_timeout=10.0, timeout=12.0, max_connections_per_host=1)
    first = t.transmit(HOST, t.encode(events(1)))
    second = t.transmit(HOST, t.encode(events(1)))  # waits for the only connection
    clock.advance(8)
    receivers.reply(ack(1))
    assert first.called and not second.called
    receivers.received()
    clock.advance(3.9)
    receivers.reply(ack(0))  # a keep-alive would move the ACK timer to 21.9 s
    assert not second.called
    clock.advance(0.1)
    assert "window not fully acknowledged within 12 s" in failure_of(second).reason


def test_refused_and_connect_timeout_are_retriable():
    clock, receivers, t = make(timeout=5.0)
    receivers.refuse.add(HOST)
    assert "connection refused" in failure_of(t.transmit(HOST, t.encode(events(1)))).reason
    receivers.hang.add(OTHER)
    d = t.transmit(OTHER, t.encode(events(1)))
    clock.advance(5)
    assert "cannot connect: timed out" in failure_of(d).reason


def test_receiver_speaking_nonsense_is_a_retriable_protocol_error():
    _clock, receivers, t = make()
    d = t.transmit(HOST, t.encode(events(2)))
    receivers.reply(ack(3))
    assert "beyond the window of 2" in failure_of(d).reason
    d = t.transmit(HOST, t.encode(events(2)))
    receivers.reply(b"2W\x00\x00\x00\x01")
    assert "protocol error" in failure_of(d).reason
    assert all(transport.lost for _, _, transport in receivers.connections)


def test_an_idle_pooled_connection_that_closes_is_not_reused():
    _clock, receivers, t = make()
    d = t.transmit(HOST, t.encode(events(1)))
    receivers.reply(ack(1))
    assert d.called
    receivers.drop(0)
    t.transmit(HOST, t.encode(events(1)))
    assert len(receivers.connections) == 2


def test_close_closes_idle_connections_and_aborts_windows_in_flight_after_the_grace():
    clock, receivers, t = make(close_grace=2.0)
    idle = t.transmit(HOST, t.encode(events(1)))
    busy = t.transmit(HOST, t.encode(events(1)))
    receivers.reply(ack(1), 0)
    receivers.hang.add(OTHER)
    connecting = t.transmit(OTHER, t.encode(events(1)))
    closed = t.close()
    assert idle.called and not closed.called
    failure_of(connecting)
    idle_transport, busy_transport = (c[2] for c in receivers.connections)
    assert idle_transport.lost and not idle_transport.disconnected  # closed, not reset
    assert not busy.called and not busy_transport.lost  # its window may still finish
    clock.advance(2.0)
    assert busy_transport.disconnected  # reset after the grace
    assert "connection lost" in failure_of(busy).reason
    assert closed.called
    assert "closed" in failure_of(t.transmit(HOST, t.encode(events(1)))).reason
    assert clock.getDelayedCalls() == []


def test_close_is_graceful_when_nothing_is_in_flight():
    """Issue 10: close reset every connection (an RST), and Beats receivers logged
    "connection reset by peer" at the end of every run."""
    _clock, receivers, t = make()
    d = t.transmit(HOST, t.encode(events(2)))
    receivers.reply(ack(2))
    assert d.called
    closed = t.close()
    [(_, _, transport)] = receivers.connections
    assert transport.lost and not transport.disconnected  # loseConnection, not abortConnection
    assert closed.called


def test_a_window_in_flight_at_close_may_finish_then_its_connection_closes():
    clock, receivers, t = make()
    d = t.transmit(HOST, t.encode(events(2)))
    closed = t.close()
    receivers.reply(ack(2))
    assert d.called and d.result is None
    [(_, _, transport)] = receivers.connections
    assert transport.lost and not transport.disconnected
    assert closed.called
    assert clock.getDelayedCalls() == []


def test_cancel_aborts_the_connection_and_detaches_the_window():
    """Issue 10: cancelling a framed attempt (Output.abort_attempts, on stop) left its
    connection open with the window and its ACK timer still attached."""
    clock, receivers, t = make()
    d = t.transmit(HOST, t.encode(events(2)))
    d.cancel()
    failures = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(defer.CancelledError)
    [(_, _, transport)] = receivers.connections
    assert transport.disconnected  # aborted: the receiver must not ACK into a dead attempt
    assert clock.getDelayedCalls() == []
    again = t.transmit(HOST, t.encode(events(1)))
    assert len(receivers.connections) == 2
    receivers.reply(ack(1))
    assert again.called and again.result is None


def test_empty_payload_is_done_without_connecting():
    _clock, receivers, t = make()
    assert t.transmit(HOST, t.encode([])).called
    assert receivers.connections == []


def test_bad_compression_level_is_refused():
    with pytest.raises(ValueError):
        make(compression_level=10)


@pytest.mark.parametrize("count", [0, 1, 3, 300])
def test_json_frames_are_the_frames_modules_bytes(count):
    documents = [b'{"n":%d,"m":"%s"}' % (n, b"x" * n) for n in range(count)]
    assert json_frames(documents) == encode_json_documents(documents, 1)


@pytest.mark.parametrize("level", [1, 3, 6, 9])
def test_a_compressed_frame_is_a_zlib_stream_any_reader_inflates(level):
    inner = json_frames([b'{"message":"%d"}' % n for n in range(500)])
    frame = compressed_frame(inner, level)
    assert frame[:2] == b"2C"
    assert int.from_bytes(frame[2:6], "big") == len(frame) - 6
    assert zlib.decompress(frame[6:]) == inner
    window = encode_window_size(500) + frame
    decoded = list(FrameDecoder().feed(window))
    assert isinstance(decoded[0], WindowSizeFrame)
    assert [(f.seq, f.event) for f in decoded[1:]] == [
        (n + 1, {"message": str(n)}) for n in range(500)
    ]


def test_acks_cut_anywhere_are_read_as_whole_ones_are():
    """A whole ACK read alone skips the decoder; one cut across reads, or read with half of
    the next, goes through it, and what it holds is not skipped."""
    _clock, receivers, t = make()
    payload = t.encode(events(5))
    d = t.transmit(HOST, payload)
    receivers.received()
    stream = ack(1) + ack(2) + ack(0) + ack(4)
    for piece in (stream[:3], stream[3:9], stream[9:15], stream[15:21], stream[21:]):
        receivers.reply(piece)
    assert payload.acked == 4 and not d.called
    results = []
    d.addBoth(results.append)
    receivers.reply(ack(5))
    assert results == [None]
    d = t.transmit(HOST, t.encode(events(2)))
    receivers.received()
    receivers.reply(ack(3))  # beyond the window, whole and alone: still a protocol error
    assert "ACK 3 beyond the window of 2" in failure_of(d).reason
