"""Send a written message now, not on the reactor's next turn.

Twisted's TCP transport only buffers a ``write`` and sends it when the reactor next finds the
socket writable, after every other event of the current turn was handled. With Twisted at both
ends of a connection that costs more than a turn: an input that read four requests in one turn
sends none of the four answers before it decoded all four, and a sender that got four answers
sends none of the next four requests before it encoded all four, so the two processes take
turns instead of working at the same time. Measured with 4 requests in flight, our output into
our input did 170,000-180,000 events/s with both processes idle a quarter of the time; sending
each message at once (as asyncio's transports do) took it to 255,000-262,000, the input at its
core's limit.

`send_now` asks a plain TCP transport to send what it holds at once (``doWrite``, what the
reactor would call on the next turn). Over TLS (Twisted's memory-BIO TLS on a TCP connection) it
first has the TLS layer encrypt what it buffered for the next turn (``BufferingTLSTransport``
gathers small writes and flushes them by a ``callLater(0)``: a reactor turn, and a timer, per
answer), then sends the records the same way. `write_now` writes and sends in one go: on plain TCP
one ``send`` from the socket when nothing waits before it (as asyncio's transports do), so that
the reactor is not asked to watch the socket for writing and then to stop (two ``epoll_ctl``
and their Python per answer); over TLS it hands the bytes to the TLS layer directly, so that no
flush is scheduled at all. Anything else
(test transports, a transport that is closing) is left to send as it always does.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import ITransport
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol

try:  # where Twisted gathers small TLS writes until the next turn (private; absent: nothing to do)
    from twisted.protocols.tls import _AggregateSmallWrites
except ImportError:  # pragma: no cover - an older or newer Twisted
    _AggregateSmallWrites = None

__all__ = ["at_socket", "send_now", "shut_write_now", "write_now"]

_tls_write = TLSMemoryBIOProtocol.write  # the TLS layer's own write, not the gathering one
_pass_write = ProtocolWrapper.write
_queue = FileDescriptor.write  # the connection's buffer, below any TLS (``startTLS`` too)
_TLS_RECORD = 2**14  # what the TLS layer hands OpenSSL at a time
_BIO_READ = 2**15


def _route(transport: ITransport) -> tuple[TLSMemoryBIOProtocol | None, tcp.Connection] | None:
    """Where writes to ``transport`` go: (the TLS layer, or None; the TCP connection), when
    that is a TCP connection open for writing, reached through wrappers that only pass writes
    on (the handshake deadline's) and at most one TLS layer (``TLSMemoryBIOFactory``, or
    ``startTLS``); else None."""
    layer = None
    while True:
        if isinstance(transport, tcp.Connection):
            if transport.TLS:  # startTLS: the TLS layer is the connection's protocol
                if layer is not None:
                    return None
                layer = transport.protocol
                if not isinstance(layer, TLSMemoryBIOProtocol):
                    return None
            break
        if isinstance(transport, TLSMemoryBIOProtocol):
            if layer is not None:
                return None
            layer = transport
        elif not isinstance(transport, ProtocolWrapper) or type(transport).write is not _pass_write:
            return None
        transport = transport.transport
    if (
        not transport.connected
        or transport.disconnecting
        or getattr(transport, "_writeDisconnecting", False)
        or (layer is not None and (layer.disconnecting or layer._lostTLSConnection))
    ):
        return None
    return layer, transport


def at_socket(transport: ITransport) -> bool:
    """Whether :func:`write_now` hands writes to ``transport`` to a socket (TCP, with or without
    TLS, open for writing) rather than to the transport's own ``write``."""
    return _route(transport) is not None


def _flush_gathered(layer: TLSMemoryBIOProtocol) -> None:
    """Encrypt now what the TLS layer gathered for the next turn, and drop that turn's flush."""
    gathered = layer.__dict__.get("_aggregator")
    if _AggregateSmallWrites is None or not isinstance(gathered, _AggregateSmallWrites):
        return
    scheduled = gathered._scheduled
    if scheduled is not None:
        gathered._scheduled = None
        if scheduled.active():
            scheduled.cancel()
    gathered.flush()


