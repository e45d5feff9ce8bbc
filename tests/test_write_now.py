"""write_now: an attempt's bytes leave at once, straight from its chunks on plain TCP, in order
and whole even when the socket takes only part of them; anything else goes the usual way.

Real sockets on 127.0.0.1: the peer is a plain socket read without letting the reactor run
(for what was sent at once) or while it runs (for the rest).
"""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport

from twisted_logstash.transport.eager import write_now


@defer.inlineCallbacks
def _connected():
    """(a Twisted client Protocol on a real TCP transport, the accepted plain peer socket)."""
    from twisted.internet import reactor

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", listener.getsockname()[1])
        client = yield connectProtocol(endpoint, Protocol())
        peer, _ = listener.accept()
    finally:
        listener.close()
    peer.setblocking(False)
    return client, peer


def _read(peer: socket.socket) -> bytes:
    try:
        return peer.recv(1 << 20)
    except BlockingIOError:
        return b""


@pytest_twisted.inlineCallbacks
def test_small_chunks_leave_before_the_next_turn_and_nothing_stays_buffered():
    client, peer = yield _connected()
    try:
        write_now(client.transport, (b"POST / HTTP/1.1\r\n\r\n", b"body"))
        assert _read(peer) == b"POST / HTTP/1.1\r\n\r\nbody"
        assert not client.transport.dataBuffer and not client.transport._tempDataBuffer
        write_now(client.transport, (b"next",))
        assert _read(peer) == b"next"
    finally:
        peer.close()
        client.transport.abortConnection()


@pytest_twisted.inlineCallbacks
def test_what_the_socket_does_not_take_follows_in_order():
    from twisted.internet import reactor

    client, peer = yield _connected()
    chunks = [bytes([n]) * size for n, size in enumerate([3, 5_000_000, 7, 3_000_000, 1])]
    expected = b"".join(chunks)
    got = bytearray()
    client.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    try:
        write_now(client.transport, chunks)
        held = client.transport
        assert held.dataBuffer or held._tempDataBuffer  # the socket took only part of them
        write_now(client.transport, (b"after",))  # buffered behind the rest: the usual way
        for _ in range(2000):
            got += _read(peer)
            if len(got) >= len(expected) + 5:
                break
            yield task.deferLater(reactor, 0.005, lambda: None)
        assert bytes(got) == expected + b"after"
    finally:
        peer.close()
        client.transport.abortConnection()


def test_another_transport_gets_the_chunks_written():
    transport = StringTransport()
    write_now(transport, (b"head", b"body"))
    assert transport.value() == b"headbody"
