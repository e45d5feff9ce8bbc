"""The native transmitter: request bytes, verdicts, the connection pool, timeouts.

Unit tests drive connections over StringTransport with a Clock; integration tests run real
loopback sockets against a recording HTTP server written here, and against twisted.web.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import re

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, error, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web import resource, server
from zope.interface.verify import verifyObject

from twisted_logstash.codecs import compression, ndjson
from twisted_logstash.errors import ConfigurationError, RetriableError, TerminalError
from twisted_logstash.interfaces import ITransmitter
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.native.client import HttpTransmitter, verdict
from twisted_logstash.wires.native.http import RequestEncoder, Response, basic_authorization

HOST = Host("127.0.0.1", 9800)
EVENTS = [
    {"@timestamp": "2026-11-23T10:00:00.123Z", "@version": "1", "message": "hello"},
    {"@timestamp": "2026-11-23T10:00:00.124Z", "@version": "1", "message": "wörld", "n": 2},
]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def response(status: int, body: bytes = b"", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d Whatever\r\n%sContent-Length: %d\r\n\r\n%s" % (
        status,
        extra,
        len(body),
        body,
    )


def outcome(d: defer.Deferred):
    """What a fired Deferred holds: None on success, else the exception (consumed)."""
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    result = results[0]
    if isinstance(result, Failure):
        return result.value
    return result


# -- request bytes (sans-IO) ----------------------------------------------------------------------


def test_request_head_gzip_with_auth():
    encoder = RequestEncoder("gzip", "user", "pass")
    assert encoder.head(Host("10.0.0.5", 9800), 1234) == (
        b"POST / HTTP/1.1\r\n"
        b"Host: 10.0.0.5:9800\r\n"
        b"Content-Type: application/x-ndjson\r\n"
        b"Content-Encoding: gzip\r\n"
        b"Authorization: Basic dXNlcjpwYXNz\r\n"
        b"Content-Length: 1234\r\n"
        b"\r\n"
    )


def test_request_head_identity_has_no_content_encoding():
    head = RequestEncoder("identity").head(Host("example.com", 1), 0)
    assert head == (
        b"POST / HTTP/1.1\r\nHost: example.com:1\r\n"
        b"Content-Type: application/x-ndjson\r\nContent-Length: 0\r\n\r\n"
    )


@pytest.mark.parametrize("encoding", ["deflate", "snappy"])
def test_request_head_names_other_encodings(encoding):
    head = RequestEncoder(encoding).head(HOST, 5)
    assert b"\r\nContent-Encoding: " + encoding.encode() + b"\r\n" in head


def test_request_head_brackets_ipv6():
    head = RequestEncoder().head(Host("::1", 9801), 5)
    assert head.startswith(b"POST / HTTP/1.1\r\nHost: [::1]:9801\r\n")


def test_request_prefix_is_built_once_per_host():
    encoder = RequestEncoder()
    assert encoder.prefix(HOST) is encoder.prefix(HOST)


def test_basic_authorization_is_utf8():
    value = basic_authorization("jörg", "pä:ss")
    assert value == b"Basic " + base64.b64encode("jörg:pä:ss".encode())


@pytest.mark.parametrize(
    ("username", "password"),
    [("user", None), (None, "pass"), ("us:er", "pass")],
)
def test_request_credentials_must_be_usable(username, password):
    with pytest.raises(ConfigurationError):
        RequestEncoder("gzip", username, password)


# -- verdicts -------------------------------------------------------------------------------------


def make_response(status: int, body: bytes = b"") -> Response:
    return Response(status, "Reason", (), body, len(body), True)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_verdict_2xx_is_success(status):
    assert verdict(make_response(status), HOST) is None


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_verdict_retriable_statuses(status):
    problem = verdict(make_response(status, b"busy"), HOST)
    assert type(problem) is RetriableError
    assert problem.status == status
    assert problem.host == HOST
    assert "busy" in problem.reason


@pytest.mark.parametrize("status", [101, 301, 400, 401, 403, 404, 413, 501, 505])
def test_verdict_other_statuses_are_terminal(status):
    problem = verdict(make_response(status, b"x" * 1000), HOST)
    assert type(problem) is TerminalError
    assert problem.status == status
    assert f"HTTP {status} Reason: " in problem.reason
    assert len(problem.reason) < 300  # only the first bytes of the body


# -- encode ---------------------------------------------------------------------------------------


def test_provides_itransmitter():
    transmitter = HttpTransmitter(Clock(), lambda host: None)
    assert verifyObject(ITransmitter, transmitter)


def test_encode_gzip_by_default():
    payload = HttpTransmitter(Clock(), lambda host: None).encode(EVENTS)
    assert payload[:2] == b"\x1f\x8b"
    assert gzip.decompress(payload) == ndjson.encode(EVENTS)


@pytest.mark.parametrize(
    ("name", "encoding"),
    [("none", "identity"), ("identity", "identity"), ("deflate", "deflate"), ("snappy", "snappy")],
)
def test_encode_other_compressions(name, encoding):
    transmitter = HttpTransmitter(Clock(), lambda host: None, compression=name)
    assert transmitter.encoding == encoding
    payload = transmitter.encode(EVENTS)
    assert compression.decompress(payload, encoding, 1 << 20) == ndjson.encode(EVENTS)


def test_unknown_compression_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        HttpTransmitter(Clock(), lambda host: None, compression="brotli")


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"max_connections_per_host": 0}])
def test_bad_limits_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        HttpTransmitter(Clock(), lambda host: None, **kwargs)


# -- unit: connections over StringTransport -------------------------------------------------------


class FakeEndpoint:
    """Connects instantly to a StringTransport, or hangs when `hang` is set."""

    def __init__(self):
        self.protocols = []
        self.hang = False
        self.cancelled = 0
        self.failures = []
        self.connecting = []

    def connect(self, factory):
        if self.failures:
            return defer.fail(self.failures.pop(0))
        if self.hang:

            def cancel(d):
                self.cancelled += 1

            connecting = defer.Deferred(cancel)
            self.connecting.append(connecting)
            return connecting
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        self.protocols.append(protocol)
        return defer.succeed(protocol)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def endpoint():
    return FakeEndpoint()


@pytest.fixture
def transmitter(clock, endpoint):
    return HttpTransmitter(clock, lambda host: endpoint, timeout=5)


def sent(protocol) -> bytes:
    value = protocol.transport.value()
    protocol.transport.clear()
    return value


def test_request_written_whole_and_2xx_succeeds(transmitter, endpoint):
    payload = transmitter.encode(EVENTS)
    d = transmitter.transmit(HOST, payload)
    [conn] = endpoint.protocols
    data = sent(conn)
    assert data == RequestEncoder().head(HOST, len(payload)) + payload
    assert not d.called
    conn.dataReceived(OK)
    assert outcome(d) is None


def test_no_success_before_the_response_is_complete(transmitter, endpoint):
    d = transmitter.transmit(HOST, b"body")
    [conn] = endpoint.protocols
    for byte in [OK[i : i + 1] for i in range(len(OK) - 1)]:
        conn.dataReceived(byte)
        assert not d.called
    conn.dataReceived(OK[-1:])
    assert outcome(d) is None


def test_idle_connection_is_reused(transmitter, endpoint):
    for _ in range(3):
        d = transmitter.transmit(HOST, b"body")
        conn = endpoint.protocols[-1]
        assert sent(conn).endswith(b"body")
        conn.dataReceived(OK)
        assert outcome(d) is None
    assert len(endpoint.protocols) == 1
    assert transmitter.idle_connections(HOST) == 1


def test_concurrent_requests_use_separate_connections(transmitter, endpoint):
    first = transmitter.transmit(HOST, b"one")
    second = transmitter.transmit(HOST, b"two")
    a, b = endpoint.protocols
    assert sent(a).endswith(b"one")
    assert sent(b).endswith(b"two")
    b.dataReceived(OK)
    a.dataReceived(OK)
    assert outcome(first) is None
    assert outcome(second) is None
    assert transmitter.idle_connections(HOST) == 2


def test_hosts_have_separate_pools(transmitter, endpoint):
    other = Host("127.0.0.2", 9800)
    transmitter.transmit(HOST, b"one")
    transmitter.transmit(other, b"two")
    a, b = endpoint.protocols
    assert b"Host: 127.0.0.1:9800\r\n" in sent(a)
    assert b"Host: 127.0.0.2:9800\r\n" in sent(b)


def test_requests_over_the_cap_wait_for_a_connection(clock, endpoint):
    transmitter = HttpTransmitter(clock, lambda host: endpoint, max_connections_per_host=1)
    first = transmitter.transmit(HOST, b"one")
    second = transmitter.transmit(HOST, b"two")
    [conn] = endpoint.protocols
    assert sent(conn).endswith(b"one")
    conn.dataReceived(OK)
    assert outcome(first) is None
    assert sent(conn).endswith(b"two")  # handed over, not queued behind a new connect
    conn.dataReceived(OK)
    assert outcome(second) is None
    assert len(endpoint.protocols) == 1


def test_waiting_request_connects_when_a_slot_frees(clock, endpoint):
    transmitter = HttpTransmitter(clock, lambda host: endpoint, max_connections_per_host=1)
    first = transmitter.transmit(HOST, b"one")
    second = transmitter.transmit(HOST, b"two")
    [conn] = endpoint.protocols
    conn.dataReceived(response(200, extra=b"Connection: close\r\n"))
    assert outcome(first) is None
    assert conn.transport.disconnecting
    assert len(endpoint.protocols) == 1  # the slot frees only once the connection is gone
    conn.connectionLost(Failure(error.ConnectionDone()))
    fresh = endpoint.protocols[1]
    assert sent(fresh).endswith(b"two")
    fresh.dataReceived(OK)
    assert outcome(second) is None


def test_waiting_request_times_out(clock, endpoint):
    transmitter = HttpTransmitter(
        clock, lambda host: endpoint, max_connections_per_host=1, timeout=5
    )
    first = transmitter.transmit(HOST, b"one")
    clock.advance(1)
    second = transmitter.transmit(HOST, b"two")
    clock.advance(4)
    assert isinstance(outcome(first), RetriableError)
    assert not second.called  # the aborted connection still holds the only slot
    clock.advance(1)
    problem = outcome(second)
    assert isinstance(problem, RetriableError)
    assert "timeout" in problem.reason
    [conn] = endpoint.protocols
    conn.connectionLost(Failure(error.ConnectionAborted()))
    assert len(endpoint.protocols) == 1  # the timed-out waiter left the line: no connect


@pytest.mark.parametrize(
    "answer",
    [
        response(200, extra=b"Connection: close\r\n"),
        OK + b"HTTP/1.1 200 OK\r\n",  # bytes after the response
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_connection_not_reused_when_response_forbids(transmitter, endpoint, answer):
    d = transmitter.transmit(HOST, b"body")
    [conn] = endpoint.protocols
    conn.dataReceived(answer)
    assert outcome(d) is None
    assert conn.transport.disconnecting
    assert transmitter.idle_connections(HOST) == 0
    transmitter.transmit(HOST, b"again")
    assert len(endpoint.protocols) == 2


def test_idle_close_race_is_retried_once_on_a_fresh_connection(transmitter, endpoint):
    d = transmitter.transmit(HOST, b"one")
    old = endpoint.protocols[0]
    old.dataReceived(OK)
    outcome(d)
    d = transmitter.transmit(HOST, b"two")
    assert sent(old).endswith(b"two")
    old.connectionLost(Failure(error.ConnectionDone()))  # closed before any response byte
    assert not d.called
    fresh = endpoint.protocols[1]
    assert sent(fresh).endswith(b"two")
    fresh.dataReceived(OK)
    assert outcome(d) is None


def test_idle_close_race_retried_only_once(transmitter, endpoint):
    d = transmitter.transmit(HOST, b"one")
    endpoint.protocols[0].dataReceived(OK)
    outcome(d)
    d = transmitter.transmit(HOST, b"two")
    endpoint.protocols[0].connectionLost(Failure(error.ConnectionDone()))
    endpoint.protocols[1].connectionLost(Failure(error.ConnectionDone()))
    problem = outcome(d)
    assert isinstance(problem, RetriableError)
    assert "before any response byte" in problem.reason
    assert len(endpoint.protocols) == 2


def test_fresh_connection_closed_before_response_is_not_retried(transmitter, endpoint):
    d = transmitter.transmit(HOST, b"one")
    endpoint.protocols[0].connectionLost(Failure(error.ConnectionLost("reset")))
    problem = outcome(d)
    assert isinstance(problem, RetriableError)
    assert problem.host == HOST
    assert "before any response byte" in problem.reason
    assert len(endpoint.protocols) == 1


def test_reused_connection_lost_mid_response_is_not_retried(transmitter, endpoint):
    d = transmitter.transmit(HOST, b"one")
    endpoint.protocols[0].dataReceived(OK)
    outcome(d)
    d = transmitter.transmit(HOST, b"two")
    conn = endpoint.protocols[0]
    conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    conn.connectionLost(Failure(error.ConnectionLost()))
    problem = outcome(d)
    assert isinstance(problem, RetriableError)
    assert "inside the response body" in problem.reason
    assert len(endpoint.protocols) == 1


def test_malformed_response_is_retriable_and_drops_the_connection(transmitter, endpoint):
    d = transmitter.transmit(HOST, b"one")
    conn = endpoint.protocols[0]
    conn.dataReceived(b"SMTP ready\r\n\r\n")
    problem = outcome(d)
    assert isinstance(problem, RetriableError)
    assert "bad response" in problem.reason
    assert conn.transport.disconnected
    assert transmitter.idle_connections(HOST) == 0


def test_unsolicited_bytes_on_idle_connection_drop_it(transmitter, endpoint):
    d = transmitter.transmit(HOST, b"one")
    conn = endpoint.protocols[0]
    conn.dataReceived(OK)
    outcome(d)
    conn.dataReceived(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    assert conn.transport.disconnected
    conn.connectionLost(Failure(error.ConnectionLost()))
    assert transmitter.idle_connections(HOST) == 0


def test_server_closing_idle_connection_removes_it(transmitter, endpoint):
    d = transmitter.transmit(HOST, b"one")
    conn = endpoint.protocols[0]
    conn.dataReceived(OK)
    outcome(d)
    conn.connectionLost(Failure(error.ConnectionDone()))
    assert transmitter.idle_connections(HOST) == 0
    transmitter.transmit(HOST, b"two")
    assert len(endpoint.protocols) == 2


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (error.DNSLookupError("no.such.host"), "DNS lookup failed: "),
        (error.ConnectionRefusedError(), "connection refused"),
        (error.TCPTimedOutError(), "TCPTimedOutError: "),
        (error.ConnectError("no route"), "ConnectError: "),
    ],
)
def test_connect_failures_are_retriable_and_named(transmitter, endpoint, failure, reason):
    endpoint.failures.append(failure)
    problem = outcome(transmitter.transmit(HOST, b"one"))
    assert type(problem) is RetriableError
    assert problem.reason.startswith(reason)
    assert problem.host == HOST
    assert problem.status is None


def test_connection_reset_mid_response_names_the_cause(transmitter, endpoint):
    d = transmitter.transmit(HOST, b"one")
    conn = endpoint.protocols[0]
    conn.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")
    conn.connectionLost(Failure(error.ConnectionLost("Connection reset by peer")))
    problem = outcome(d)
    assert isinstance(problem, RetriableError)
    assert "inside the response body" in problem.reason
    assert "Connection reset by peer" in problem.reason


def test_failed_connect_frees_the_slot_for_a_waiting_request(clock, endpoint):
    transmitter = HttpTransmitter(clock, lambda host: endpoint, max_connections_per_host=1)
    endpoint.hang = True
    first = transmitter.transmit(HOST, b"one")
    second = transmitter.transmit(HOST, b"two")
    assert len(endpoint.connecting) == 1  # the second waits for the only slot
    endpoint.hang = False
    endpoint.connecting[0].errback(error.ConnectionRefusedError())
    assert outcome(first).reason == "connection refused"
    [conn] = endpoint.protocols
    assert sent(conn).endswith(b"two")
    conn.dataReceived(OK)
    assert outcome(second) is None


# -- timeouts and cancellation --------------------------------------------------------------------


def test_timeout_waiting_for_the_response_aborts_the_connection(transmitter, endpoint, clock):
    d = transmitter.transmit(HOST, b"one")
    conn = endpoint.protocols[0]
    conn.dataReceived(b"HTTP/1.1 200 OK\r\n")
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.1)
    problem = outcome(d)
    assert isinstance(problem, RetriableError)
    assert problem.reason == "timeout: no complete response within 5 seconds"
    assert conn.transport.disconnected
    conn.connectionLost(Failure(error.ConnectionAborted()))
    assert transmitter.idle_connections(HOST) == 0
    assert not clock.getDelayedCalls()


def test_timeout_while_connecting_cancels_the_connect(transmitter, endpoint, clock):
    endpoint.hang = True
    d = transmitter.transmit(HOST, b"one")
    clock.advance(5)
    problem = outcome(d)
    assert isinstance(problem, RetriableError)
    assert "timeout" in problem.reason
    assert endpoint.cancelled == 1


def test_timeout_on_a_tcp_connect_with_memory_reactor():
    reactor = MemoryReactorClock()
    transmitter = HttpTransmitter(
        reactor, lambda host: TCP4ClientEndpoint(reactor, host.host, host.port), timeout=3
    )
    d = transmitter.transmit(HOST, b"one")
    [(host, port, _factory, _timeout, _bind)] = reactor.tcpClients
    assert (host, port) == ("127.0.0.1", 9800)
    reactor.advance(3)
    problem = outcome(d)
    assert isinstance(problem, RetriableError)
    assert "timeout" in problem.reason
    assert reactor.connectors[0].stoppedConnecting


def test_success_cancels_the_timer(transmitter, endpoint, clock):
    d = transmitter.transmit(HOST, b"one")
    endpoint.protocols[0].dataReceived(OK)
    outcome(d)
    assert not clock.getDelayedCalls()


def test_cancel_aborts_and_fails_with_cancelled(transmitter, endpoint, clock):
    d = transmitter.transmit(HOST, b"one")
    conn = endpoint.protocols[0]
    d.cancel()
    assert isinstance(outcome(d), defer.CancelledError)
    assert conn.transport.disconnected
    assert not clock.getDelayedCalls()


# -- close ----------------------------------------------------------------------------------------


def test_close_closes_idle_connections_and_waits(transmitter, endpoint):
    d = transmitter.transmit(HOST, b"one")
    conn = endpoint.protocols[0]
    conn.dataReceived(OK)
    outcome(d)
    closed = transmitter.close()
    assert conn.transport.disconnecting
    assert not closed.called
    conn.connectionLost(Failure(error.ConnectionDone()))
    assert outcome(closed) is None
    problem = outcome(transmitter.transmit(HOST, b"two"))
    assert isinstance(problem, RetriableError)
    assert "closed" in problem.reason


def test_close_with_a_request_in_flight_closes_that_connection_after_it(transmitter, endpoint):
    d = transmitter.transmit(HOST, b"one")
    conn = endpoint.protocols[0]
    closed = transmitter.close()
    assert not conn.transport.disconnecting
    conn.dataReceived(OK)
    assert outcome(d) is None
    assert conn.transport.disconnecting and not conn.transport.disconnected
    assert not closed.called
    conn.connectionLost(Failure(error.ConnectionDone()))
    assert outcome(closed) is None


def test_close_aborts_an_idle_connection_that_does_not_close_within_the_grace(clock, endpoint):
    """Issue 10: a TLS peer that never answers our close_notify (as JDK/Netty's SslHandler
    does) held close() forever, and with it a finite logstash-output."""
    transmitter = HttpTransmitter(clock, lambda host: endpoint, close_grace=1.5)
    d = transmitter.transmit(HOST, b"one")
    conn = endpoint.protocols[0]
    conn.dataReceived(OK)
    assert outcome(d) is None
    closed = transmitter.close()
    assert conn.transport.disconnecting and not conn.transport.disconnected  # a clean close
    clock.advance(1.4)
    assert not closed.called
    clock.advance(0.1)
    assert outcome(closed) is None
    assert conn.transport.disconnected  # aborted
    assert not clock.getDelayedCalls()


def test_close_aborts_a_request_still_in_flight_after_the_grace(clock, endpoint):
    transmitter = HttpTransmitter(clock, lambda host: endpoint, close_grace=2)
    d = transmitter.transmit(HOST, b"one")
    conn = endpoint.protocols[0]
    closed = transmitter.close()
    clock.advance(2)
    assert outcome(closed) is None
    assert conn.transport.disconnected
    conn.connectionLost(Failure(error.ConnectionAborted()))
    assert isinstance(outcome(d), RetriableError)
    assert not clock.getDelayedCalls()


def test_bad_close_grace_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        HttpTransmitter(Clock(), lambda host: None, close_grace=-1)


def test_close_fails_waiting_requests(clock, endpoint):
    transmitter = HttpTransmitter(clock, lambda host: endpoint, max_connections_per_host=1)
    transmitter.transmit(HOST, b"one")
    waiting = transmitter.transmit(HOST, b"two")
    transmitter.close()
    assert isinstance(outcome(waiting), RetriableError)


# -- integration: real loopback sockets -----------------------------------------------------------


class RecordingServer(Protocol):
    """Records each request (head, body) and answers with the factory's next canned response.

    A canned response is bytes to write, or a callable taking the transport.
    """

    def connectionMade(self):
        self.factory.connections.append(self)
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[: end + 4]
            match = re.search(rb"\r\ncontent-length: *(\d+)\r\n", head, re.IGNORECASE)
            length = int(match.group(1)) if match else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.factory.requests.append((head, body))
            answer = self.factory.answers.pop(0) if self.factory.answers else OK
            if callable(answer):
                answer(self.transport)
            else:
                self.transport.write(answer)

    def connectionLost(self, reason):
        self.factory.lost += 1


class RecordingFactory(Factory):
    protocol = RecordingServer
    noisy = False

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.requests = []
        self.connections = []
        self.lost = 0


@pytest.fixture
def tcp():
    """Listen on 127.0.0.1 with a RecordingFactory; a transmitter over plain TCP to it."""
    from twisted.internet import reactor

    made = []

    def start(answers=(), **kwargs):
        factory = RecordingFactory(answers)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        transmitter = HttpTransmitter(
            reactor, lambda host: TCP4ClientEndpoint(reactor, host.host, host.port), **kwargs
        )
        made.append((port, factory, transmitter))
        return Host("127.0.0.1", port.getHost().port), factory, transmitter

    yield start
    for port, factory, transmitter in made:
        pytest_twisted.blockon(transmitter.close())
        for conn in factory.connections:
            conn.transport.loseConnection()
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@pytest_twisted.inlineCallbacks
def test_loopback_exact_request_bytes(tcp):
    host, factory, transmitter = tcp()
    payload = transmitter.encode(EVENTS)
    yield transmitter.transmit(host, payload)
    [(head, body)] = factory.requests
    assert head == (
        b"POST / HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Content-Type: application/x-ndjson\r\n"
        b"Content-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n"
        b"\r\n" % (host.port, len(payload))
    )
    assert gzip.decompress(body) == ndjson.encode(EVENTS)
    assert ndjson.decode(gzip.decompress(body)) == EVENTS


@pytest_twisted.inlineCallbacks
def test_loopback_basic_auth_and_identity(tcp):
    host, factory, transmitter = tcp(username="logstash", password="s3cret", compression="none")
    yield transmitter.transmit(host, transmitter.encode(EVENTS))
    [(head, body)] = factory.requests
    expected = base64.b64encode(b"logstash:s3cret")
    assert b"\r\nAuthorization: Basic " + expected + b"\r\n" in head
    assert b"Content-Encoding" not in head
    assert body == ndjson.encode(EVENTS)


@pytest_twisted.inlineCallbacks
def test_loopback_keep_alive_reuses_one_connection(tcp):
    host, factory, transmitter = tcp()
    yield transmitter.transmit(host, transmitter.encode(EVENTS))
    yield transmitter.transmit(host, transmitter.encode(EVENTS[:1]))
    assert len(factory.requests) == 2
    assert len(factory.connections) == 1


@pytest_twisted.inlineCallbacks
def test_loopback_concurrent_requests(tcp):
    host, factory, transmitter = tcp()
    payloads = [transmitter.encode([{"n": i}]) for i in range(4)]
    yield defer.gatherResults([transmitter.transmit(host, p) for p in payloads])
    assert sorted(body for _, body in factory.requests) == sorted(payloads)
    assert len(factory.connections) == 4


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (201, None),
        (204, None),
        (429, RetriableError),
        (500, RetriableError),
        (502, RetriableError),
        (503, RetriableError),
        (504, RetriableError),
        (400, TerminalError),
        (401, TerminalError),
        (404, TerminalError),
        (413, TerminalError),
    ],
)
@pytest_twisted.inlineCallbacks
def test_loopback_status_verdicts(tcp, status, expected):
    body = b"" if status == 204 else b"reason from the server"
    host, _factory, transmitter = tcp([response(status, body)])
    d = transmitter.transmit(host, b"x")
    if expected is None:
        result = yield d
        assert result is None
        return
    with pytest.raises(expected) as caught:
        yield d
    assert caught.value.status == status
    assert caught.value.host == host
    assert "reason from the server" in caught.value.reason


def close_mid_response(transport):
    transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
    transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_loopback_server_closes_mid_response(tcp):
    host, _factory, transmitter = tcp([close_mid_response])
    with pytest.raises(RetriableError) as caught:
        yield transmitter.transmit(host, b"x")
    assert "inside the response body" in caught.value.reason


@pytest_twisted.inlineCallbacks
def test_loopback_server_closes_without_answer(tcp):
    host, _factory, transmitter = tcp([lambda transport: transport.loseConnection()])
    with pytest.raises(RetriableError) as caught:
        yield transmitter.transmit(host, b"x")
    assert "before any response byte" in caught.value.reason


@pytest_twisted.inlineCallbacks
def test_loopback_idle_close_race_retried(tcp):
    """The server answers, then drops the connection; the next request gets through."""

    host, factory, transmitter = tcp([OK, lambda transport: transport.abortConnection()])
    yield transmitter.transmit(host, b"one")
    yield transmitter.transmit(host, b"two")  # the server aborts it unanswered: retried
    assert [body for _, body in factory.requests] == [b"one", b"two", b"two"]
    assert len(factory.connections) == 2


@pytest_twisted.inlineCallbacks
def test_loopback_connection_refused(tcp):
    from twisted.internet import reactor

    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    host = Host("127.0.0.1", port.getHost().port)
    yield port.stopListening()
    transmitter = HttpTransmitter(
        reactor, lambda host: TCP4ClientEndpoint(reactor, host.host, host.port)
    )
    with pytest.raises(RetriableError) as caught:
        yield transmitter.transmit(host, b"x")
    assert caught.value.reason == "connection refused"
    assert caught.value.status is None


def chunked(transport):
    transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")


def until_close(transport):
    transport.write(b"HTTP/1.1 200 OK\r\n\r\nok")
    transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_loopback_chunked_response_keeps_the_connection(tcp):
    host, factory, transmitter = tcp([chunked, chunked])
    yield transmitter.transmit(host, b"one")
    yield transmitter.transmit(host, b"two")
    assert len(factory.connections) == 1


@pytest_twisted.inlineCallbacks
def test_loopback_until_close_response(tcp):
    host, factory, transmitter = tcp([until_close, until_close])
    yield transmitter.transmit(host, b"one")
    yield transmitter.transmit(host, b"two")
    assert len(factory.connections) == 2


@pytest_twisted.inlineCallbacks
def test_loopback_until_close_error_is_judged_on_the_whole_body(tcp):
    def refuse(transport):
        transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\nbad ndjson")
        transport.loseConnection()

    host, _factory, transmitter = tcp([refuse])
    with pytest.raises(TerminalError) as caught:
        yield transmitter.transmit(host, b"x")
    assert "bad ndjson" in caught.value.reason


# -- interoperability with twisted.web ------------------------------------------------------------


class Collect(resource.Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.bodies = []
        self.headers = []

    def render_POST(self, request):
        self.headers.append(dict(request.requestHeaders.getAllRawHeaders()))
        self.bodies.append(request.content.read())
        request.setHeader(b"content-type", b"text/plain")
        return b"ok"


@pytest_twisted.inlineCallbacks
def test_twisted_web_server_interoperates():
    from twisted.internet import reactor

    collect = Collect()
    site = server.Site(collect)
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    host = Host("127.0.0.1", port.getHost().port)
    transmitter = HttpTransmitter(
        reactor,
        lambda host: TCP4ClientEndpoint(reactor, host.host, host.port),
        username="u",
        password="p",
    )
    try:
        for _ in range(3):
            yield transmitter.transmit(host, transmitter.encode(EVENTS))
        assert [ndjson.decode(gzip.decompress(body)) for body in collect.bodies] == [EVENTS] * 3
        headers = collect.headers[0]
        assert headers[b"Content-Type"] == [b"application/x-ndjson"]
        assert headers[b"Content-Encoding"] == [b"gzip"]
        assert headers[b"Authorization"] == [b"Basic " + base64.b64encode(b"u:p")]
        assert transmitter.idle_connections(host) == 1  # one persistent connection for all
    finally:
        yield transmitter.close()
        yield port.stopListening()


# -- TLS comes from the caller's endpoint ---------------------------------------------------------


def self_signed(name: str):
    """A throwaway self-signed certificate and key for `name` (EC P-256, valid for a day)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ssl.PrivateCertificate.loadPEM(pem)


