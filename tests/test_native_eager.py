"""send_now: a plain TCP transport hands a write to the kernel at once; others are left alone.

Real sockets on 127.0.0.1: the peer is a plain non-blocking socket read without letting the
reactor run, so what it can read was sent before the reactor's next turn.
"""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport

from twisted_logstash.transport.eager import send_now, write_now


class _Held(Protocol):
    def connectionMade(self) -> None:
        self.factory.made.callback(self)


def _pending_bytes(peer: socket.socket) -> bytes:
    """What the peer can read right now, without waiting (b"" if nothing arrived)."""
    try:
        return peer.recv(65536)
    except BlockingIOError:
        return b""


@defer.inlineCallbacks
def _connected_pair():
    """(our server-side Protocol on a real TCP transport, the peer's plain socket, the port)."""
    from twisted.internet import reactor

    factory = Factory.forProtocol(_Held)
    factory.made = defer.Deferred()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    peer = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
    peer.setblocking(False)
    held = yield factory.made
    return held, peer, port


@defer.inlineCallbacks
def _close(held, peer, port):
    peer.close()
    held.transport.abortConnection()
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_plain_tcp_write_is_buffered_until_the_next_turn():
    """What send_now is for: without it the bytes wait for the reactor."""
    held, peer, port = yield _connected_pair()
    try:
        held.transport.write(b"answer")
        assert _pending_bytes(peer) == b""
    finally:
        yield _close(held, peer, port)


@pytest_twisted.inlineCallbacks
def test_send_now_sends_a_plain_tcp_write_before_the_next_turn():
    held, peer, port = yield _connected_pair()
    try:
        held.transport.write(b"HTTP/1.1 200 OK\r\n")
        held.transport.writeSequence([b"Content-Length: 2\r\n", b"\r\nok"])
        send_now(held.transport)
        assert _pending_bytes(peer) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        # the transport holds nothing more: a later write goes out as usual
        held.transport.write(b"more")
        send_now(held.transport)
        assert _pending_bytes(peer) == b"more"
    finally:
        yield _close(held, peer, port)


@pytest_twisted.inlineCallbacks
def test_send_now_leaves_a_closing_transport_to_the_reactor():
    """After loseConnection the reactor sends what is left and then closes: not ours to do."""
    held, peer, port = yield _connected_pair()
    lost = defer.Deferred()
    held.connectionLost = lambda reason: lost.callback(None)
    try:
        held.transport.write(b"last")
        held.transport.loseConnection()
        send_now(held.transport)
        assert _pending_bytes(peer) == b""
        yield lost
        peer.setblocking(True)
        assert peer.recv(100) == b"last"
        assert peer.recv(100) == b""  # then closed
    finally:
        peer.close()
        yield port.stopListening()


def test_send_now_leaves_other_transports_alone():
    transport = StringTransport()
    transport.write(b"ok")
    send_now(transport)
    assert transport.value() == b"ok"


# -- TLS: Twisted gathers small writes for a flush on the next turn; write_now/send_now do not wait


class _Pinged(Protocol):
    def connectionMade(self) -> None:
        self.received = defer.Deferred()
        self.factory.made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        if not self.received.called:
            self.received.callback(data)


@defer.inlineCallbacks
def _tls_pair(certs):
    """(our server-side Protocol under the input's TLS endpoint, the peer's TLS socket, the
    port), once the handshake is done both ways (the peer sent a byte the server read)."""
    import ssl

    from twisted.internet import reactor, threads
    from twisted.internet.endpoints import serverFromString

    from twisted_logstash.security.endpoints import server_endpoint_string

    settings = {
        "ssl_enabled": True,
        "ssl_certificate": str(certs / "server.crt"),
        "ssl_key": str(certs / "server.pkcs8.key"),
    }
    factory = Factory.forProtocol(_Pinged)
    factory.made = defer.Deferred()
    endpoint = serverFromString(reactor, server_endpoint_string(settings, "127.0.0.1", 0))
    port = yield endpoint.listen(factory)
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    raw = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
    peer = context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
    held = yield factory.made
    yield threads.deferToThread(peer.do_handshake)
    peer.sendall(b"x")
    yield held.received
    peer.setblocking(False)
    # two small writes in a row: Nagle would hold the second until the first is acknowledged
    held.transport.transport.transport.setTcpNoDelay(True)
    return held, peer, port


def _tls_pending(peer) -> bytes:
    """What the peer can read right now (every TLS record that arrived), without waiting."""
    import ssl

    got = b""
    while True:
        try:
            data = peer.recv(65536)
        except ssl.SSLWantReadError:
            return got
        if not data:
            return got
        got += data


@pytest_twisted.inlineCallbacks
def test_a_tls_write_waits_for_the_next_turn(certs):
    """What write_now is for over TLS: Twisted flushes a TLS write by a callLater(0)."""
    held, peer, port = yield _tls_pair(certs)
    try:
        held.transport.write(b"answer")
        assert _tls_pending(peer) == b""
    finally:
        peer.close()
        held.transport.abortConnection()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_write_now_and_send_now_send_a_tls_write_at_once(certs):
    from twisted.internet import reactor

    held, peer, port = yield _tls_pair(certs)
    try:
        write_now(held.transport, b"HTTP/1.1 200 OK\r\n")
        assert _tls_pending(peer) == b"HTTP/1.1 200 OK\r\n"
        held.transport.write(b"gathered ")  # gathered by Twisted for the next turn ...
        write_now(held.transport, b"then this")  # ... goes first
        assert _tls_pending(peer) == b"gathered then this"
        held.transport.write(b"sent by send_now")
        send_now(held.transport)
        assert _tls_pending(peer) == b"sent by send_now"
        assert not [
            call
            for call in reactor.getDelayedCalls()
            if call.active() and getattr(call.func, "__name__", "") == "_scheduledFlush"
        ]
    finally:
        peer.close()
        held.transport.abortConnection()
        yield port.stopListening()


def test_write_now_writes_to_other_transports():
    transport = StringTransport()
    write_now(transport, b"ok")
    assert transport.value() == b"ok"


@pytest_twisted.inlineCallbacks
def test_write_now_sends_a_plain_tcp_write_in_one_call():
    """One send, and the reactor is never asked to watch the socket for writing."""
    from twisted.internet import reactor

    held, peer, port = yield _connected_pair()
    try:
        write_now(held.transport, b"answer")
        assert _pending_bytes(peer) == b"answer"
        assert held.transport not in reactor.getWriters()
        held.transport.write(b"queued ")  # waits for the reactor ...
        write_now(held.transport, b"then this")  # ... and goes first
        assert _pending_bytes(peer) == b"queued then this"
    finally:
        yield _close(held, peer, port)


@pytest_twisted.inlineCallbacks
def test_write_now_queues_what_the_socket_does_not_take():
    """The rest goes out with the reactor, in order (read by a thread: the reactor must run)."""
    from twisted.internet import threads

    held, peer, port = yield _connected_pair()
    big = b"x" * (8 * 1024 * 1024)  # more than the socket buffers take at once

    def read_all() -> bytes:
        peer.setblocking(True)
        got = b""
        while not got.endswith(b"end"):
            data = peer.recv(1 << 20)
            if not data:
                break
            got += data
        return got

    try:
        write_now(held.transport, big)
        write_now(held.transport, b"end")
        got = yield threads.deferToThread(read_all)
        assert len(got) == len(big) + 3 and got.endswith(b"xend")
    finally:
        yield _close(held, peer, port)
