"""The native transmitter: one compressed ndjson batch, one HTTP/1.1 POST, one verdict.

A lean client instead of twisted.web's `Agent`: per request it writes prebuilt header bytes plus
the body with one ``writeSequence`` and feeds the answer to the sans-IO `ResponseParser`; nothing
else runs per request but the verdict. The request bytes (built by `http/writers.py`, which says
why each header is there or not) are, for a batch of N compressed bytes, every line ending
in CRLF::

    POST / HTTP/1.1
    Host: <host>:<port>                          ([v6]:port for IPv6)
    Content-Type: application/x-ndjson
    Content-Encoding: gzip                       (deflate, snappy; absent for none/identity)
    Authorization: Basic <base64(user:pass)>     (only with a username)
    Content-Length: N

    <N bytes: the compressed ndjson>

Connections (``endpoint_factory(host)`` gives the endpoint, so plain TCP or TLS is the caller's
choice) are kept per host and reused by the pool both wires share (`transport/pool.py`: the cap
``max_connections_per_host``, the waiting line, a clean close with ``close_grace``), one request
per connection at a time, and each transmit is one `transport/attempt.py` attempt (the deadline,
cancel, the one retry of a stale reused connection). This module is only the exchange: a
connection goes back to the pool only after a complete response that allows keep-alive and
nothing after it; otherwise it is closed.

Verdicts, as Logstash's output judges them: any 2xx is success; 429, 500, 502, 503 and 504 are a
`RetriableError`; any other status is a `TerminalError` whose reason holds the first bytes of the
body. Connection refused, reset or lost before the response completed, DNS failure, TLS failure,
an unparsable response and the timeout (``timeout`` seconds for the whole attempt: waiting,
connecting, sending and receiving) are a `RetriableError` naming the cause
(`attempt.describe_failure`). A TLS failure reads ``TLS handshake failed: <cause>``, the cause in
`tls.describe_tls_failure`'s words, as the input logs it. Nothing but a complete 2xx response is
success. When the first answer on a new connection is not HTTP, or a close before any, or a TLS
failure that says what to change, the reason ends with what is probably wrong
(`transport/diagnosis.py`: a framed port, a TLS port, an unknown CA...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint, ITransport
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.codecs import compression as codecs
from twisted_logstash.codecs import ndjson
from twisted_logstash.codecs.bytebound import cut
from twisted_logstash.errors import ConfigurationError, RetriableError, TerminalError
from twisted_logstash.interfaces import IExchange, ITransmitter, IWire
from twisted_logstash.transport.attempt import Attempt, describe_failure, is_tls
from twisted_logstash.transport.diagnosis import HTTP
from twisted_logstash.transport.eager import write_now
from twisted_logstash.transport.hosts import Host
from twisted_logstash.transport.pool import (
    DEFAULT_CLOSE_GRACE,
    DEFAULT_MAX_CONNECTIONS_PER_HOST,
    ConnectionPools,
)
from twisted_logstash.wires.native.http import (
    IncompleteResponse,
    RequestEncoder,
    Response,
    ResponseError,
    ResponseParser,
)

__all__ = [
    "DEFAULT_CLOSE_GRACE",
    "DEFAULT_MAX_CONNECTIONS_PER_HOST",
    "DEFAULT_TIMEOUT",
    "RETRIABLE_STATUSES",
    "HttpTransmitter",
    "verdict",
]

RETRIABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = 60.0
REASON_BODY_BYTES = 200


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


class _Known:
    """The last response that arrived whole in one read, and what it parsed into: a server
    answers every batch with the same bytes (its ``Date`` changes once a second), so the next
    answer equal to them is that response again, with no parser built or run. Only a read
    that a fresh parser turned into a complete response with nothing after it is kept."""

    __slots__ = ("data", "response")

    def __init__(self) -> None:
        self.data = b""
        self.response: Response | None = None


@implementer(IExchange)
class _HttpExchange:
    """One request at a time on one connection, its answer fed to a fresh ResponseParser
    (built when the first byte of it arrives, unless the answer is one already known).

    A receiver that answers bytes that are not HTTP, or closes before any, is probably not a
    native input: the attempt's reason says what to change (`Attempt.diagnosed`)."""

    __slots__ = ("_encoder", "_known", "_parser")

    def __init__(self, encoder: RequestEncoder, known: _Known) -> None:
        self._encoder = encoder
        self._known = known
        self._parser: ResponseParser | None = None

    def begin(self, transport: ITransport, attempt: Attempt) -> None:
        self._parser = None
        payload = attempt.payload
        # now, not after every other event of this reactor turn
        write_now(transport, (self._encoder.head(attempt.host, len(payload)), payload))

    def receive(self, data: bytes, attempt: Attempt) -> None:
        parser = self._parser
        if parser is None:
            known = self._known
            if data == known.data:
                _settle(known.response, attempt)
                return
            self._parser = parser = ResponseParser()
            fresh = True
        else:
            fresh = False
        try:
            response = parser.feed(data)
        except ResponseError as e:
            reason = f"bad response: {e}"
            if fresh:
                reason = attempt.diagnosed(reason, answer=data)
            attempt.drop(RetriableError(reason, attempt.host))
            return
        if response is not None:
            if parser.leftover or not response.keep_alive:
                attempt.connection.reusable = False
            elif fresh:
                known = self._known
                known.data = data
                known.response = response
            _settle(response, attempt)

    def lost(self, reason: Failure, attempt: Attempt) -> None:
        if self._parser is None:
            self._parser = ResponseParser()
        try:
            response = self._parser.connection_lost()
        except IncompleteResponse as e:
            cause = describe_failure(reason)
            if not is_tls(reason.value):
                cause = f"{e}: {cause}"
            connection = attempt.connection
            closed = connection is not None and not connection.heard
            cause = attempt.diagnosed(cause, closed=closed, error=reason.value)
            attempt.fail(RetriableError(cause, attempt.host))
        else:
            _settle(response, attempt)

    def idle(self, data: bytes) -> bool:
        return False  # a server says nothing unasked: such a connection is not to be trusted


