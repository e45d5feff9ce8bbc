"""The framed transmitter: one window per attempt, the way a Beat's `logstash` output sends.

`encode(events)` serialises every event once into a `LumberjackPayload`. `transmit(host,
payload)` writes `2W count` and the `J` frames, numbered 1..count as go-lumber numbers them,
inside one `2C` frame (zlib at `compression_level`) or plain when `compression_level` is
None, then waits for ACKs until one names the last seq.

Partial ACKs are kept: a payload remembers how many of its events receivers have
acknowledged (`payload.acked`), across attempts and hosts. When an attempt fails after a
partial ACK, the next attempt sends a new window of only the events after them, numbered
from 1 again, so that the receiver sees no event twice that it already acknowledged. A
payload is sent by one attempt at a time (the output never sends one batch twice at once).

Connections are pooled per host and reused across windows, one window in flight on each.
A failure (refused, connect timeout, connection lost, no ACK within `ack_timeout`, a
protocol error) fails the attempt with a `RetriableError` naming the cause and drops that
connection. An `A 0` keep-alive restarts the ACK timer, as it does in the Beats.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.errors import RetriableError
from twisted_logstash.interfaces import ITransmitter
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.lumberjack.decoder import FrameDecoder
from twisted_logstash.wires.lumberjack.frames import (
    DEFAULT_COMPRESSION_LEVEL,
    AckFrame,
    LumberjackProtocolError,
    encode_compressed_frame,
    encode_json_documents,
    encode_window_size,
    serialize_event,
)

__all__ = [
    "DEFAULT_ACK_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "LumberjackPayload",
    "LumberjackTransmitter",
]

DEFAULT_ACK_TIMEOUT = 30.0  # the Beats' `timeout`
DEFAULT_CONNECT_TIMEOUT = 30.0

log = Logger(namespace="twisted_logstash.wires.lumberjack.client")


class LumberjackPayload:
    """One batch, serialised once: the JSON of each event, and how far receivers have
    acknowledged it (`acked` events, from the start)."""

    __slots__ = ("_wire", "acked", "documents")

    def __init__(self, documents: list[bytes]):
        self.documents = documents
        self.acked = 0
        self._wire: tuple[int, int | None, bytes] | None = None

    @property
    def count(self) -> int:
        return len(self.documents)

    @property
    def remaining(self) -> int:
        return len(self.documents) - self.acked

    def window(self, compression_level: int | None) -> bytes:
        """The window of the events not acknowledged yet, numbered 1..remaining; built once
        per (acked, level), so that retries to other hosts reuse the bytes."""
        key = (self.acked, compression_level)
        if self._wire is None or self._wire[:2] != key:
            rest = self.documents[self.acked :]
            frames = encode_json_documents(rest, 1)
            if compression_level:
                frames = encode_compressed_frame(frames, compression_level)
            self._wire = (*key, encode_window_size(len(rest)) + frames)
        return self._wire[2]


class _Window:
    """One attempt in flight on one connection."""

    __slots__ = ("base", "count", "done", "payload", "timer")

    def __init__(self, payload: LumberjackPayload):
        self.payload = payload
        self.base = payload.acked
        self.count = payload.remaining
        self.done: defer.Deferred[None] = defer.Deferred()
        self.timer = None


class _ClientProtocol(protocol.Protocol):
    """One connection to one receiver: writes a window, reads ACKs."""

    def __init__(self, transmitter: LumberjackTransmitter, host: Host):
        self.transmitter = transmitter
        self.reactor = transmitter.reactor
        self.host = host
        self.decoder = FrameDecoder(max_window=0, max_frame=0, max_inflated=0)
        self.window: _Window | None = None
        self.connected = False
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.connected = True

    def send(self, payload: LumberjackPayload, compression_level: int | None) -> defer.Deferred:
        window = self.window = _Window(payload)
        self._arm_timer()
        self.transport.write(payload.window(compression_level))
        return window.done

    def dataReceived(self, data: bytes) -> None:
        try:
            for frame in self.decoder.feed(data):
                if not isinstance(frame, AckFrame):
                    raise LumberjackProtocolError(f"unexpected {type(frame).__name__}")
                self._ack(frame.seq)
        except LumberjackProtocolError as exc:
            self._finish(RetriableError(f"{self.host}: protocol error: {exc}", self.host))
            self.abort()

    def _ack(self, seq: int) -> None:
        window = self.window
        if window is None:
            if seq:
                raise LumberjackProtocolError(f"ACK {seq} with no window in flight")
            return
        if seq > window.count:
            raise LumberjackProtocolError(f"ACK {seq} beyond the window of {window.count}")
        window.payload.acked = max(window.payload.acked, window.base + seq)
        if seq == window.count:
            self._finish(None)
        else:
            self._arm_timer()

    def _arm_timer(self) -> None:
        window = self.window
        if window.timer is not None and window.timer.active():
            window.timer.reset(self.transmitter.ack_timeout)
        else:
            window.timer = self.reactor.callLater(self.transmitter.ack_timeout, self._timed_out)

    def _timed_out(self) -> None:
        window = self.window
        if window is None:
            return
        window.timer = None
        got = window.payload.acked - window.base
        self._finish(
            RetriableError(
                f"{self.host}: no ACK within {self.transmitter.ack_timeout} s "
                f"({got} of {window.count} events acknowledged)",
                self.host,
            )
        )
        self.abort()

    def _finish(self, failure: Exception | None) -> None:
        window, self.window = self.window, None
        if window is None:
            return
        if window.timer is not None and window.timer.active():
            window.timer.cancel()
        if failure is None:
            window.done.callback(None)
        else:
            window.done.errback(failure)

    def abort(self) -> None:
        if self.connected:
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.connected = False
        if self.window is not None:
            got = self.window.payload.acked - self.window.base
            self._finish(
                RetriableError(
                    f"{self.host}: connection lost after {got} of {self.window.count} events "
                    f"were acknowledged: {_describe(reason)}",
                    self.host,
                )
            )
        self.transmitter._forget(self)
        self.lost.callback(None)


@implementer(ITransmitter)
class LumberjackTransmitter:
    """Send windows of events to Lumberjack receivers (a Logstash `beats` input, our
    `LumberjackInputFactory`).

    `endpoint_factory(host)` gives the client endpoint for a `Host` (TCP or TLS, decided by
    the caller). `ack_timeout` bounds the wait for the next ACK (keep-alives included),
    `timeout` the wait for a connection.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        endpoint_factory,
        *,
        compression_level: int | None = DEFAULT_COMPRESSION_LEVEL,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ):
        if compression_level is not None and not 0 <= compression_level <= 9:
            raise ValueError(f"compression_level must be 0..9 or None, not {compression_level}")
        self.reactor = reactor
        self.endpoint_factory = endpoint_factory
        self.compression_level = compression_level or None
        self.ack_timeout = ack_timeout
        self.timeout = timeout
        self._idle: dict[Host, list[_ClientProtocol]] = {}
        self._connections: set[_ClientProtocol] = set()
        self._connecting: set[defer.Deferred] = set()
        self._closed = False

    def encode(self, events: list[dict[str, Any]]) -> LumberjackPayload:
        """Serialise each event once (CodecError for one JSON cannot hold)."""
        return LumberjackPayload([serialize_event(event) for event in events])

    @defer.inlineCallbacks
    def transmit(self, host: Host, payload: LumberjackPayload):
        """One attempt: fires once every event of `payload` was acknowledged."""
        if self._closed:
            raise RetriableError("the transmitter is closed", host)
        if not payload.remaining:
            return None
        connection = yield self._take(host)
        before = payload.acked
        try:
            yield connection.send(payload, self.compression_level)
        except RetriableError:
            connection.abort()
            raise
        log.debug(
            "{host}: {count} events acknowledged", host=str(host), count=payload.acked - before
        )
        if connection.connected and not self._closed:
            self._idle.setdefault(host, []).append(connection)
        else:
            connection.abort()
        return None

    def _take(self, host: Host) -> defer.Deferred:
        """An idle pooled connection to `host`, or a new one."""
        idle = self._idle.get(host)
        while idle:
            connection = idle.pop()
            if connection.connected:
                return defer.succeed(connection)
        d = connectProtocol(self.endpoint_factory(host), _ClientProtocol(self, host))
        d.addTimeout(self.timeout, self.reactor)
        self._connecting.add(d)

        def connected(connection: _ClientProtocol) -> _ClientProtocol:
            self._connecting.discard(d)
            self._connections.add(connection)
            return connection

        def failed(failure: Failure):
            self._connecting.discard(d)
            raise RetriableError(f"{host}: cannot connect: {_describe(failure)}", host)

        return d.addCallbacks(connected, failed)

    def _forget(self, connection: _ClientProtocol) -> None:
        self._connections.discard(connection)
        idle = self._idle.get(connection.host)
        if idle and connection in idle:
            idle.remove(connection)

    def close(self) -> defer.Deferred:
        """Drop every connection (a window in flight fails as retriable); fires when all
        are closed."""
        self._closed = True
        for d in list(self._connecting):
            d.cancel()
        self._idle.clear()
        connections = list(self._connections)
        for connection in connections:
            connection.abort()
        return defer.DeferredList([c.lost for c in connections]).addCallback(lambda _: None)


def _describe(failure: Failure) -> str:
    """One line saying why: refused, timed out, closed by the peer, or the TLS reason."""
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return "timed out"
    from twisted_logstash.security.failures import describe_tls_failure

    return describe_tls_failure(failure, client=True)
