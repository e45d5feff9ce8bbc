"""The native input: a thin Twisted ``Protocol`` over the sans-IO request parser.

What a real Logstash ``logstash`` output expects of its downstream (docs/wire-native.md): any path,
``POST`` (or ``PUT``), a gzip/deflate/snappy or plain ndjson body, ``200 ok`` once the events were
handed on, ``401``/``413``/``429``/``500`` otherwise. The body is inflated piece by piece as it
arrives, against the size limit, so that neither a large body nor a zip bomb is ever held whole
beyond ``max_content_length``.

One request per connection is in progress at a time. While its events wait for the sink, the
transport is paused, so a fast or pipelining sender cannot pile requests up in memory; answers
therefore leave in request order. Timeouts are deadlines checked by one sweep per factory on the
injected reactor, so that a request costs no timer objects.
"""

from __future__ import annotations

import base64
import hmac

from twisted.internet import defer, protocol, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_logstash.codecs import ndjson
from twisted_logstash.codecs.compression import Decompressor, normalize
from twisted_logstash.codecs.events import Decorations, prepare, timestamp_now
from twisted_logstash.errors import (
    CodecError,
    ConfigurationError,
    SinkUnavailable,
    TooLargeError,
)
from twisted_logstash.security.tls import describe_peer
from twisted_logstash.transport.eager import send_now
from twisted_logstash.wires.native.http import CONTINUE as _CONTINUE
from twisted_logstash.wires.native.http import (
    END,
    MAX_HEAD,
    NEED_DATA,
    RequestError,
    RequestParser,
    error_response,
)
from twisted_logstash.wires.native.http import OK as _OK
from twisted_logstash.wires.native.http import OK_CLOSE as _OK_CLOSE
from twisted_logstash.wires.native.http import OK_KEEP_ALIVE as _OK_KEEP_ALIVE

__all__ = ["HttpInputFactory", "HttpInputProtocol"]

log = Logger()

DEFAULT_MAX_CONTENT_LENGTH = 104857600
LINGER = 5.0
"""Seconds a closing connection keeps reading (and dropping) what the client still sends, so that
the client reads our answer instead of a reset."""

_METHODS = frozenset({b"POST", b"PUT"})
_ENCODINGS = {
    b"": "identity",
    b"identity": "identity",
    b"none": "identity",
    b"gzip": "gzip",
    b"x-gzip": "gzip",
    b"deflate": "deflate",
    b"snappy": "snappy",
}

TLS_ON_PLAIN_PORT = (
    "TLS handshake received on a plain HTTP port (is ssl_enabled false on this input?)"
)
"""The ``400`` answer to a TLS client, so that it fails at once rather than at the header
timeout. The client reads no HTTP (it expects TLS): its handshake fails on these bytes."""

# connection phases, each with its own deadline
_IDLE, _HEAD, _BODY, _WAITING, _LINGER = "idle", "head", "body", "waiting", "linger"


