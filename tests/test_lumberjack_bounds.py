"""The framed input bounded by bytes and linear in time (issue 11).

Memory is asserted on the bytes the code accounts (``LumberjackExchange.held()``, the decoder's
own counters), never on RSS: bench/memory.py measures the RSS under the same attacks.
"""

from __future__ import annotations

import struct
import zlib

import pytest
import pytest_twisted
from support_lumberjack import HeldSink, ack, json_frame, u32, window
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_logstash.wires.lumberjack import server as server_module
from twisted_logstash.wires.lumberjack.decoder import FrameDecoder
from twisted_logstash.wires.lumberjack.server import (
    DEFAULT_MAX_WINDOW_BYTES,
    EVENT_OVERHEAD,
    LumberjackInputFactory,
)

TIMEOUT = 10.0


class Connection:
    """One framed input connection on a StringTransport and a Clock."""

    def __init__(self, auto: bool = False, **options):
        self.clock = Clock()
        self.sink = HeldSink(auto=auto)
        self.factory = LumberjackInputFactory(self.sink, self.clock, **options)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def held(self) -> int:
        return self.protocol.exchange.held()

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionError("gone")))


@pytest.fixture
def logged(monkeypatch):
    events: list[dict] = []
    monkeypatch.setattr(server_module, "log", Logger(observer=events.append))
    return events


def text(logged: list[dict]) -> str:
    from twisted.logger import formatEvent

    return "\n".join(formatEvent(event) for event in logged)


def c_frame(inner: bytes, level: int = 9) -> bytes:
    body = zlib.compress(inner, level)
    return b"2C" + u32(len(body)) + body


def big_events(count: int, size: int, first_seq: int = 1) -> bytes:
    """``count`` J frames of about ``size`` bytes of very compressible JSON each."""
    payload = b'{"message":"' + b"x" * size + b'"}'
    return b"".join(json_frame(seq, payload) for seq in range(first_seq, first_seq + count))


# -- defect: a window that never completes held 1.1 GB for 1 MB sent ----------------------------


def test_unfinished_window_of_c_frames_is_refused_past_max_window_bytes(logged):
    """W 10000, then C frames of highly compressible events that never complete the window: the
    connection is closed with a protocol error once it would hold more than max_window_bytes, and
    it never accounts more than that (plus one event) on the way."""
    limit = 1024 * 1024
    c = Connection(max_window_bytes=limit)
    c.send(window(10_000))
    sent = 0
    peak = 0
    for n in range(0, 9_000, 100):
        frame = c_frame(big_events(100, 10_000, first_seq=n + 1))
        sent += len(frame)
        c.send(frame)
        peak = max(peak, c.held())
        if c.closed:
            break
    assert c.closed, "the unfinished window was never refused"
    assert peak <= limit + 10_100 + EVENT_OVERHEAD
    assert sent < 20_000  # the attack costs the sender next to nothing
    assert c.sink.batches == [] and c.transport.value() == b""
    assert "max_window_bytes" in text(logged)
    c.lose()
    assert c.held() == 0


def test_window_bytes_count_across_plain_j_frames_too(logged):
    c = Connection(max_window_bytes=200_000)
    c.send(window(1000) + big_events(50, 1_000))
    assert not c.closed
    assert 50 * (1_000 + EVENT_OVERHEAD) < c.held() <= 200_000
    c.send(big_events(60, 1_000, first_seq=51))
    assert c.closed and "max_window_bytes" in text(logged)


def test_a_window_under_the_limit_is_delivered_and_held_drops_to_zero():
    c = Connection(max_window_bytes=1024 * 1024)
    c.send(window(50) + c_frame(big_events(50, 10_000)))
    assert not c.closed
    assert len(c.sink.batches) == 1 and len(c.sink.batches[0]) == 50
    assert c.held() == 0  # handed to the sink: no longer the exchange's
    c.sink.release()
    assert c.transport.value() == ack(50)


