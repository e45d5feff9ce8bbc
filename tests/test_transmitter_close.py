"""Closing a transmitter over real loopback sockets, on both wires, plain and TLS.

`close()` closes each connection cleanly (a FIN, and `close_notify` under TLS) when the peer
takes part; a peer that does not (a JDK/Netty receiver's `SslHandler` never answers our
`close_notify`) is aborted after the grace, so that a finite `logstash-output` exits.
"""

from __future__ import annotations

import re

import pytest
import pytest_twisted
from support_lumberjack import ack
from twisted.internet import defer, error, ssl, task
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import formatEvent, globalLogPublisher
from zope.interface import implementer

from tests import support_tls
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter
from twisted_logstash.wires.lumberjack.decoder import FrameDecoder
from twisted_logstash.wires.native.client import HttpTransmitter

certs = support_tls.certs  # the session fixture, under its name
TIMEOUT = 10.0
GRACE = 0.5
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
EVENTS = [{"message": "close me", "n": n} for n in range(3)]


class Receiver(Protocol):
    """Answers each request (native) or window (framed). A `deaf` receiver stops reading once
    it answered: it never sees our close, so it neither answers `close_notify` nor closes."""

    def connectionMade(self):
        self.buffer = b""
        self.frames = []
        self.decoder = FrameDecoder()
        self.gone = defer.Deferred()
        self.factory.connections.append(self)

    def dataReceived(self, data):
        answer = self._http(data) if self.factory.wire == "http" else self._lumberjack(data)
        if answer:
            self.transport.write(answer)
            if self.factory.deaf:
                self.transport.pauseProducing()

    def _http(self, data: bytes) -> bytes | None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        length = int(re.search(rb"Content-Length: (\d+)", self.buffer[:end]).group(1))
        if len(self.buffer) < end + 4 + length:
            return None
        self.buffer = self.buffer[end + 4 + length :]
        return HTTP_OK

    def _lumberjack(self, data: bytes) -> bytes | None:
        self.frames.extend(self.decoder.feed(data))
        if self.frames and len(self.frames) == self.frames[0].count + 1:
            count, self.frames = self.frames[0].count, []
            return ack(count)
        return None

    def connectionLost(self, reason):
        self.gone.callback(reason.value)


class ReceiverFactory(Factory):
    protocol = Receiver
    noisy = False

    def __init__(self, wire: str, deaf: bool):
        self.wire = wire
        self.deaf = deaf
        self.connections: list[Receiver] = []


@implementer(IStreamClientEndpoint)
class Watched:
    """A client endpoint that records why each of its connections ended."""

    def __init__(self, inner, ended: list):
        self.inner = inner
        self.ended = ended

    def connect(self, factory):
        def watch(proto):
            original = proto.connectionLost

            def connection_lost(reason):
                self.ended.append(reason.value)
                original(reason)

            proto.connectionLost = connection_lost
            return proto

        return self.inner.connect(factory).addCallback(watch)


def listen(reactor, factory, certs, tls: bool):
    if not tls:
        return reactor.listenTCP(0, factory, interface="127.0.0.1")
    pem = (certs / "server.crt").read_bytes() + (certs / "server.pkcs8.key").read_bytes()
    options = ssl.PrivateCertificate.loadPEM(pem).options()
    return reactor.listenSSL(0, factory, options, interface="127.0.0.1")


def transmitter_for(reactor, wire: str, certs, tls: bool, ended: list, **kwargs):
    trust = ssl.Certificate.loadPEM((certs / "ca.crt").read_bytes())

    def endpoint(host: Host):
        tcp = TCP4ClientEndpoint(reactor, host.host, host.port)
        if tls:
            tcp = wrapClientTLS(ssl.optionsForClientTLS("localhost", trustRoot=trust), tcp)
        return Watched(tcp, ended)

    if wire == "http":
        return HttpTransmitter(reactor, endpoint, timeout=TIMEOUT, **kwargs)
    return LumberjackTransmitter(reactor, endpoint, ack_timeout=TIMEOUT, **kwargs)


@pytest.fixture
def logged():
    """The project's log lines while the test runs."""
    lines: list[str] = []

    def observe(event):
        if str(event.get("log_namespace", "")).startswith("twisted_logstash"):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


@pytest.fixture
def failures():
    """Every failure logged while the test runs (an "Unhandled Error" from the reactor too)."""
    found: list[str] = []

    def observe(event):
        failure = event.get("log_failure") or event.get("failure")  # "failure": log.err's
        if failure is not None:
            found.append(failure.getTraceback())

    globalLogPublisher.addObserver(observe)
    yield found
    globalLogPublisher.removeObserver(observe)


WIRES = pytest.mark.parametrize("wire", ["http", "lumberjack"])
# Twisted's PrivateCertificate.options() still hands pyOpenSSL objects to OpenSSL.
OPENSSL_OBJECTS = pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")
TLS = pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])


@OPENSSL_OBJECTS
@WIRES
@TLS
@pytest_twisted.inlineCallbacks
def test_close_is_clean_when_the_receiver_takes_part(certs, failures, wire, tls):
    """A FIN (and close_notify both ways under TLS), no RST: nothing is aborted, and nothing
    is logged as an error (the peer's close_notify, read once our write side was closed, made
    Twisted's TLS layer log an AttributeError: every finite run over TLS ended with one)."""
    from twisted.internet import reactor

    factory = ReceiverFactory(wire, deaf=False)
    port = listen(reactor, factory, certs, tls)
    host = Host("127.0.0.1", port.getHost().port)
    ended: list = []
    transmitter = transmitter_for(reactor, wire, certs, tls, ended, close_grace=TIMEOUT)
    try:
        yield transmitter.transmit(host, transmitter.encode(EVENTS)).addTimeout(TIMEOUT, reactor)
        yield transmitter.close().addTimeout(TIMEOUT, reactor)
        [receiver] = factory.connections
        reason = yield receiver.gone.addTimeout(TIMEOUT, reactor)
        assert type(reason) is error.ConnectionDone
        assert [type(reason) for reason in ended] == [error.ConnectionDone]
        yield task.deferLater(reactor, 0)  # close() fired inside the last read: let it unwind
        assert not failures, failures[0]
    finally:
        yield port.stopListening()


@OPENSSL_OBJECTS
@WIRES
@pytest_twisted.inlineCallbacks
def test_close_aborts_a_tls_receiver_that_never_answers_close_notify(certs, logged, wire):
    """Issue 10: a finite output over TLS to a JDK/Netty receiver never exited."""
    from twisted.internet import reactor

    factory = ReceiverFactory(wire, deaf=True)
    port = listen(reactor, factory, certs, tls=True)
    host = Host("127.0.0.1", port.getHost().port)
    ended: list = []
    transmitter = transmitter_for(reactor, wire, certs, True, ended, close_grace=GRACE)
    try:
        yield transmitter.transmit(host, transmitter.encode(EVENTS)).addTimeout(TIMEOUT, reactor)
        started = reactor.seconds()
        yield transmitter.close().addTimeout(TIMEOUT, reactor)
        assert reactor.seconds() - started >= GRACE  # it tried a clean close first
        [receiver] = factory.connections
        receiver.transport.resumeProducing()
        yield receiver.gone.addTimeout(TIMEOUT, reactor)
        [reason] = ended
        assert type(reason) is not error.ConnectionDone  # the TLS layer reports it as lost
        assert any("did not close within 0.5 s" in line for line in logged), logged
    finally:
        yield port.stopListening()