class HttpInputProtocol(protocol.Protocol):
    """One connection of the native input."""

    def __init__(self, factory: HttpInputFactory) -> None:
        self.factory = factory
        self._parser = RequestParser(factory.max_head_size, factory.max_content_length)
        self._head = None
        self._reject: tuple[int, str] | None = None  # answer for a request whose body is dropped
        self._decoder: Decompressor | None = None
        self._parts: list[bytes] = []
        self._waiting = False  # events handed to the sink, answer not written yet
        self._paused = False
        self._sync = False  # inside sink.deliver's callbacks being attached
        self._closing = False  # no further request will be read
        self._lost = False
        self._start: bytes | None = b""  # the connection's first bytes, until TLS is ruled out
        self.phase = _IDLE
        self.deadline: float | None = None

    # -- Twisted ----------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.factory._connected(self)
        self._set_phase(_IDLE)

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return  # lingering: what the client still sends is dropped
        if self.phase is _IDLE:
            self._set_phase(_HEAD)
        if self._start is not None and self._tls_client(data):
            return
        self._parser.feed(data)
        if not self._waiting:
            self._process()

    def _tls_client(self, data: bytes) -> bool:
        """Whether the connection opened with a TLS handshake (then answered ``400`` here)."""
        start = self._start + data[: 3 - len(self._start)]
        hello = _tls_handshake(start)
        if hello is None:
            self._start = start  # too few bytes to tell (the parser holds them meanwhile)
            return False
        self._start = None
        if hello:
            log.warn(
                "{peer} sent a TLS handshake to this plain HTTP port (is ssl_enabled false on this"
                " input but not on the output?); answered 400 and closing",
                peer=self._peer(),
            )
            self._waiting = False
            self.transport.write(error_response(400, TLS_ON_PLAIN_PORT, True))
            self._linger()
        return hello

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._lost = True
        self._closing = True
        self.deadline = None
        self._decoder = None
        self._parts = []
        self.factory._disconnected(self)

    # -- the request cycle ------------------------------------------------------------------------

    def _process(self) -> None:
        """Pull parser events until it needs bytes, or a request waits for the sink."""
        parser = self._parser
        while not self._waiting and not self._closing:
            try:
                event = parser.next_event()
            except RequestError as error:
                self._refuse(error.status, error.reason)
                return
            if type(event) is bytes:
                self._body(event)
            elif event is NEED_DATA:
                return
            elif event is END:
                self._end()
            else:
                self._begin(event)

    def _begin(self, head) -> None:
        self._head = head
        self._set_phase(_BODY)
        factory = self.factory
        if factory.draining:
            self._refuse(503, "the input is shutting down")
            return
        if head.method not in _METHODS:
            status, text = 405, "only POST and PUT are accepted"
            if head.method == b"HEAD":  # its answer has no body: close rather than confuse
                self._refuse(status, text)
                return
        elif factory._auth is not None and not factory._authorized(head.get(b"authorization")):
            status, text = 401, "missing or wrong credentials"
        elif factory._pending >= factory.max_pending_requests:
            status, text = 429, "too many requests waiting; retry later"
        else:
            encoding = _encoding(head.get(b"content-encoding"))
            if encoding is None:
                status, text = 415, "unsupported Content-Encoding"
            else:
                if encoding != "identity":
                    self._decoder = Decompressor(encoding, factory.max_content_length)
                if head.expect_continue and (head.chunked or head.content_length):
                    self.transport.write(_CONTINUE)
                    send_now(self.transport)  # the client waits for it to send the body
                return
        if head.expect_continue:
            self._refuse(status, text)  # the client waits: answer, and do not read its body
        else:
            self._reject = (status, text)  # read and drop the body, answer, keep the connection

    def _body(self, data: bytes) -> None:
        if self._reject is not None:
            return
        decoder = self._decoder
        if decoder is None:
            self._parts.append(data)
            return
        try:
            data = decoder.feed(data)
        except Exception as error:
            self._decoding_failed(error)
            return
        if data:
            self._parts.append(data)

    def _end(self) -> None:
        reject = self._reject
        if reject is None and self._decoder is not None:
            try:
                tail = self._decoder.finish()
            except Exception as error:
                self._decoding_failed(error)
                reject = self._reject
            else:
                if tail:
                    self._parts.append(tail)
        self._decoder = None
        if reject is not None:
            self._reject = None
            self._parts = []
            self._answer_error(*reject)
            return
        parts = self._parts
        self._parts = []
        if not parts:
            self._answer()
            return
        events = ndjson.decode(parts[0] if len(parts) == 1 else b"".join(parts))
        if not events:
            self._answer()
            return
        factory = self.factory
        prepare(events, timestamp_now(factory.reactor), factory.decorations)
        self._deliver(events)

    def _deliver(self, events: list[dict]) -> None:
        factory = self.factory
        factory._pending += 1
        self._waiting = True
        self.phase = _WAITING
        self.deadline = None
        try:
            d = factory.sink.deliver(events)
        except Exception:
            d = defer.fail()
        self._sync = True
        d.addCallbacks(self._delivered, self._undelivered)
        self._sync = False
        if self._waiting and not self._lost:
            self.transport.pauseProducing()
            self._paused = True

    def _delivered(self, _result) -> None:
        self.factory._request_done()
        if not self._lost:
            self._answer()

    def _undelivered(self, failure: Failure) -> None:
        self.factory._request_done()
        if failure.check(SinkUnavailable):
            log.info(
                "the sink cannot take a batch now ({why}); answering 503",
                why=str(failure.value),
            )
            if not self._lost:
                self._answer_error(503, "the events cannot be taken now; retry later")
            return
        log.failure("the sink failed to take a batch; answering 500", failure)
        if not self._lost:
            self._answer_error(500, "the events could not be handed on; retry")

    # -- answers ----------------------------------------------------------------------------------

    def _answer(self) -> None:
        """Write ``200 ok`` and go on with the next request (or close)."""
        head = self._head
        close = not head.keep_alive or self.factory.draining
        if close:
            data = _OK_CLOSE
        elif head.version == b"HTTP/1.0":
            data = _OK_KEEP_ALIVE
        else:
            data = _OK
        self._written(data, close)

    def _answer_error(self, status: int, text: str) -> None:
        """An error answer after a complete request: the connection stays usable."""
        head = self._head
        close = not head.keep_alive or self.factory.draining
        emit = log.debug if status == 429 else log.info
        emit(
            "answered {status} to {method} {target} from {peer}: {text}",
            status=status,
            method=head.method,
            target=head.target,
            peer=self._peer(),
            text=text,
        )
        self._written(error_response(status, text, close, head.version == b"HTTP/1.0"), close)

    def _written(self, data: bytes, close: bool) -> None:
        self._waiting = False
        self._head = None
        self.transport.write(data)
        send_now(self.transport)  # not after every other event of this reactor turn
        if close:
            self._linger()
            return
        self._set_phase(_HEAD if self._parser.buffered else _IDLE)
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        if not self._sync:
            self._process()

    def _refuse(self, status: int, text: str) -> None:
        """Answer and close: the rest of the stream is not going to be read."""
        head = self._head
        log.info(
            "answered {status} and closing the connection from {peer}: {text}",
            status=status,
            peer=self._peer(),
            text=text,
            method=None if head is None else head.method,
        )
        self._waiting = False
        self.transport.write(error_response(status, text, True))
        self._linger()

    def _decoding_failed(self, error: Exception) -> None:
        self._decoder = None
        self._parts = []
        if isinstance(error, TooLargeError):
            self._reject = (413, f"body inflates to more than {self.factory.max_content_length}")
        elif isinstance(error, CodecError):
            self._reject = (400, f"body does not decompress: {error}")
        else:
            log.failure("decompressor failed", Failure(error))
            self._reject = (400, "body does not decompress")

    # -- closing and timeouts ---------------------------------------------------------------------

    def _linger(self) -> None:
        """Close after the answer, reading and dropping input meanwhile (half-close if we can)."""
        self._closing = True
        self._set_phase(_LINGER)
        self._decoder = None
        self._parts = []
        transport = self.transport
        if self._paused:
            self._paused = False
            transport.resumeProducing()
        lose_write = getattr(transport, "loseWriteConnection", None)
        if lose_write is not None:
            lose_write()
        else:
            transport.loseConnection()

    def _drain(self) -> None:
        """The input is stopping: close now if no request is under way."""
        if not self._waiting and not self._closing and not self._parser.in_message:
            self._closing = True
            self.deadline = None
            self.transport.loseConnection()

    def _timed_out(self) -> None:
        phase = self.phase
        self.deadline = None
        if phase is _IDLE:
            log.debug("closing idle connection from {peer}", peer=self._peer())
            self._closing = True
            self.transport.loseConnection()
            return
        log.info(
            "dropping connection from {peer}: no complete request {phase} in time",
            peer=self._peer(),
            phase=phase,
        )
        self._closing = True
        self.transport.abortConnection()

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        timeout = self.factory._timeouts[phase]
        self.deadline = None if timeout is None else self.factory.reactor.seconds() + timeout

    def _peer(self) -> str:
        return describe_peer(self.transport)