def test_held_counts_buffered_bytes_inflation_and_decoded_events():
    c = Connection()
    assert c.held() == 0
    c.send(window(3) + json_frame(1, b'{"a":1}')[:5])
    assert c.held() >= 5  # a partial frame is buffered
    c.send(json_frame(1, b'{"a":1}')[5:])
    one = c.held()
    assert one >= len(b'{"a":1}') + EVENT_OVERHEAD  # one decoded event, not yet delivered
    c.send(c_frame(json_frame(2, b'{"b":2}'))[:8])
    assert c.held() >= one + 2
    c.send(c_frame(json_frame(2, b'{"b":2}'))[8:] + json_frame(3, b"{}"))
    assert c.held() == 0 and len(c.sink.batches) == 1


def test_default_max_window_bytes_is_documented_and_used():
    factory = LumberjackInputFactory(HeldSink(), Clock())
    assert factory.max_window_bytes == DEFAULT_MAX_WINDOW_BYTES
    assert DEFAULT_MAX_WINDOW_BYTES >= 64 * 1024 * 1024


def test_windows_decoded_behind_the_one_with_the_sink_count_against_the_limit(logged):
    """Pipelined windows read while the sink holds one are held by the connection: they count."""
    c = Connection(max_window_bytes=100_000)
    c.send(window(1) + json_frame(1, b"{}"))  # with the sink now
    assert len(c.sink.batches) == 1
    for n in range(20):
        c.send(window(10) + big_events(10, 1_000, first_seq=n * 10 + 2))
        if c.closed:
            break
        assert c.held() <= 100_000
    assert "max_window_bytes" in text(logged)


# -- defect: v1 D frames parsed in quadratic time ------------------------------------------------


def d_frame(seq: int, pairs: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(u32(len(k)) + k + u32(len(v)) + v for k, v in pairs)
    return b"1D" + u32(seq) + u32(len(pairs)) + body


def test_v1_data_frame_split_in_many_pieces_is_parsed_in_linear_steps():
    pairs = [(b"k%d" % i, b"v") for i in range(20_000)]
    frame = d_frame(1, pairs)
    decoder = FrameDecoder()
    frames = []
    for at in range(0, len(frame), 16):
        frames += decoder.feed(frame[at : at + 16])
    assert len(frames) == 1 and len(frames[0].event) == 20_000
    # every field is read once: no re-parse of the growing frame at each piece
    assert decoder.steps <= 2 * (2 * len(pairs)) + len(frame) // 16 + 10


def test_eight_megabytes_of_v1_data_frames_fed_in_small_pieces():
    value = b"y" * 100
    pairs = [(b"f%d" % i, value) for i in range(72_000)]
    stream = b"1W" + u32(1) + d_frame(1, pairs)
    assert len(stream) > 8_000_000
    c = Connection(auto=True)
    for at in range(0, len(stream), 4096):
        c.send(stream[at : at + 4096])
    assert len(c.sink.batches) == 1 and c.sink.batches[0][0]["f71999"] == "y" * 100
    assert c.transport.value() == ack(1, b"1")
    assert c.protocol.exchange.decoder.steps <= 4 * 2 * len(pairs) + 4096


def test_v1_data_frames_nested_in_a_c_frame_streamed():
    frame = d_frame(1, [(b"message", b"hello"), (b"host", b"a")])
    inner = zlib.compress(frame)
    stream = b"1W" + u32(1) + b"1C" + u32(len(inner)) + inner
    c = Connection(auto=True)
    for at in range(len(stream)):
        c.send(stream[at : at + 1])
    assert c.sink.batches[0][0]["message"] == "hello"
    assert c.transport.value() == ack(1, b"1")


# -- defect: a window whose frames never complete ------------------------------------------------


@pytest.mark.parametrize(
    "partial",
    [
        window(10_000) + json_frame(1, b"{}") + c_frame(big_events(10, 100, 2))[:12],
        window(10_000) + json_frame(1, b'{"a":1}')[:7],
        window(10_000) + c_frame(big_events(50, 1_000))[:-3],
    ],
    ids=["C frame cut", "J frame cut", "C frame nearly whole"],
)
def test_a_window_that_never_completes_is_ended_by_the_inactivity_timeout(partial):
    c = Connection(client_inactivity_timeout=30.0)
    c.send(partial)
    assert c.held() > 0
    c.clock.advance(29)
    assert not c.closed
    c.clock.advance(5)
    assert c.closed
    c.lose()
    assert c.held() == 0 and c.sink.batches == []


# -- defect: no connection cap on the framed wire -------------------------------------------------


class Client(protocol.Protocol):
    def __init__(self):
        self.received = b""
        self.closed = defer.Deferred()
        self.got = defer.Deferred()

    def dataReceived(self, data):
        self.received += data
        if self.got is not None and len(self.received) >= 6:
            got, self.got = self.got, None
            got.callback(self.received)

    def connectionLost(self, reason):
        self.closed.callback(None)


def _bounded(d: defer.Deferred) -> defer.Deferred:
    return d.addTimeout(TIMEOUT, reactor)


@defer.inlineCallbacks
def _connect(port_number: int):
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port_number, timeout=TIMEOUT)
    client = Client()
    yield connectProtocol(endpoint, client)
    return client


