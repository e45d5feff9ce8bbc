"""The native input's protocol, driven by StringTransport and a Clock: statuses, order, flow, time.

The conformance tests over real loopback sockets are in test_native_conformance.py.
"""

from __future__ import annotations

import base64
import gzip
import zlib

import orjson
import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from twisted_logstash.codecs import compression
from twisted_logstash.codecs.events import Decorations
from twisted_logstash.errors import SinkUnavailable
from twisted_logstash.interfaces import IEventSink
from twisted_logstash.pipeline.output import OutputStopped
from twisted_logstash.wires.native.http import ResponseParser
from twisted_logstash.wires.native.server import HttpInputFactory

OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nAccept: application/x-ndjson\r\n"
    b"Content-Length: 2\r\n\r\nok"
)
EPOCH = "1970-01-01T00:00:00.000Z"


@implementer(IEventSink)
class HeldSink:
    """A sink whose Deferreds the test fires."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[dict], defer.Deferred]] = []

    def deliver(self, events):
        d: defer.Deferred = defer.Deferred()
        self.batches.append((events, d))
        return d

    def events(self) -> list[dict]:
        return [event for batch, _ in self.batches for event in batch]


@implementer(IEventSink)
class RaisingSink:
    def deliver(self, events):
        raise RuntimeError("disk on fire")


class Harness:
    def __init__(self, sink=None, **kwargs) -> None:
        self.sink = sink if sink is not None else HeldSink()
        self.clock = Clock()
        self.factory = HttpInputFactory(self.sink, self.clock, **kwargs)
        self.transports: list[StringTransport] = []
        self.protocols: list = []
        self.proto, self.transport = self.connect()

    def connect(self):
        addr = IPv4Address("TCP", "127.0.0.1", 40000 + len(self.protocols))
        proto = self.factory.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        proto.makeConnection(transport)
        self.protocols.append(proto)
        self.transports.append(transport)
        return proto, transport

    def send(self, data: bytes, proto=None) -> None:
        (proto or self.proto).dataReceived(data)

    def take(self, transport=None) -> bytes:
        transport = transport or self.transport
        value = transport.value()
        transport.clear()
        return value

    def lose(self, proto=None) -> None:
        proto = proto or self.proto
        proto.connectionLost(None)


def request(
    body: bytes = b"",
    *,
    method: bytes = b"POST",
    encoding: bytes | None = None,
    headers: bytes = b"",
    version: bytes = b"HTTP/1.1",
) -> bytes:
    head = method + b" / " + version + b"\r\nHost: 127.0.0.1:9800\r\n"
    if encoding is not None:
        head += b"Content-Encoding: " + encoding + b"\r\n"
    return head + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body


def ndjson(*events: dict) -> bytes:
    return b"".join(orjson.dumps(event) + b"\n" for event in events)


def parse(data: bytes):
    response = ResponseParser().feed(data)
    assert response is not None, data
    return response


def fire_all(sink: HeldSink) -> None:
    for _, d in sink.batches:
        if not d.called:
            d.callback(None)


# -- success ------------------------------------------------------------------------------------


def test_gzip_batch_delivered_then_exactly_ok():
    h = Harness()
    h.send(request(gzip.compress(ndjson({"message": "a"}, {"message": "b"})), encoding=b"gzip"))
    assert h.take() == b"", "nothing may be answered before the sink confirmed"
    assert h.sink.events() == [
        {"message": "a", "@timestamp": EPOCH, "@version": "1"},
        {"message": "b", "@timestamp": EPOCH, "@version": "1"},
    ]
    h.sink.batches[0][1].callback(None)
    assert h.take() == OK
    assert not h.transport.disconnecting


def test_logstash_array_body_and_own_timestamps_kept():
    events = [{"@timestamp": "2026-11-23T10:00:00.123Z", "@version": "1", "n": i} for i in range(3)]
    h = Harness()
    h.send(request(gzip.compress(orjson.dumps(events)), encoding=b"gzip"))
    assert h.sink.events() == events


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "snappy", "identity"])
def test_every_content_encoding(encoding):
    body = ndjson({"n": 1}, {"n": 2})
    h = Harness()
    name = None if encoding == "identity" else encoding.encode()
    h.send(request(compression.compress(body, encoding), encoding=name))
    assert [e["n"] for e in h.sink.events()] == [1, 2]


@pytest.mark.parametrize("name", [b"GZIP", b"x-gzip", b"identity", b""])
def test_content_encoding_spellings(name):
    body = ndjson({"n": 1})
    data = gzip.compress(body) if b"gzip" in name.lower() else body
    h = Harness()
    h.send(request(data, encoding=name))
    assert h.sink.events()[0]["n"] == 1


def test_plain_body_with_parse_failures_is_not_dropped():
    h = Harness()
    h.send(request(b'{"a":1}\nnot json\n\n[{"b":2},{"c":3}]\n42'))
    events = h.sink.events()
    assert [events[0].get("a"), events[2].get("b"), events[3].get("c")] == [1, 2, 3]
    assert events[1]["message"] == "not json"
    assert events[1]["tags"] == ["_jsonparsefailure"]
    assert events[4]["message"] == "42"


def test_decorations_applied():
    decorations = Decorations(type="relay", tags=("from-edge",), add_field=(("dc", "eu"),))
    h = Harness(decorations=decorations)
    h.send(request(ndjson({"message": "x", "tags": ["t"]})))
    event = h.sink.events()[0]
    assert event["type"] == "relay"
    assert event["tags"] == ["t", "from-edge"]
    assert event["dc"] == "eu"


def test_empty_body_answers_ok_without_sink():
    h = Harness()
    h.send(request(b""))
    assert h.take() == OK
    h.send(request(b"\n\n"))
    assert h.take() == OK
    assert h.sink.batches == []


def test_put_and_any_path_accepted():
    h = Harness()
    h.send(b'PUT /some/path?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\n{"a":1}\n')
    assert h.sink.events()[0]["a"] == 1


def test_chunked_body():
    body = gzip.compress(ndjson({"n": 1}, {"n": 2}))
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in (body[:7], body[7:]))
    h = Harness()
    h.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Encoding: gzip\r\n")
    h.send(b"Transfer-Encoding: chunked\r\n\r\n" + chunks[:5])
    h.send(chunks[5:] + b"0\r\nX-Trailer: y\r\n\r\n")
    assert [e["n"] for e in h.sink.events()] == [1, 2]
    fire_all(h.sink)
    assert h.take() == OK


def test_one_byte_at_a_time():
    h = Harness()
    for byte in request(gzip.compress(ndjson({"n": 1})), encoding=b"gzip"):
        h.send(bytes([byte]))
    assert h.sink.events()[0]["n"] == 1


# -- keep-alive, pipelining, flow control ------------------------------------------------------


def test_pipelined_requests_answered_in_order_and_transport_paused():
    h = Harness()
    h.send(request(ndjson({"n": 1})) + request(ndjson({"n": 2})) + request(ndjson({"n": 3})))
    assert len(h.sink.batches) == 1, "the next request waits until the first is answered"
    assert h.transport.producerState == "paused"
    h.sink.batches[0][1].callback(None)
    assert h.take() == OK
    assert len(h.sink.batches) == 2
    assert h.transport.producerState == "paused"
    h.sink.batches[1][1].callback(None)
    h.sink.batches[2][1].callback(None)
    assert h.take() == OK + OK
    assert h.transport.producerState == "producing"
    assert [e["n"] for e in h.sink.events()] == [1, 2, 3]


def test_sink_that_confirms_at_once_does_not_pause():
    class Quick:
        def deliver(self, events):
            return defer.succeed(None)

    h = Harness(Quick())
    h.send(request(ndjson({"n": 1})) + request(ndjson({"n": 2})))
    assert h.take() == OK + OK
    assert h.transport.producerState == "producing"


def test_error_answer_in_order_after_a_waiting_request():
    h = Harness()
    h.send(request(ndjson({"n": 1})) + request(b"x", method=b"GET"))
    assert h.take() == b""
    fire_all(h.sink)
    data = h.take()
    assert data.startswith(OK)
    second = parse(data[len(OK) :])
    assert second.status == 405
    assert second.header("allow") == "POST, PUT"
    assert not h.transport.disconnecting


def test_head_is_405_and_close():
    h = Harness()
    h.send(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    data = h.take()
    assert data.startswith(b"HTTP/1.1 405 ")
    assert b"Connection: close" in data
    assert h.transport.disconnecting


def test_http10_closes_unless_keep_alive_asked():
    h = Harness()
    h.send(request(ndjson({"n": 1}), version=b"HTTP/1.0"))
    fire_all(h.sink)
    response = parse(h.take())
    assert response.header("connection") == "close"
    assert h.transport.disconnecting

    h = Harness()
    h.send(request(ndjson({"n": 1}), version=b"HTTP/1.0", headers=b"Connection: keep-alive\r\n"))
    fire_all(h.sink)
    assert parse(h.take()).header("connection") == "keep-alive"
    assert not h.transport.disconnecting


def test_connection_close_honoured():
    h = Harness()
    h.send(request(ndjson({"n": 1}), headers=b"Connection: close\r\n") + request(b"ignored"))
    fire_all(h.sink)
    assert parse(h.take()).header("connection") == "close"
    assert h.transport.disconnecting
    assert len(h.sink.batches) == 1


# -- 100-continue ------------------------------------------------------------------------------


def test_expect_continue_answered_before_the_body():
    h = Harness()
    body = ndjson({"n": 1})
    full = request(body, headers=b"Expect: 100-continue\r\n")
    h.send(full[: -len(body)])
    assert h.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    h.send(body)
    fire_all(h.sink)
    assert h.take() == OK


def test_expect_continue_refused_first_with_401_then_closed():
    h = Harness(username="u", password="p")
    h.send(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    data = h.take()
    assert b"100 Continue" not in data
    assert parse(data).status == 401
    assert h.transport.disconnecting


def test_expect_continue_refused_first_with_413_then_closed():
    h = Harness(max_content_length=10)
    h.send(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
    data = h.take()
    assert b"100 Continue" not in data
    assert parse(data).status == 413
    assert h.transport.disconnecting


def test_expect_continue_refused_first_with_429_then_closed():
    h = Harness(max_pending_requests=1)
    h.send(request(ndjson({"n": 1})))
    other, transport = h.connect()
    h.send(request(ndjson({"n": 2}), headers=b"Expect: 100-continue\r\n")[:-8], other)
    data = h.take(transport)
    assert b"100 Continue" not in data
    assert parse(data).status == 429
    assert transport.disconnecting


# -- statuses ----------------------------------------------------------------------------------


def basic(user: str, password: str) -> bytes:
    return b"Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()) + b"\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        b"",
        basic("logstash", "wrong"),
        basic("other", "secret"),
        b"Authorization: Bearer abc\r\n",
        b"Authorization: Basic\r\n",
        b"Authorization: Basic !!notbase64\r\n",
    ],
)
def test_missing_or_wrong_credentials_are_401(headers):
    h = Harness(username="logstash", password="secret")
    h.send(request(ndjson({"n": 1}), headers=headers))
    response = parse(h.take())
    assert response.status == 401
    assert response.header("www-authenticate") == 'Basic realm="Logstash HTTP Input"'
    assert h.sink.batches == []
    assert not h.transport.disconnecting, "the body was read and dropped: the connection stays"
    h.send(request(ndjson({"n": 1}), headers=basic("logstash", "secret")))
    fire_all(h.sink)
    assert h.take() == OK


@pytest.mark.parametrize("scheme", [b"Basic", b"basic"])
def test_right_credentials_accepted(scheme):
    h = Harness(username="logstash", password="sécret")
    token = base64.b64encode("logstash:sécret".encode())
    h.send(request(ndjson({"n": 1}), headers=b"Authorization: " + scheme + b" " + token + b"\r\n"))
    fire_all(h.sink)
    assert h.take() == OK


def test_username_without_password_is_a_configuration_error():
    from twisted_logstash.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        HttpInputFactory(HeldSink(), Clock(), username="u")


def test_declared_length_over_limit_is_413_and_close():
    h = Harness(max_content_length=100)
    h.send(request(b"x" * 101))
    response = parse(h.take())
    assert response.status == 413
    assert response.header("connection") == "close"
    assert h.transport.disconnecting
    assert h.sink.batches == []


def test_chunked_body_over_limit_is_413_while_streaming():
    h = Harness(max_content_length=100)
    h.send(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    h.send(b"3c\r\n" + b"x" * 60 + b"\r\n")
    assert h.take() == b""
    h.send(b"3c\r\n")
    response = parse(h.take())
    assert response.status == 413
    assert h.transport.disconnecting
    h.send(b"x" * 60)  # what still comes is dropped
    assert h.take() == b""
    assert h.sink.batches == []


def test_zip_bomb_is_413_not_memory():
    bomb = gzip.compress(b"\n" * (20 * 1024 * 1024))
    h = Harness(max_content_length=1024 * 1024)
    h.send(request(bomb, encoding=b"gzip"))
    response = parse(h.take())
    assert response.status == 413
    assert h.sink.batches == []
    assert not h.transport.disconnecting, "the framing is intact: the connection stays usable"
    h.send(request(ndjson({"n": 1})))
    assert h.sink.events()[0]["n"] == 1


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (b"gzip", b"not gzip at all"),
        (b"gzip", gzip.compress(b'{"a":1}\n')[:-6]),
        (b"deflate", b"\x00\x01garbage"),
        (b"snappy", b"garbage"),
    ],
)
def test_body_that_does_not_decompress_is_400_with_reason(encoding, body):
    h = Harness()
    h.send(request(body, encoding=encoding))
    response = parse(h.take())
    assert response.status == 400
    assert b"decompress" in response.body
    assert h.sink.batches == []
    assert not h.transport.disconnecting


def test_deflate_raw_zlib_stream_accepted():
    h = Harness()
    h.send(request(zlib.compress(ndjson({"n": 7})), encoding=b"deflate"))
    assert h.sink.events()[0]["n"] == 7


def test_unknown_content_encoding_is_415():
    h = Harness()
    h.send(request(b"abc", encoding=b"br"))
    assert parse(h.take()).status == 415
    assert h.sink.batches == []


def test_overload_is_429_across_connections():
    h = Harness(max_pending_requests=2)
    second, _ = h.connect()
    third, third_transport = h.connect()
    h.send(request(ndjson({"n": 1})))
    h.send(request(ndjson({"n": 2})), second)
    assert h.factory.pending == 2
    h.send(request(ndjson({"n": 3})), third)
    response = parse(h.take(third_transport))
    assert response.status == 429
    assert not third_transport.disconnecting
    h.sink.batches[0][1].callback(None)
    assert h.factory.pending == 1
    h.send(request(ndjson({"n": 4})), third)
    assert [e["n"] for e in h.sink.events()] == [1, 2, 4]


def test_sink_failure_is_500_and_connection_kept():
    h = Harness()
    h.send(request(ndjson({"n": 1})))
    h.sink.batches[0][1].errback(RuntimeError("queue closed"))
    response = parse(h.take())
    assert response.status == 500
    assert not h.transport.disconnecting
    assert h.factory.pending == 0


def test_a_sink_unavailable_for_now_is_503_and_connection_kept():
    h = Harness()
    h.send(request(ndjson({"n": 1})))
    h.sink.batches[0][1].errback(SinkUnavailable("the relay's output is stopping"))
    response = parse(h.take())
    assert response.status == 503
    assert not h.transport.disconnecting
    assert h.factory.pending == 0


def test_a_stopped_output_as_sink_is_503():
    assert issubclass(OutputStopped, SinkUnavailable)


def test_sink_raising_is_500():
    h = Harness(RaisingSink())
    h.send(request(ndjson({"n": 1})))
    assert parse(h.take()).status == 500


@pytest.mark.parametrize(
    "data",
    [
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"garbage\r\n\r\n",
    ],
)
def test_framing_errors_are_400_and_close(data):
    h = Harness()
    h.send(data)
    response = parse(h.take())
    assert response.status == 400
    assert response.header("connection") == "close"
    assert h.transport.disconnecting


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"POST / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 70000, 431),
        (b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 42\r\n\r\n", 417),
    ],
)
def test_other_protocol_errors(data, status):
    h = Harness()
    h.send(data)
    assert parse(h.take()).status == status
    assert h.transport.disconnecting


# -- time --------------------------------------------------------------------------------------


def test_idle_connection_closed():
    h = Harness(idle_timeout=10.0)
    h.clock.advance(9.0)
    assert not h.transport.disconnecting
    h.clock.advance(1.5)
    assert h.transport.disconnecting
    assert not h.transport.disconnected  # closed politely, not aborted


def test_idle_timer_restarts_after_each_answer():
    h = Harness(idle_timeout=10.0)
    h.clock.advance(8.0)
    h.send(request(ndjson({"n": 1})))
    fire_all(h.sink)
    h.clock.advance(8.0)
    assert not h.transport.disconnecting
    h.clock.advance(3.0)
    assert h.transport.disconnecting


def test_slow_head_dropped():
    h = Harness(header_timeout=5.0, idle_timeout=100.0)
    for _ in range(4):
        h.send(b"X")  # a slowloris trickle
        h.clock.advance(1.0)
    assert not h.transport.disconnecting
    h.clock.advance(2.0)
    assert h.transport.disconnected  # aborted


def test_slow_body_dropped():
    h = Harness(body_timeout=5.0, header_timeout=100.0, idle_timeout=100.0)
    h.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc")
    h.clock.advance(4.0)
    h.send(b"def")
    assert not h.transport.disconnecting
    h.clock.advance(1.5)
    assert h.transport.disconnected
    assert h.sink.batches == []


def test_no_timeout_while_the_sink_holds_the_batch():
    h = Harness(header_timeout=1.0, body_timeout=1.0, idle_timeout=1.0, sink_timeout=None)
    h.send(request(ndjson({"n": 1})))
    h.clock.advance(1000.0)
    assert not h.transport.disconnecting
    fire_all(h.sink)
    assert h.take() == OK


def test_lingering_close_ends_by_itself():
    h = Harness(max_content_length=1)
    h.send(request(b"xx"))
    assert h.transport.disconnecting and not h.transport.disconnected
    h.clock.advance(10.0)
    assert h.transport.disconnected


def test_sweep_stops_with_the_last_connection():
    h = Harness()
    assert h.clock.getDelayedCalls()
    h.lose()
    assert h.factory.connections == 0
    assert h.clock.getDelayedCalls() == []


# -- limits on connections, draining -------------------------------------------------------------


def test_connections_over_the_cap_get_503():
    h = Harness(max_connections=1)
    extra = h.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    transport = StringTransport()
    extra.makeConnection(transport)
    response = parse(transport.value())
    assert response.status == 503
    assert transport.disconnecting
    assert h.factory.connections == 1


def test_drain_closes_idle_and_waits_for_requests_in_flight():
    h = Harness()
    busy, busy_transport = h.connect()
    h.send(request(ndjson({"n": 1})), busy)
    drained = h.factory.drain()
    assert h.transport.disconnecting, "an idle connection closes at once"
    h.lose()
    assert not drained.called
    h.sink.batches[0][1].callback(None)
    response = parse(busy_transport.value())
    assert response.status == 200
    assert response.header("connection") == "close"
    assert not drained.called
    h.lose(busy)
    assert drained.called


def test_drain_refuses_new_requests_with_503():
    h = Harness()
    h.send(b"POST / HTTP/1.1\r\nHost: h\r\n")  # a head under way keeps the connection open
    drained = h.factory.drain()
    assert not h.transport.disconnecting
    h.send(b"Content-Length: 0\r\n\r\n")
    assert parse(h.take()).status == 503
    h.lose()
    assert drained.called


def test_drain_waits_for_the_sink_after_the_client_left():
    h = Harness()
    h.send(request(ndjson({"n": 1})))
    drained = h.factory.drain()
    h.lose()
    assert not drained.called
    h.sink.batches[0][1].callback(None)
    assert drained.called
    assert h.take() == b""


# -- a TLS client on this plain port --------------------------------------------------------------


def client_hello() -> bytes:
    """The first bytes a real TLS client (OpenSSL, TLS 1.2 to 1.3) sends."""
    from OpenSSL import SSL

    connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    connection.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        connection.do_handshake()
    return connection.bio_read(65536)


def _warnings(events) -> list[str]:
    from twisted.logger import LogLevel, formatEvent

    return [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]


@pytest.mark.parametrize("pieces", [1, 3], ids=["whole", "byte-by-byte-start"])
def test_tls_handshake_on_the_plain_port_is_answered_400_at_once(pieces):
    """No wait for the header timeout: a plain-text 400 naming the likely mistake, then close."""
    from twisted.logger import capturedLogs

    from twisted_logstash.wires.native.server import TLS_ON_PLAIN_PORT

    hello = client_hello()
    h = Harness()
    with capturedLogs() as events:
        if pieces == 1:
            h.send(hello)
        else:
            h.send(hello[:1])
            h.send(hello[1:2])
            assert h.transport.value() == b""  # two bytes do not tell yet
            h.send(hello[2:])
    response = parse(h.take())
    assert response.status == 400
    assert response.body == TLS_ON_PLAIN_PORT.encode() + b"\n"
    assert response.header("connection") == "close"
    assert h.transport.disconnecting
    assert _warnings(events) == [
        "127.0.0.1:40000 sent a TLS handshake to this plain HTTP port (is TLS off on this input "
        "but not on the sender?); answered 400 and closing"
    ]
    h.send(b"\x16\x03\x01more handshake bytes")  # dropped while lingering
    assert h.take() == b""
    assert h.sink.batches == []


@pytest.mark.parametrize(
    "start",
    [b"\x16\x05\x01\r\n\r\n", b"\x17\x03\x01\r\n\r\n", b"\x16P / HTTP/1.1\r\n\r\n"],
    ids=["bad-version", "not-handshake", "16-then-text"],
)
def test_only_a_tls_handshake_record_is_taken_for_tls(start):
    """Other binary starts are what they were: an HTTP parse error."""
    from twisted.logger import capturedLogs

    from twisted_logstash.wires.native.server import TLS_ON_PLAIN_PORT

    h = Harness()
    with capturedLogs() as events:
        h.send(start)
    response = parse(h.take())
    assert response.status == 400
    assert TLS_ON_PLAIN_PORT.encode() not in response.body
    assert _warnings(events) == []