def _tls_handshake(start: bytes) -> bool | None:
    """Whether a connection's first bytes are a TLS handshake record (``16 03 0x``, SSL 3.0 to
    TLS 1.3 all start so); None while too few bytes arrived to tell."""
    for index, allowed in enumerate((b"\x16", b"\x03", b"\x00\x01\x02\x03\x04")):
        if len(start) <= index:
            return None
        if start[index] not in allowed:
            return False
    return True


def _encoding(value: bytes | None) -> str | None:
    """The content coding named by a ``Content-Encoding`` value, or None if unsupported."""
    if value is None:
        return "identity"
    found = _ENCODINGS.get(value.lower())
    if found is not None:
        return found
    try:
        return normalize(value.decode("latin-1").strip())
    except (ConfigurationError, ValueError):
        return None


class _Refusal(protocol.Protocol):
    """What a connection over ``max_connections`` gets: ``503`` and a close."""

    def connectionMade(self) -> None:
        self.transport.write(error_response(503, "too many connections; retry later", True))
        self.transport.loseConnection()


class HttpInputFactory(protocol.Factory):
    """The native input: accepts Logstash ``logstash`` output requests, hands events to ``sink``.

    ``sink`` provides ``IEventSink``; a request is answered ``200`` only after the Deferred of
    ``sink.deliver`` fired, ``500`` if it failed. Timeouts are in seconds (None disables one):
    ``header_timeout`` from a request's first byte to the end of its head, ``body_timeout`` from
    there to the end of its body, ``idle_timeout`` for a connection between requests.
    """

    protocol = HttpInputProtocol
    noisy = False

    def __init__(
        self,
        sink,
        reactor=None,
        *,
        username: str | None = None,
        password: str | None = None,
        decorations: Decorations | None = None,
        max_pending_requests: int = 200,
        max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH,
        max_connections: int = 1000,
        header_timeout: float | None = 30.0,
        body_timeout: float | None = 60.0,
        idle_timeout: float | None = 60.0,
        max_head_size: int = MAX_HEAD,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        if (username is None) != (password is None):
            raise ConfigurationError("username and password must be given together")
        self.sink = sink
        self.reactor = reactor
        self.decorations = decorations
        self.max_pending_requests = max_pending_requests
        self.max_content_length = max_content_length
        self.max_connections = max_connections
        self.max_head_size = max_head_size
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout
        self._timeouts = {
            _IDLE: idle_timeout,
            _HEAD: header_timeout,
            _BODY: body_timeout,
            _WAITING: None,
            _LINGER: LINGER,
        }
        self._auth: bytes | None = None
        if username is not None:
            credentials = f"{username}:{password}".encode()
            self._auth = base64.b64encode(credentials)
        self._connections: set[HttpInputProtocol] = set()
        self._pending = 0
        self.draining = False
        self._drain_waiters: list[defer.Deferred] = []
        self._sweeper: task.LoopingCall | None = None
        timeouts = [t for t in self._timeouts.values() if t]
        self._sweep_interval = min(1.0, min(timeouts) / 4)

    @property
    def pending(self) -> int:
        """Requests whose events the sink holds and has not confirmed yet."""
        return self._pending

    @property
    def connections(self) -> int:
        return len(self._connections)

    def buildProtocol(self, addr):
        if len(self._connections) >= self.max_connections:
            log.warn(
                "refusing a connection from {addr}: {count} connections already open",
                addr=addr,
                count=len(self._connections),
            )
            return _Refusal()
        return self.protocol(self)

    def drain(self) -> defer.Deferred:
        """Stop taking requests and fire once every connection closed and the sink confirmed
        every batch it holds.

        Idle connections close at once; a request under way is answered with
        ``Connection: close``; a new request gets ``503``, which a Logstash output retries
        elsewhere.
        """
        self.draining = True
        for connection in list(self._connections):
            connection._drain()
        if self._drained():
            return defer.succeed(None)
        d = defer.Deferred(lambda d: self._drain_waiters.remove(d))
        self._drain_waiters.append(d)
        return d

    def abort(self) -> None:
        """Drop every connection at once (after a drain took too long)."""
        for connection in list(self._connections):
            connection.transport.abortConnection()

    # -- bookkeeping for the protocols ------------------------------------------------------------

    def _authorized(self, value: bytes | None) -> bool:
        if value is None:
            return False
        scheme, _, token = value.partition(b" ")
        good = hmac.compare_digest(token.strip(b" "), self._auth)
        return good and scheme.lower() == b"basic"

    def _connected(self, connection: HttpInputProtocol) -> None:
        self._connections.add(connection)
        if self._sweeper is None:
            self._sweeper = task.LoopingCall(self._sweep)
            self._sweeper.clock = self.reactor
            self._sweeper.start(self._sweep_interval, now=False)

    def _disconnected(self, connection: HttpInputProtocol) -> None:
        self._connections.discard(connection)
        if not self._connections and self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        self._check_drained()

    def _request_done(self) -> None:
        self._pending -= 1
        if self.draining:
            self._check_drained()

    def _drained(self) -> bool:
        return not self._connections and self._pending == 0

    def _check_drained(self) -> None:
        if self.draining and self._drained():
            waiters, self._drain_waiters = self._drain_waiters, []
            for d in waiters:
                d.callback(None)

    def _sweep(self) -> None:
        now = self.reactor.seconds()
        for connection in list(self._connections):
            deadline = connection.deadline
            if deadline is not None and now >= deadline:
                connection._timed_out()