@defer.inlineCallbacks
def _served(client: Client, seq: int):
    client.transport.write(window(1) + json_frame(seq, b'{"n":%d}' % seq))
    data = yield _bounded(client.got)
    return struct.unpack(">I", data[2:6])[0]


class WatchedFactory(LumberjackInputFactory):
    """The framed input, telling when a connection is gone on its side."""

    _gone: defer.Deferred | None = None

    def next_disconnect(self) -> defer.Deferred:
        self._gone = defer.Deferred()
        return self._gone

    def disconnected(self, connection):
        super().disconnected(connection)
        if self._gone is not None:
            gone, self._gone = self._gone, None
            gone.callback(None)


@pytest_twisted.inlineCallbacks
def test_loopback_connections_over_max_connections_are_closed_and_a_slot_frees():
    sink = HeldSink(auto=True)
    factory = WatchedFactory(sink, reactor, max_connections=5)
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    number = port.getHost().port
    clients = []
    try:
        for _ in range(5):
            clients.append((yield _connect(number)))
        extra = yield _connect(number)
        yield _bounded(extra.closed)  # the sixth is closed without a word
        assert extra.received == b""
        for seq, client in enumerate(clients, 1):
            assert (yield _served(client, seq)) == seq
        assert factory.connections == 5
        freed = factory.next_disconnect()
        clients[0].transport.loseConnection()
        yield _bounded(clients[0].closed)
        yield _bounded(freed)
        assert factory.connections == 4
        again = yield _connect(number)
        clients.append(again)
        assert (yield _served(again, 9)) == 9
        assert sorted(e["n"] for e in sink.events) == [1, 2, 3, 4, 5, 9]
    finally:
        for client in clients[1:]:
            client.transport.loseConnection()
        yield port.stopListening()
        for client in clients[1:]:
            yield _bounded(client.closed)


# -- a W 0 flood (keep-alive windows) -------------------------------------------------------------


class CountingTransport(StringTransport):
    writes = 0

    def write(self, data):
        self.writes += 1
        super().write(data)


def test_a_w0_flood_is_counted_while_held_and_answered_in_one_write():
    """Each `A 0` written alone cost Twisted's write buffer a bytes object of its own (a W 0
    flood held 9 times what it sent): the answers of one read go out as one write."""
    c = Connection()
    c.transport = CountingTransport()
    c.protocol = c.factory.buildProtocol(None)
    c.protocol.makeConnection(c.transport)
    c.send(window(1) + json_frame(1, b"{}"))  # with the sink: the W 0s behind it wait
    c.send(window(0) * 10_000)
    assert c.held() >= 10_000 * 6
    c.sink.release()
    assert c.transport.value() == ack(1) + ack(0) * 10_000
    assert c.transport.writes <= 2
    assert c.held() == 0


def test_a_w0_flood_over_max_window_bytes_is_refused(logged):
    c = Connection(max_window_bytes=50_000)
    c.send(window(1) + json_frame(1, b"{}"))
    c.send(window(0) * 10_000)
    assert "max_window_bytes" in text(logged) and c.held() == 0
    c.sink.release()  # the window with the sink still gets its ACK, then the close
    assert c.transport.value() == ack(1) and c.closed
