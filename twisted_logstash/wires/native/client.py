"""The native transmitter: one compressed ndjson batch, one HTTP/1.1 POST, one verdict.

A lean client instead of twisted.web's `Agent`: per request it writes prebuilt header bytes plus
the body with one ``writeSequence`` and feeds the answer to the sans-IO `ResponseParser`; nothing
else runs per request but the verdict. The request bytes (built in `wires/native/request.py`, which
says why each header is there or not) are, for a batch of N compressed bytes, every line ending
in CRLF::

    POST / HTTP/1.1
    Host: <host>:<port>                          ([v6]:port for IPv6)
    Content-Type: application/x-ndjson
    Content-Encoding: gzip                       (deflate, snappy; absent for none/identity)
    Authorization: Basic <base64(user:pass)>     (only with a username)
    Content-Length: N

    <N bytes: the compressed ndjson>

Connections (``endpoint_factory(host)`` gives the endpoint, so plain TCP or TLS is the caller's
choice) are kept per host and reused:
- A connection carries one request at a time; several requests in flight to one host use several
  connections, at most ``max_connections_per_host`` (idle, busy and connecting together). A
  request beyond that waits, first come first served, for a connection to come back or a slot to
  free; the wait counts against its timeout.
- A connection goes back to the pool only after a complete response that allows keep-alive and
  nothing after it; otherwise it is closed.
- The idle-close race: a server may close an idle connection just as a request is written to it.
  When a *reused* connection closes before any byte of the response arrived, the request is
  retried once on a fresh connection, within the same attempt and timeout. A fresh connection that
  does the same is a plain failure.

Verdicts, as Logstash's output judges them: any 2xx is success; 429, 500, 502, 503 and 504 are a
`RetriableError`; any other status is a `TerminalError` whose reason holds the first bytes of the
body. Connection refused, reset or lost before the response completed, DNS failure, TLS failure,
an unparsable response and the timeout (``timeout`` seconds for the whole attempt: waiting,
connecting, sending and receiving) are a `RetriableError` naming the cause. A TLS failure reads
``TLS handshake failed: <cause>``, the cause in `tls.describe_tls_failure`'s words, as the input
logs it. Nothing but a complete 2xx response is success.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.codecs import compression as codecs
from twisted_logstash.codecs import ndjson
from twisted_logstash.errors import ConfigurationError, RetriableError, TerminalError
from twisted_logstash.interfaces import ITransmitter
from twisted_logstash.security.tls import describe_tls_failure
from twisted_logstash.transport.eager import send_now
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.native.http import (
    IncompleteResponse,
    RequestEncoder,
    Response,
    ResponseError,
    ResponseParser,
)

__all__ = [
    "DEFAULT_MAX_CONNECTIONS_PER_HOST",
    "DEFAULT_TIMEOUT",
    "RETRIABLE_STATUSES",
    "HttpTransmitter",
    "verdict",
]

RETRIABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS_PER_HOST = 8
REASON_BODY_BYTES = 200

log = Logger()


class _ConnectionEnded(Exception):
    """The connection ended before a complete response."""

    def __init__(self, message: str, received: int, cause: Failure) -> None:
        super().__init__(message)
        self.received = received
        self.cause = cause


def verdict(response: Response, host: Host) -> RetriableError | TerminalError | None:
    """None for a 2xx response, else the error it stands for."""
    status = response.status
    if 200 <= status < 300:
        return None
    reason = f"HTTP {status} {response.reason}".rstrip()
    body = response.body[:REASON_BODY_BYTES]
    if body:
        reason += ": " + body.decode("utf-8", "replace").strip()
    if status in RETRIABLE_STATUSES:
        return RetriableError(reason, host, status)
    return TerminalError(reason, host, status)


def _describe(failure: Failure) -> str:
    """A short reason naming what went wrong on the network."""
    exc = failure.value
    if isinstance(exc, _ConnectionEnded):
        if _is_tls(exc.cause.value):
            return _describe(exc.cause)
        return f"{exc}: {_describe(exc.cause)}"
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, error.DNSLookupError):
        return f"DNS lookup failed: {exc}"
    if _is_tls(exc):
        # the same words as the input's log and the Lumberjack output (tls.describe_tls_failure)
        return f"TLS handshake failed: {describe_tls_failure(exc, client=True)}"
    if isinstance(exc, ResponseError):
        return f"bad response: {exc}"
    if isinstance(exc, error.ConnectionDone):
        return "closed by the server"
    message = failure.getErrorMessage()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


_TLS_MODULES = ("OpenSSL", "service_identity", "ssl", "twisted_logstash.security.tls")


def _is_tls(exc: BaseException) -> bool:
    module = type(exc).__module__
    return any(module == name or module.startswith(name + ".") for name in _TLS_MODULES)


class _Connection(Protocol):
    """One persistent connection, one request at a time, fed to a fresh ResponseParser."""

    def __init__(self, pool: _HostPool) -> None:
        self._pool = pool
        self._parser: ResponseParser | None = None
        self._attempt: _Attempt | None = None
        self._lost_waiters: list[Deferred] = []
        self.reusable = True

    def connectionMade(self) -> None:
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            try:
                no_delay(True)  # the body's last segment must not wait for an ACK (Nagle)
            except OSError:
                pass

    def request(self, head: bytes, body: bytes, attempt: _Attempt) -> None:
        """Send one request; `attempt.responded` or `attempt.ended` hears of the outcome."""
        self._parser = ResponseParser()
        self._attempt = attempt
        self.transport.writeSequence((head, body))
        send_now(self.transport)  # not after every other event of this reactor turn

    def dataReceived(self, data: bytes) -> None:
        attempt = self._attempt
        if attempt is None:
            # Bytes nobody asked for: this connection cannot be trusted with a request.
            self.reusable = False
            self.transport.abortConnection()
            return
        parser = self._parser
        try:
            response = parser.feed(data)
        except ResponseError as e:
            self.reusable = False
            self._attempt = None
            self.transport.abortConnection()
            attempt.ended(self, Failure(e))
            return
        if response is not None:
            if parser.leftover or not response.keep_alive:
                self.reusable = False
            self._attempt = None
            attempt.responded(self, response)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reusable = False
        self.connected = False
        self._pool.lost(self)
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            parser = self._parser
            try:
                response = parser.connection_lost()
            except IncompleteResponse as e:
                ended = _ConnectionEnded(str(e), parser.received, reason)
                attempt.ended(self, Failure(ended))
            else:
                attempt.responded(self, response)
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def when_lost(self) -> Deferred:
        """A Deferred that fires once this connection is gone."""
        if not self.connected:
            return defer.succeed(None)
        waiter = Deferred()
        self._lost_waiters.append(waiter)
        return waiter


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, pool: _HostPool) -> None:
        self._pool = pool

    def buildProtocol(self, addr) -> _Connection:
        return _Connection(self._pool)


class _Waiter:
    """A request waiting for a connection slot of a full pool."""

    __slots__ = ("connecting", "deferred", "pool")

    def __init__(self, pool: _HostPool) -> None:
        self.pool = pool
        self.connecting: Deferred | None = None
        self.deferred: Deferred = Deferred(self._cancel)

    def _cancel(self, _: Deferred) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
        else:
            self.pool.waiters.remove(self)


class _HostPool:
    """The connections to one host: idle ones to reuse, a cap on all of them, a waiting line."""

    def __init__(self, endpoint: IStreamClientEndpoint, cap: int) -> None:
        self._endpoint = endpoint
        self._factory = _ConnectionFactory(self)
        self.cap = cap
        self.open = 0
        """Connections connecting, busy or idle; freed on connect failure or connectionLost."""
        self.idle: list[_Connection] = []
        self.waiters: deque[_Waiter] = deque()
        self.closing = False

    def take_idle(self) -> _Connection | None:
        """The most recently used idle connection (the likeliest to be alive), or None."""
        if self.idle:
            return self.idle.pop()
        return None

    def acquire(self) -> Deferred:
        """A Deferred firing with `(connection, reused)`: a new connection, or one handed back."""
        if self.closing:
            return defer.fail(RetriableError("transmitter is closed"))
        if self.open < self.cap:
            return self._connect()
        waiter = _Waiter(self)
        self.waiters.append(waiter)
        return waiter.deferred

    def _connect(self) -> Deferred:
        self.open += 1
        connecting = defer.maybeDeferred(self._endpoint.connect, self._factory)
        connecting.addCallbacks(_fresh, self._connect_failed)
        return connecting

    def _connect_failed(self, failure: Failure) -> Failure:
        self.open -= 1
        self._wake()
        return failure

    def release(self, connection: _Connection) -> None:
        """Take a connection back after its request: keep it if it may carry another."""
        if connection.reusable and connection.connected and not self.closing:
            if self.waiters:
                self.waiters.popleft().deferred.callback((connection, True))
            else:
                self.idle.append(connection)
        elif connection.connected:
            connection.transport.loseConnection()

    def lost(self, connection: _Connection) -> None:
        """A connection is gone: forget it and give its slot to a waiting request."""
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        self._wake()

    def _wake(self) -> None:
        if self.waiters and self.open < self.cap and not self.closing:
            waiter = self.waiters.popleft()
            waiter.connecting = self._connect()
            waiter.connecting.chainDeferred(waiter.deferred)

    def close(self) -> Deferred:
        """Close the idle connections and refuse new requests; fires once they are gone."""
        self.closing = True
        while self.waiters:
            self.waiters.popleft().deferred.errback(RetriableError("transmitter is closed"))
        gone = []
        for connection in list(self.idle):
            gone.append(connection.when_lost())
            connection.transport.loseConnection()
        return defer.gatherResults(gone)


def _fresh(connection: _Connection) -> tuple[_Connection, bool]:
    return connection, False


class _Attempt:
    """One transmit: get a connection, send, judge the response, within one timeout."""

    __slots__ = (
        "_body",
        "_connection",
        "_head",
        "_host",
        "_pending",
        "_pool",
        "_retried",
        "_reused",
        "_stopped",
        "_timeout",
        "_timer",
        "result",
    )

    def __init__(
        self,
        reactor: IReactorTime,
        pool: _HostPool,
        host: Host,
        head: bytes,
        body: bytes,
        timeout: float,
    ) -> None:
        self._pool = pool
        self._host = host
        self._head = head
        self._body = body
        self._timeout = timeout
        self._pending: Deferred | None = None
        self._connection: _Connection | None = None
        self._reused = False
        self._retried = False
        self._stopped: str | None = None
        self.result = Deferred(self._cancel)
        self._timer = reactor.callLater(timeout, self._expire)
        connection = pool.take_idle()
        if connection is not None:
            self._send(connection, True)
        else:
            self._acquire()

    def _acquire(self) -> None:
        self._pending = pending = self._pool.acquire()
        pending.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, pair: tuple[_Connection, bool]) -> None:
        self._pending = None
        connection, reused = pair
        if self._stopped is not None:
            self._pool.release(connection)
            self._fail(RetriableError(self._stopped, self._host))
        elif not connection.connected:
            self._fail(RetriableError("connection closed before the request", self._host))
        else:
            self._send(connection, reused)

    def _connect_failed(self, failure: Failure) -> None:
        self._pending = None
        if self._stopped is not None:
            reason = self._stopped
        elif failure.check(RetriableError):
            reason = failure.value.reason
        else:
            reason = _describe(failure)
        self._fail(RetriableError(reason, self._host))

    def _send(self, connection: _Connection, reused: bool) -> None:
        self._connection = connection
        self._reused = reused
        connection.request(self._head, self._body, self)

    # -- called by the connection -----------------------------------------------------------------

    def responded(self, connection: _Connection, response: Response) -> None:
        self._connection = None
        self._pool.release(connection)
        problem = verdict(response, self._host)
        if problem is None:
            self._succeed()
        else:
            self._fail(problem)

    def ended(self, connection: _Connection, failure: Failure) -> None:
        self._connection = None
        self._pool.release(connection)
        if self._stopped is not None:
            self._fail(RetriableError(self._stopped, self._host))
            return
        cause = failure.value
        if (
            self._reused
            and not self._retried
            and isinstance(cause, _ConnectionEnded)
            and cause.received == 0
        ):
            self._retried = True
            log.debug(
                "reused connection to {host} closed before any response byte; retrying once on"
                " a fresh connection",
                host=str(self._host),
            )
            self._acquire()
            return
        self._fail(RetriableError(_describe(failure), self._host))

    # -- timeout and cancellation -----------------------------------------------------------------

    def _expire(self) -> None:
        self._timer = None
        reason = f"timeout: no complete response within {self._timeout:g} seconds"
        self._stop(reason)
        # Do not depend on the transport reporting the abort: the verdict is due now.
        self._fail(RetriableError(reason, self._host))

    def _cancel(self, _: Deferred) -> None:
        self._cancel_timer()
        self.result.errback(defer.CancelledError())
        self._stop("cancelled")

    def _stop(self, reason: str) -> None:
        """Give up: cancel the wait for a connection, or abort the connection in use."""
        self._stopped = reason
        if self._pending is not None:
            self._pending.cancel()
        elif self._connection is not None:
            self._connection.reusable = False
            self._connection.transport.abortConnection()

    def _succeed(self) -> None:
        self._cancel_timer()
        if not self.result.called:
            self.result.callback(None)

    def _fail(self, problem: Exception) -> None:
        self._cancel_timer()
        if not self.result.called:
            self.result.errback(problem)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@implementer(ITransmitter)
class HttpTransmitter:
    """Sends batches to Logstash `logstash` inputs (or our own input) over the native wire.

    `encode` compresses once per batch; `transmit` may then send the same payload to any host any
    number of times, each call one attempt (retries and host choice belong to the output).
    """

    def __init__(
        self,
        reactor: IReactorTime,
        endpoint_factory: Callable[[Host], IStreamClientEndpoint],
        *,
        compression: str = "gzip",
        level: int | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections_per_host: int = DEFAULT_MAX_CONNECTIONS_PER_HOST,
    ) -> None:
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be positive, not {timeout!r}")
        if max_connections_per_host < 1:
            raise ConfigurationError(
                f"max_connections_per_host must be at least 1, not {max_connections_per_host!r}"
            )
        self._reactor = reactor
        self._endpoint_factory = endpoint_factory
        self.encoding = codecs.normalize(compression)
        self._level = level
        self._encoder = RequestEncoder(self.encoding, username, password)
        self._timeout = timeout
        self._cap = max_connections_per_host
        self._pools: dict[Host, _HostPool] = {}
        self._closed = False

    def encode(self, events: Sequence[dict]) -> bytes:
        """The request body: the events as ndjson, compressed (raises NdjsonError on bad events)."""
        return codecs.compress(ndjson.encode(events), self.encoding, self._level)

    def transmit(self, host: Host, payload: bytes) -> Deferred:
        """One attempt to deliver `payload` to `host`; fires None on a 2xx response."""
        if self._closed:
            return defer.fail(RetriableError("transmitter is closed", host))
        pool = self._pools.get(host)
        if pool is None:
            pool = self._pools[host] = _HostPool(self._endpoint_factory(host), self._cap)
        head = self._encoder.head(host, len(payload))
        return _Attempt(self._reactor, pool, host, head, payload, self._timeout).result

    def close(self) -> Deferred:
        """Close every idle connection; fires once they are all gone. Later transmits fail."""
        self._closed = True
        closing = [pool.close() for pool in self._pools.values()]
        return defer.gatherResults(closing).addCallback(lambda _: None)

    def idle_connections(self, host: Host) -> int:
        """How many idle connections to `host` wait for reuse (for tests and monitoring)."""
        pool = self._pools.get(host)
        return len(pool.idle) if pool is not None else 0