def send_now(transport: ITransport) -> None:
    """Hand what was just written to ``transport`` to the kernel now, if it is TCP (with or
    without TLS).

    What the socket does not take at once stays buffered, and the reactor sends it as usual;
    so does an error, which the reactor then reports as the connection lost.
    """
    route = _route(transport)
    if route is None:
        return
    layer, connection = route
    if layer is not None:
        _flush_gathered(layer)
    connection.doWrite()


def write_now(transport: ITransport, data: bytes | Sequence[bytes]) -> None:
    """``transport.write(data)`` (``writeSequence`` for a sequence of chunks: one message, such as
    a request's head and body), handed to the kernel now as :func:`send_now` does: on plain TCP
    one ``send`` (``sendmsg`` for chunks, with no copy into one buffer); over TLS, encrypted at
    once rather than gathered for the next turn. The one place both sides send a message."""
    chunked = not isinstance(data, (bytes, bytearray))
    route = _route(transport)
    if route is None:
        if chunked:
            transport.writeSequence(data)
        else:
            transport.write(data)
        return
    layer, connection = route
    if layer is None:
        _send_plain(connection, data if chunked else (data,))
        return
    if chunked:
        data = b"".join(data)
    _flush_gathered(layer)  # what was gathered before goes first
    records = _encrypt(layer, data)
    if records is None:
        _tls_write(layer, data)  # the TLS layer's own way (it waits for a read, or failed)
        connection.doWrite()
    elif records:
        _send_plain(connection, (records,))


def _encrypt(layer: TLSMemoryBIOProtocol, data: bytes) -> bytes | None:
    """``data`` as the TLS records to send, or None when the TLS layer must write it itself
    (a long write, writes held until it reads, any error: nothing was taken then)."""
    if len(data) > _TLS_RECORD or layer._appSendBuffer:
        return None
    connection = layer._tlsConnection
    try:
        if connection.send(data) != len(data):
            return None  # pragma: no cover - a memory BIO takes a whole record
    except Exception:
        return None
    records = []
    while True:
        try:
            records.append(connection.bio_read(_BIO_READ))
        except Exception:  # WantReadError: the send BIO is empty
            return b"".join(records)


def _send_plain(connection: tcp.Connection, chunks: Sequence[bytes]) -> None:
    """Send ``chunks`` from the socket of a plain TCP connection at once when nothing waits
    before them (the usual message: one ``send``/``sendmsg``, and the reactor never watches the
    socket for writing); what the socket does not take is queued for the reactor as ``write``
    queues it."""
    if connection._tempDataBuffer or len(connection.dataBuffer) > connection.offset:
        for chunk in chunks:
            _queue(connection, chunk)  # behind what waits already
        connection.doWrite()
        return
    try:
        sock = connection.socket
        sent = sock.send(chunks[0]) if len(chunks) == 1 else sock.sendmsg(chunks)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        sent = 0  # queued: the reactor's own send meets the error and reports the connection lost
    for chunk in chunks:
        if sent >= len(chunk):
            sent -= len(chunk)
            continue
        _queue(connection, chunk[sent:] if sent else chunk)
        sent = 0


def shut_write_now(connection: ITransport) -> bool:
    """Send what a TCP connection holds, then end its write side (a FIN); False, with nothing
    ended, when it is not a TCP connection or the socket does not take everything at once.

    Twisted's own ``loseWriteConnection`` marks the connection as closed for writing, after
    which its ``loseConnection`` ends the whole connection at once, inside the caller. Under
    Twisted's TLS layer that caller is the layer's own handling of the peer's ``close_notify``,
    which goes on using the TLS state the connection's end just freed ("'NoneType' object has
    no attribute 'bio_read'", logged as an unhandled error for each connection closed). Shut
    down here, at the socket, the connection keeps Twisted's ordinary close for later: the
    next turn's, when both sides are done."""
    if not isinstance(connection, tcp.Connection):
        return False
    if _waiting(connection):
        connection.doWrite()
        if _waiting(connection):
            return False
    try:
        connection.socket.shutdown(socket.SHUT_WR)
    except OSError:
        return False  # gone already: the reactor reports it
    return True


def _waiting(connection: tcp.Connection) -> bool:
    return bool(connection._tempDataBuffer) or len(connection.dataBuffer) > connection.offset