@pytest.fixture(scope="module")
def tls_server_cert():
    return self_signed("localhost")


# Twisted's CertificateOptions still hands pyOpenSSL objects to OpenSSL; not ours to fix.
@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")
@pytest.mark.parametrize("trusted", [True, False])
@pytest_twisted.inlineCallbacks
def test_tls_endpoint_from_the_caller(tls_server_cert, trusted):
    from twisted.internet import reactor

    factory = RecordingFactory()
    port = reactor.listenSSL(0, factory, tls_server_cert.options(), interface="127.0.0.1")
    host = Host("127.0.0.1", port.getHost().port)
    trust = tls_server_cert if trusted else self_signed("localhost")

    def endpoint_factory(host):
        options = ssl.optionsForClientTLS("localhost", trustRoot=trust)
        return wrapClientTLS(options, TCP4ClientEndpoint(reactor, host.host, host.port))

    transmitter = HttpTransmitter(reactor, endpoint_factory)
    try:
        d = transmitter.transmit(host, transmitter.encode(EVENTS))
        if trusted:
            yield d
            yield transmitter.transmit(host, transmitter.encode(EVENTS))
            assert [gzip.decompress(body) for _, body in factory.requests] == [
                ndjson.encode(EVENTS)
            ] * 2
            assert len(factory.connections) == 1
        else:
            with pytest.raises(RetriableError) as caught:
                yield d
            assert caught.value.reason == "TLS handshake failed: certificate verify failed"
            assert factory.requests == []
    finally:
        yield transmitter.close()
        for conn in factory.connections:
            conn.transport.loseConnection()
        yield port.stopListening()


