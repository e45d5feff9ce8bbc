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

Connections are pooled per host by the pool both wires share (`transport/pool.py`: at most
``max_connections_per_host``, a waiting line, a clean close with ``close_grace``), one window
in flight on each, and each transmit is one `transport/attempt.py` attempt (cancel aborts its
connection; a reused connection that closes before any byte came back is retried once). This
module is only the exchange. A failure (refused, connect timeout, connection lost, no ACK
within `ack_timeout`, the window not acknowledged within `timeout`, a protocol error) fails the
attempt with a `RetriableError` naming the cause and drops that connection. On a connection that
never answered a frame, the cause ends with what is probably wrong (`transport/diagnosis.py`:
``HTTP/1.1 400`` from a native port, a close from a TLS port, silence from an HTTP input).

Two timers. `ack_timeout` bounds the wait for each ACK and is restarted by every one, an `A 0`
keep-alive included, as in the Beats: a receiver still working on a window is not given up on
early, which would only make it receive the window twice. `timeout` bounds the whole attempt,
from its start (waiting for a connection included), whatever keep-alives arrive: unlike the
Beats, a receiver stuck forever behind keep-alives does not hold its windows forever; they fail
as retriable and the output moves them to another host (partial ACKs kept).
"""

from __future__ import annotations

import functools
import struct
from itertools import chain, repeat
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.codecs import compression, jsonpolicy
from twisted_logstash.codecs.bytebound import cut
from twisted_logstash.errors import RetriableError
from twisted_logstash.interfaces import IExchange, ITransmitter, IWire
from twisted_logstash.transport.attempt import Attempt, describe_failure
from twisted_logstash.transport.diagnosis import LUMBERJACK
from twisted_logstash.transport.eager import write_now
from twisted_logstash.transport.hosts import Host
from twisted_logstash.transport.pool import (
    DEFAULT_CLOSE_GRACE,
    DEFAULT_MAX_CONNECTIONS_PER_HOST,
    ConnectionPools,
)
from twisted_logstash.wires.lumberjack.decoder import FrameDecoder
from twisted_logstash.wires.lumberjack.frames import (
    CODE_ACK,
    CODE_COMPRESSED,
    CODE_JSON_DATA,
    DEFAULT_COMPRESSION_LEVEL,
    VERSION_2,
    AckFrame,
    LumberjackProtocolError,
    encode_compressed_frame,
    encode_json_documents,
    encode_window_size,
)

__all__ = [
    "DEFAULT_ACK_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "LumberjackPayload",
    "LumberjackTransmitter",
]

DEFAULT_ACK_TIMEOUT = 30.0  # the Beats' `timeout`
DEFAULT_TIMEOUT = 60.0  # the whole attempt, as the native wire's and `--timeout`

_J_HEADER = 10  # what a `J` frame adds to its JSON: version, code, seq and length

log = Logger(namespace="twisted_logstash.wires.lumberjack.client")

_J_HEAD = struct.Struct(">BBII").pack  # version, code, seq, length
_C_HEAD = struct.Struct(">BBI").pack  # version, code, length
_ACK = bytes((VERSION_2, CODE_ACK))


def json_frames(documents: list[bytes]) -> bytes:
    """The `J` frames of `documents`, numbered from 1: the bytes of
    `frames.encode_json_documents(documents, 1)`, with no Python code run per document (the
    headers are packed by `map`, interleaved by `zip`, joined once)."""
    heads = map(
        _J_HEAD,
        repeat(VERSION_2),
        repeat(CODE_JSON_DATA),
        range(1, len(documents) + 1),
        map(len, documents),
    )
    try:
        return b"".join(chain.from_iterable(zip(heads, documents, strict=True)))
    except struct.error:  # a document over 4 GiB: the frames module says so in its words
        return encode_json_documents(documents, 1)


@functools.cache
def _deflater(level: int):
    return compression.compressor("deflate", level)


def compressed_frame(inner: bytes, level: int) -> bytes:
    """The `C` frame holding `inner` as a zlib stream at `level`, compressed by the project's
    DEFLATE backend (`codecs.compression`: ISA-L for levels 1-3, about 2.5 times faster than
    zlib at the Beats' level 3; zlib above); the same frame `frames.encode_compressed_frame`
    writes, any zlib reader inflates it."""
    body = _deflater(level)(inner)
    try:
        return _C_HEAD(VERSION_2, CODE_COMPRESSED, len(body)) + body
    except struct.error:
        return encode_compressed_frame(inner, level)


class LumberjackPayload:
    """One batch, serialised once: the JSON of each event, and how far receivers have
    acknowledged it (`acked` events, from the start). `frames`, when given, are the `J` frames
    of every document numbered from 1, already built (by `encode_within`, which measured them):
    the first window uses them instead of building them again."""

    __slots__ = ("_frames", "_wire", "acked", "documents")

    def __init__(self, documents: list[bytes], frames: bytes | None = None):
        self.documents = documents
        self.acked = 0
        self._frames = frames
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
            rest = self.documents[self.acked :] if self.acked else self.documents
            frames, self._frames = self._frames, None
            if frames is None or self.acked:
                frames = json_frames(rest)
            if compression_level:
                frames = compressed_frame(frames, compression_level)
            self._wire = (*key, encode_window_size(len(rest)) + frames)
        return self._wire[2]


@implementer(IExchange)
class _WindowExchange:
    """Windows on one connection, one at a time: write it, read ACKs until the last seq."""

    __slots__ = ("_decoder", "_transmitter", "answered", "base", "count")

    def __init__(self, transmitter: LumberjackTransmitter):
        self._transmitter = transmitter
        self._decoder = FrameDecoder(max_window=0, max_frame=0, max_inflated=0)
        self.base = 0
        """How many events of the payload were acknowledged before this window."""
        self.count = 0
        """How many events this window holds."""
        self.answered = False
        """Whether a frame came back on this connection (then it speaks Lumberjack)."""

    def begin(self, transport: ITransport, attempt: Attempt) -> None:
        payload = attempt.payload
        self.base = payload.acked
        self.count = payload.remaining
        attempt.extend(self._transmitter.ack_timeout)  # from now on, the next ACK is due
        write_now(transport, (payload.window(self._transmitter.compression_level),))

    def receive(self, data: bytes, attempt: Attempt) -> None:
        done = False
        try:
            for frame in self._frames(data):
                if not isinstance(frame, AckFrame):
                    raise LumberjackProtocolError(f"unexpected {type(frame).__name__}")
                self.answered = True
                seq = frame.seq
                if done:
                    _check_idle_ack(seq)
                elif seq > self.count:
                    raise LumberjackProtocolError(f"ACK {seq} beyond the window of {self.count}")
                else:
                    payload = attempt.payload
                    payload.acked = max(payload.acked, self.base + seq)
                    if seq == self.count:
                        done = True
                    else:
                        attempt.extend(self._transmitter.ack_timeout)
        except LumberjackProtocolError as exc:
            reason = f"protocol error: {exc}"
            if not done:
                if not self.answered:
                    reason = attempt.diagnosed(reason, answer=data)
                attempt.drop(RetriableError(reason, attempt.host))
                return
            connection = attempt.connection
            connection.reusable = False
            self._succeed(attempt)
            connection.abort()
            return
        if done:
            self._succeed(attempt)

    def _succeed(self, attempt: Attempt) -> None:
        # No log line per window: the output counts what is acknowledged (OutputStats), and a
        # debug line here cost every window its event dict and observers, emitted or not.
        attempt.succeed()

    def lost(self, reason: Failure, attempt: Attempt) -> None:
        got = attempt.payload.acked - self.base
        cause = (
            f"connection lost after {got} of {self.count} events were acknowledged: "
            f"{describe_failure(reason)}"
        )
        if not self.answered:
            connection = attempt.connection
            closed = connection is not None and not connection.heard
            cause = attempt.diagnosed(cause, closed=closed, error=reason.value)
        attempt.fail(RetriableError(cause, attempt.host))

    def _frames(self, data: bytes):
        """The frames of ``data``: one whole ``2A`` ACK read alone (what a receiver sends)
        without the decoder, everything else through it."""
        if len(data) == 6 and data[:2] == _ACK and not self._decoder.pending:
            return (AckFrame(int.from_bytes(data[2:], "big")),)
        return self._decoder.feed(data)

    def idle(self, data: bytes) -> bool:
        try:
            for frame in self._frames(data):
                if not isinstance(frame, AckFrame):
                    raise LumberjackProtocolError(f"unexpected {type(frame).__name__}")
                _check_idle_ack(frame.seq)
        except LumberjackProtocolError:
            return False
        return True  # a late keep-alive


def _check_idle_ack(seq: int) -> None:
    if seq:
        raise LumberjackProtocolError(f"ACK {seq} with no window in flight")


@implementer(ITransmitter, IWire)
class LumberjackTransmitter:
    """Send windows of events to Lumberjack receivers (a Logstash `beats` input, our
    `LumberjackInputFactory`).

    `endpoint_factory(host)` gives the client endpoint for a `Host` (TCP or TLS, decided by
    the caller). `ack_timeout` bounds the wait for the next ACK (keep-alives included),
    `timeout` the whole attempt (keep-alives or not).
    """

    protocol = LUMBERJACK

    def __init__(
        self,
        reactor: IReactorTime,
        endpoint_factory,
        *,
        compression_level: int | None = DEFAULT_COMPRESSION_LEVEL,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections_per_host: int = DEFAULT_MAX_CONNECTIONS_PER_HOST,
        close_grace: float = DEFAULT_CLOSE_GRACE,
    ):
        if compression_level is not None and not 0 <= compression_level <= 9:
            raise ValueError(f"compression_level must be 0..9 or None, not {compression_level}")
        self.reactor = reactor
        self.endpoint_factory = endpoint_factory
        self.compression_level = compression_level or None
        self.ack_timeout = ack_timeout
        self.timeout = timeout
        #: JSON encoded so far, before compression: events, and their bytes (the output's
        #: metrics estimate its memory queue in bytes from their ratio)
        self.json_events = 0
        self.json_bytes = 0
        self._pools = ConnectionPools(
            reactor,
            endpoint_factory,
            self,
            max_connections_per_host=max_connections_per_host,
            close_grace=close_grace,
        )

    def encode(self, events: list[dict[str, Any]]) -> LumberjackPayload:
        """Serialise each event once, by the JSON policy (codecs/jsonpolicy.py: never fails;
        NaN/Infinity written as null logged once for the batch)."""
        return LumberjackPayload(jsonpolicy.dumps_each(events))

    def encode_within(
        self, events: list[dict[str, Any]], max_bytes: int
    ) -> list[tuple[int, LumberjackPayload]]:
        """As `encode`, cut into windows of at most `max_bytes` of JSON each (`cut`). The
        `J` frames the first window needs anyway are built here, and measured: the common case
        costs no more than `encode`."""
        documents = jsonpolicy.dumps_each(events)
        frames = json_frames(documents)
        size = len(frames) - _J_HEADER * len(documents)
        self.json_events += len(documents)
        self.json_bytes += size
        if size <= max_bytes:
            return [(len(documents), LumberjackPayload(documents, frames))]
        parts = []
        start = 0
        for count in cut(map(len, documents), max_bytes):
            parts.append((count, LumberjackPayload(documents[start : start + count])))
            start += count
        return parts

    def transmit(self, host: Host, payload: LumberjackPayload) -> defer.Deferred:
        """One attempt: fires once every event of `payload` was acknowledged."""
        if not payload.remaining and not self._pools.closed:
            return defer.succeed(None)
        pool = self._pools.pool(host)
        return Attempt(self.reactor, pool, self, host, payload, self.timeout).result

    def close(self) -> defer.Deferred:
        """Close every connection cleanly (busy ones once their window is done), aborting what
        has not closed after ``close_grace`` seconds (a window then still in flight fails as
        retriable); fires when done. Later transmits fail."""
        return self._pools.close()

    # -- IWire ------------------------------------------------------------------------------------

    def exchange(self, host: Host) -> _WindowExchange:
        return _WindowExchange(self)

    def timed_out(self, attempt: Attempt, exchange: _WindowExchange | None) -> str:
        if exchange is None:
            return "cannot connect: timed out"
        got = f"{attempt.payload.acked - exchange.base} of {exchange.count} events acknowledged"
        if attempt.overdue:
            reason = f"window not fully acknowledged within {self.timeout:g} s ({got})"
        else:
            reason = f"no ACK within {self.ack_timeout} s ({got})"
        connection = attempt.connection
        if not exchange.answered and connection is not None and not connection.heard:
            reason = attempt.diagnosed(reason, silent=True)
        return reason
