"""Raw HTTP over loopback: send exactly the bytes a real client sends, read exactly what comes back.

Only 127.0.0.1 is used. Nothing here sleeps: every wait is a Deferred that fires on bytes or on
the connection closing.
"""

from __future__ import annotations

import base64
import gzip

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from twisted_logstash.wires.native.http import Response, ResponseParser
from twisted_logstash.wires.native.http.errors import ResponseError

TIMEOUT = 10.0
"""Every wait gives up after this many seconds, so that a broken server fails a test instead of
hanging the run."""

__all__ = [
    "RawClient",
    "connect",
    "listen",
    "logstash_body",
    "manticore_request",
]


def logstash_body(events: list[dict]) -> bytes:
    """The body a Logstash ``logstash`` output sends: the batch as ONE JSON array, gzipped.

    (``send_events`` does ``gzip(LogStash::Json.dump(events.map(&:to_hash)))``; the input's
    json_lines codec turns an array of objects into one event per element.)
    """
    import json

    return gzip.compress(json.dumps(events, separators=(",", ":")).encode(), compresslevel=6)


def manticore_request(
    body: bytes,
    *,
    port: int = 9800,
    username: str | None = None,
    password: str | None = None,
    encoding: bytes | None = b"gzip",
    path: bytes = b"/",
    extra: bytes = b"",
) -> bytes:
    """A request as Manticore (Apache HttpClient 4) writes it for the Logstash output: the
    plugin's two headers first, then the ones the client adds, pre-emptive Basic auth last."""
    head = b"POST " + path + b" HTTP/1.1\r\nContent-Type: application/x-ndjson\r\n"
    if encoding is not None:
        head += b"Content-Encoding: " + encoding + b"\r\n"
    head += b"Content-Length: %d\r\n" % len(body)
    head += b"Host: 127.0.0.1:%d\r\n" % port
    head += b"Connection: Keep-Alive\r\nUser-Agent: Manticore 0.9.1\r\n"
    head += b"Accept-Encoding: gzip,deflate\r\n"
    if username is not None:
        token = base64.b64encode(f"{username}:{password}".encode())
        head += b"Authorization: Basic " + token + b"\r\n"
    return head + extra + b"\r\n" + body


class RawClient(protocol.Protocol):
    """Writes raw bytes; collects raw bytes; parses the responses that arrive, in order."""

    def __init__(self) -> None:
        self.received = b""
        self.responses: list[Response] = []
        self._close_waiters: list[defer.Deferred] = []
        self._unparsed = b""
        self._waiters: list[tuple[int, defer.Deferred]] = []
        self._byte_waiters: list[tuple[bytes, defer.Deferred]] = []
        self.lost = False
        self.not_http = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self._unparsed += data
        while self._unparsed and not self.not_http:
            parser = ResponseParser()
            try:
                response = parser.feed(self._unparsed)
            except ResponseError:
                self.not_http = True  # another wire's answers (a framed ACK): kept raw only
                break
            if response is None:
                break
            self.responses.append(response)
            self._unparsed = parser.leftover
        self._wake()

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.lost = True
        self._wake()
        for _, d in self._waiters + self._byte_waiters:
            d.errback(AssertionError(f"connection closed; received {self.received[:300]!r}"))
        self._waiters = []
        self._byte_waiters = []
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            d.callback(None)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def wait_responses(self, count: int) -> defer.Deferred:
        """Fires with the first ``count`` responses once they all arrived."""
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((count, d))
        self._wake()
        return d.addTimeout(TIMEOUT, reactor)

    def wait_bytes(self, marker: bytes) -> defer.Deferred:
        """Fires once ``marker`` appeared in what was received."""
        d: defer.Deferred = defer.Deferred()
        self._byte_waiters.append((marker, d))
        self._wake()
        return d.addTimeout(TIMEOUT, reactor)

    def wait_closed(self) -> defer.Deferred:
        """Fires once the connection closed (at once if it already did)."""
        if self.lost:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._close_waiters.append(d)
        return d.addTimeout(TIMEOUT, reactor)

    def request(self, data: bytes) -> defer.Deferred:
        """Send one request and fire with its response."""
        count = len(self.responses) + 1
        self.send(data)
        return self.wait_responses(count).addCallback(lambda responses: responses[-1])

    def _wake(self) -> None:
        waiting, self._waiters = self._waiters, []
        for count, d in waiting:
            if len(self.responses) >= count:
                d.callback(self.responses[:count])
            else:
                self._waiters.append((count, d))
        waiting_bytes, self._byte_waiters = self._byte_waiters, []
        for marker, d in waiting_bytes:
            if marker in self.received:
                d.callback(self.received)
            else:
                self._byte_waiters.append((marker, d))


def listen(factory: protocol.Factory) -> defer.Deferred:
    """Listen on 127.0.0.1, a free port; fires with the IListeningPort."""
    return TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)


def connect(port: int) -> defer.Deferred:
    """A RawClient connected to 127.0.0.1:``port``."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    return endpoint.connect(protocol.Factory.forProtocol(RawClient))