@pytest.mark.parametrize(
    "answer",
    [
        response(200, extra=b"Connection: close\r\n"),
        OK + b"HTTP/1.1 200 OK\r\n",  # bytes after the response
    ],
)
def test_a_known_answer_is_judged_as_the_first_time_and_forbidding_answers_are_not_kept(
    transmitter, endpoint, answer
):
    """The answer that arrived whole is reused for equal bytes: same verdict, same reuse."""
    refused = response(400, b"no")
    for data, expected in [
        (OK, None),
        (OK, None),
        (refused, TerminalError),
        (refused, TerminalError),
    ]:
        d = transmitter.transmit(HOST, b"body")
        endpoint.protocols[-1].dataReceived(data)
        result = outcome(d)
        assert result is None if expected is None else isinstance(result, expected)
    assert "HTTP 400 Whatever: no" in str(result)
    assert len(endpoint.protocols) == 1
    for _ in range(2):  # never kept: each closes its connection
        d = transmitter.transmit(HOST, b"body")
        conn = endpoint.protocols[-1]
        conn.dataReceived(answer)
        assert outcome(d) is None
        assert conn.transport.disconnecting
    assert len(endpoint.protocols) == 2
    d = transmitter.transmit(HOST, b"body")  # a known answer split over reads is parsed
    for byte in [OK[i : i + 1] for i in range(len(OK))]:
        endpoint.protocols[-1].dataReceived(byte)
    assert outcome(d) is None
    assert transmitter.idle_connections(HOST) == 1
