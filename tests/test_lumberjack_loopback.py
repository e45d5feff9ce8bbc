"""The framed wire end to end over real sockets on 127.0.0.1: our transmitter to our input."""

from __future__ import annotations

import pytest
import pytest_twisted
from support_lumberjack import HeldSink, ack
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import implementer

from twisted_logstash.errors import RetriableError
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter
from twisted_logstash.wires.lumberjack.decoder import FrameDecoder
from twisted_logstash.wires.lumberjack.frames import WindowSizeFrame
from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory

TIMEOUT = 10.0


def tcp(host: Host) -> IStreamClientEndpoint:
    return TCP4ClientEndpoint(reactor, host.host, host.port, timeout=TIMEOUT)


class CountingFactory(LumberjackInputFactory):
    """Our input, counting the connections it accepted."""

    accepted = 0

    def buildProtocol(self, addr):
        self.accepted += 1
        return super().buildProtocol(addr)


@defer.inlineCallbacks
def listen(factory: protocol.Factory):
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    return port, Host("127.0.0.1", port.getHost().port)


@defer.inlineCallbacks
def shutdown(transmitter: LumberjackTransmitter, *ports):
    yield transmitter.close()
    for port in ports:
        yield port.stopListening()


def bounded(d: defer.Deferred) -> defer.Deferred:
    return d.addTimeout(TIMEOUT, reactor)


@pytest.mark.parametrize("level", [3, None])
@pytest_twisted.inlineCallbacks
def test_windows_travel_on_one_connection(level):
    sink = HeldSink(auto=True)
    factory = CountingFactory(sink, reactor)
    port, host = yield listen(factory)
    transmitter = LumberjackTransmitter(reactor, tcp, compression_level=level, ack_timeout=TIMEOUT)
    try:
        for w in range(3):
            batch = [{"window": w, "i": i, "text": "é" * i} for i in range(50)]
            yield bounded(transmitter.transmit(host, transmitter.encode(batch)))
        assert [len(batch) for batch in sink.batches] == [50, 50, 50]
        assert [(e["window"], e["i"]) for e in sink.events] == [
            (w, i) for w in range(3) for i in range(50)
        ]
        assert sink.events[7]["text"] == "é" * 7
        assert all("@timestamp" in e for e in sink.events)
        assert factory.accepted == 1
    finally:
        yield shutdown(transmitter, port)


class HalfAckServer(protocol.Protocol):
    """Reads one window, ACKs half of it, then drops the connection."""

    def connectionMade(self):
        self.decoder = FrameDecoder()
        self.frames = []

    def dataReceived(self, data):
        self.frames.extend(self.decoder.feed(data))
        count = self.frames[0].count if self.frames else None
        if count is not None and len(self.frames) == count + 1:
            self.factory.windows.append(self.frames)
            self.transport.write(ack(count // 2))
            self.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_partial_ack_then_drop_resends_only_the_rest():
    half = protocol.Factory.forProtocol(HalfAckServer)
    half.windows = []
    half_port, half_host = yield listen(half)
    sink = HeldSink(auto=True)
    port, host = yield listen(LumberjackInputFactory(sink, reactor))
    transmitter = LumberjackTransmitter(reactor, tcp, ack_timeout=TIMEOUT)
    payload = transmitter.encode([{"i": i} for i in range(6)])
    try:
        with pytest.raises(RetriableError, match="after 3 of 6 events were acknowledged"):
            yield bounded(transmitter.transmit(half_host, payload))
        (frames,) = half.windows
        assert frames[0] == WindowSizeFrame(6)
        assert [f.event["i"] for f in frames[1:]] == list(range(6))
        assert payload.acked == 3
        yield bounded(transmitter.transmit(host, payload))
        assert [e["i"] for e in sink.events] == [3, 4, 5]
        assert payload.remaining == 0
    finally:
        yield shutdown(transmitter, port, half_port)


@implementer(IStreamClientEndpoint)
class WatchedEndpoint:
    """A TCP endpoint whose connections report each chunk the receiver wrote back."""

    def __init__(self, host: Host, on_data):
        self.inner = tcp(host)
        self.on_data = on_data

    def connect(self, factory):
        def watch(proto):
            original = proto.dataReceived

            def data_received(data):
                self.on_data(data)
                original(data)

            proto.dataReceived = data_received
            return proto

        return self.inner.connect(factory).addCallback(watch)


@pytest_twisted.inlineCallbacks
def test_keepalive_acks_hold_the_sender_while_the_sink_is_slow():
    sink = HeldSink()
    factory = LumberjackInputFactory(sink, reactor, keepalive_interval=0.05)
    port, host = yield listen(factory)
    keepalives = []
    enough = defer.Deferred()

    def on_data(data):
        keepalives.extend(i for i in range(0, len(data), 6) if data[i : i + 6] == ack(0))
        if len(keepalives) >= 8 and not enough.called:
            enough.callback(None)

    transmitter = LumberjackTransmitter(
        reactor, lambda h: WatchedEndpoint(h, on_data), ack_timeout=0.3
    )
    try:
        sent = transmitter.transmit(host, transmitter.encode([{"slow": True}]))
        yield bounded(enough)  # 8 keep-alives at 0.05 s: longer than the 0.3 s ACK timeout
        assert not sent.called
        assert len(sink.batches) == 1
        sink.release()
        yield bounded(sent)
    finally:
        yield shutdown(transmitter, port)


@pytest_twisted.inlineCallbacks
def test_refused_is_retriable():
    port, host = yield listen(protocol.Factory.forProtocol(protocol.Protocol))
    yield port.stopListening()
    transmitter = LumberjackTransmitter(reactor, tcp)
    with pytest.raises(RetriableError, match="connection refused"):
        yield bounded(transmitter.transmit(host, transmitter.encode([{"a": 1}])))
    yield transmitter.close()


@pytest_twisted.inlineCallbacks
def test_receiver_protocol_error_drops_the_window_for_a_resend():
    sink = HeldSink(auto=True)
    port, host = yield listen(LumberjackInputFactory(sink, reactor))
    transmitter = LumberjackTransmitter(reactor, tcp, ack_timeout=TIMEOUT)
    try:
        client = yield tcp(host).connect(protocol.Factory.forProtocol(_Recorder))
        client.transport.write(b"2W\x00\x00\x00\x01" + b"2J\x00\x00\x00\x01\x00\x00\x00\x01[")
        yield bounded(client.lost)
        assert client.received == b""
        assert sink.batches == []
        yield bounded(transmitter.transmit(host, transmitter.encode([{"after": 1}])))
        assert [e["after"] for e in sink.events] == [1]
    finally:
        yield shutdown(transmitter, port)


class _Recorder(protocol.Protocol):
    def __init__(self):
        self.received = b""
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(None)