def _settle(response: Response, attempt: Attempt) -> None:
    problem = verdict(response, attempt.host)
    if problem is None:
        attempt.succeed()
    else:
        attempt.fail(problem)


@implementer(ITransmitter, IWire)
class HttpTransmitter:
    """Sends batches to Logstash `logstash` inputs (or our own input) over the native wire.

    `encode` compresses once per batch; `transmit` may then send the same payload to any host any
    number of times, each call one attempt (retries and host choice belong to the output).
    """

    protocol = HTTP

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
        close_grace: float = DEFAULT_CLOSE_GRACE,
    ) -> None:
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be positive, not {timeout!r}")
        self._reactor = reactor
        self.encoding = codecs.normalize(compression)
        self._level = level
        self._compress = codecs.compressor(self.encoding, level)
        self._encoder = RequestEncoder(self.encoding, username, password)
        self._known = _Known()
        self._timeout = timeout
        #: JSON encoded so far, before compression: events, and their bytes without line ends
        #: (the output's metrics estimate its memory queue in bytes from their ratio)
        self.json_events = 0
        self.json_bytes = 0
        self._pools = ConnectionPools(
            reactor,
            endpoint_factory,
            self,
            max_connections_per_host=max_connections_per_host,
            close_grace=close_grace,
        )

    def encode(self, events: Sequence[dict]) -> bytes:
        """The request body: the events as ndjson by the JSON policy, compressed."""
        return self._compress(ndjson.encode(events))

    def encode_within(self, events: Sequence[dict], max_bytes: int) -> list[tuple[int, bytes]]:
        """As `encode`, cut into bodies of at most `max_bytes` of JSON each (`cut`); the
        ndjson is written once and, when over, split at its line ends (JSON text holds none)."""
        body = ndjson.encode(events)
        size = len(body) - len(events)
        self.json_events += len(events)
        self.json_bytes += size
        if size <= max_bytes:
            return [(len(events), self._compress(body))]
        lines = body.split(b"\n")
        lines.pop()  # after the last line's \n
        parts = []
        start = 0
        for count in cut([len(line) for line in lines], max_bytes):
            part = b"\n".join(lines[start : start + count]) + b"\n"
            parts.append((count, self._compress(part)))
            start += count
        return parts

    def transmit(self, host: Host, payload: bytes) -> Deferred:
        """One attempt to deliver `payload` to `host`; fires None on a 2xx response."""
        pool = self._pools.pool(host)
        return Attempt(self._reactor, pool, self, host, payload, self._timeout).result

    def close(self) -> Deferred:
        """Close every connection cleanly (busy ones after their request), aborting what has not
        closed after ``close_grace`` seconds; fires when done. Later transmits fail."""
        return self._pools.close()

    def idle_connections(self, host: Host) -> int:
        """How many idle connections to `host` wait for reuse (for tests and monitoring)."""
        return self._pools.idle(host)

    # -- IWire ------------------------------------------------------------------------------------

    def exchange(self, host: Host) -> _HttpExchange:
        return _HttpExchange(self._encoder, self._known)

    def timed_out(self, attempt: Attempt, exchange: _HttpExchange | None) -> str:
        return f"timeout: no complete response within {self._timeout:g} seconds"
