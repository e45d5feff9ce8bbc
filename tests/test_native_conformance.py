"""The native input over real loopback sockets, fed the exact bytes a Logstash ``logstash`` output
sends (Manticore, i.e. Apache HttpClient 4): every status and every event received.

Waits are Deferreds that fire on bytes or on a close; nothing sleeps.
"""

from __future__ import annotations

import gzip

import pytest
import pytest_twisted
from support_http import TIMEOUT, connect, listen, logstash_body, manticore_request
from twisted.internet import defer, reactor

from twisted_logstash.pipeline.sinks import CallableSink
from twisted_logstash.wires.native.server import HttpInputFactory

OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nAccept: application/x-ndjson\r\n"
    b"Content-Length: 2\r\n\r\nok"
)


def batch(start: int, count: int = 125) -> list[dict]:
    """Events as the Logstash output serializes them: whole events, with their own stamps."""
    return [
        {
            "@timestamp": "2026-11-23T10:00:00.123Z",
            "@version": "1",
            "message": f"line {n}",
            "host": {"name": "edge-1"},
            "seq": n,
        }
        for n in range(start, start + count)
    ]


class Holder:
    """A sink function that holds every batch until the test releases it."""

    def __init__(self) -> None:
        self.held: list[defer.Deferred] = []
        self._arrivals: list[defer.Deferred] = []

    def __call__(self, events) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.held.append(d)
        arrivals, self._arrivals = self._arrivals, []
        for arrival in arrivals:
            arrival.callback(None)
        return d

    def arrived(self, count: int) -> defer.Deferred:
        """Fires once ``count`` batches arrived."""
        if len(self.held) >= count:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._arrivals.append(d)
        return d.addTimeout(TIMEOUT, reactor).addCallback(lambda _: self.arrived(count))


class Server:
    """A factory listening on 127.0.0.1 with a CallableSink that records every batch."""

    def __init__(self, fn=None, **kwargs) -> None:
        self.batches: list[list[dict]] = []

        def record(events):
            self.batches.append(events)
            return fn(events) if fn is not None else None

        self.factory = HttpInputFactory(CallableSink(record), reactor, **kwargs)
        self.port = None

    @defer.inlineCallbacks
    def start(self):
        self.port = yield listen(self.factory)
        return self

    @property
    def number(self) -> int:
        return self.port.getHost().port

    def events(self) -> list[dict]:
        return [event for events in self.batches for event in events]

    @defer.inlineCallbacks
    def stop(self, *clients):
        for client in clients:
            if not client.lost:
                client.transport.loseConnection()
                yield client.wait_closed()
        yield self.port.stopListening()
        yield self.factory.drain()


@pytest_twisted.inlineCallbacks
def test_logstash_output_request_gets_exactly_ok_and_every_event():
    server = yield Server().start()
    client = yield connect(server.number)
    events = batch(0)
    yield client.request(manticore_request(logstash_body(events), port=server.number))
    assert client.received == OK
    assert server.events() == events
    yield server.stop(client)


@pytest_twisted.inlineCallbacks
def test_keep_alive_several_requests_on_one_connection():
    server = yield Server().start()
    client = yield connect(server.number)
    for n in range(5):
        response = yield client.request(
            manticore_request(logstash_body(batch(n * 125)), port=server.number)
        )
        assert response.status == 200
        assert server.factory.connections == 1
    assert client.received == OK * 5
    assert [event["seq"] for event in server.events()] == list(range(625))
    yield server.stop(client)


@pytest_twisted.inlineCallbacks
def test_pipelined_requests_answered_in_order():
    holder = Holder()
    server = yield Server(holder).start()
    client = yield connect(server.number)
    client.send(b"".join(manticore_request(logstash_body(batch(n * 10, 10))) for n in range(3)))
    for expected in range(1, 4):
        yield holder.arrived(expected)
        # the next request is read only once the previous one was answered
        assert len(holder.held) == expected
        assert len(client.responses) == expected - 1
        holder.held[-1].callback(None)
        yield client.wait_responses(expected)
    assert client.received == OK * 3
    assert [event["seq"] for event in server.events()] == list(range(30))
    yield server.stop(client)


@pytest_twisted.inlineCallbacks
def test_basic_auth():
    server = yield Server(username="logstash", password="s3cret").start()
    body = logstash_body(batch(0, 3))
    right = manticore_request(body, username="logstash", password="s3cret")
    client = yield connect(server.number)
    assert (yield client.request(right)).status == 200
    assert (yield client.request(right)).status == 200

    for wrong in (
        manticore_request(body),
        manticore_request(body, username="logstash", password="guess"),
    ):
        response = yield client.request(wrong)
        assert response.status == 401
        assert response.header("www-authenticate") == 'Basic realm="Logstash HTTP Input"'
    assert (yield client.request(right)).status == 200, "the connection stays usable"
    assert len(server.events()) == 9
    yield server.stop(client)


@pytest_twisted.inlineCallbacks
def test_body_over_the_limit_is_413_and_the_client_reads_it():
    server = yield Server(max_content_length=64 * 1024).start()
    client = yield connect(server.number)
    big = b"x" * (2 * 1024 * 1024)  # sent whole, as Apache HttpClient does before reading
    response = yield client.request(manticore_request(big, encoding=None))
    assert response.status == 413
    assert response.header("connection") == "close"
    yield client.wait_closed()
    assert server.batches == []
    yield server.stop()


@pytest_twisted.inlineCallbacks
def test_zip_bomb_is_413():
    server = yield Server(max_content_length=1024 * 1024).start()
    client = yield connect(server.number)
    bomb = gzip.compress(b" " * (16 * 1024 * 1024), compresslevel=9)
    response = yield client.request(manticore_request(bomb))
    assert response.status == 413
    response = yield client.request(manticore_request(logstash_body(batch(0, 2))))
    assert response.status == 200, "the connection stays usable"
    yield server.stop(client)


@pytest_twisted.inlineCallbacks
def test_overload_is_429():
    holder = Holder()
    server = yield Server(holder, max_pending_requests=1).start()
    first = yield connect(server.number)
    second = yield connect(server.number)
    first.send(manticore_request(logstash_body(batch(0, 1))))
    yield holder.arrived(1)
    response = yield second.request(manticore_request(logstash_body(batch(1, 1))))
    assert response.status == 429
    holder.held[0].callback(None)
    assert (yield first.wait_responses(1))[0].status == 200
    second_batch = second.request(manticore_request(logstash_body(batch(2, 1))))
    yield holder.arrived(2)
    holder.held[1].callback(None)
    assert (yield second_batch).status == 200
    assert [event["seq"] for event in server.events()] == [0, 2]
    yield server.stop(first, second)


@pytest_twisted.inlineCallbacks
def test_sink_failure_is_500():
    def fail(events):
        raise OSError("disk full")

    server = yield Server(fail).start()
    client = yield connect(server.number)
    response = yield client.request(manticore_request(logstash_body(batch(0, 2))))
    assert response.status == 500
    yield server.stop(client)


@pytest_twisted.inlineCallbacks
def test_body_that_does_not_decompress_is_400():
    server = yield Server().start()
    client = yield connect(server.number)
    response = yield client.request(manticore_request(b"\x1f\x8b not really gzip"))
    assert response.status == 400
    assert b"decompress" in response.body
    yield server.stop(client)


@pytest_twisted.inlineCallbacks
def test_chunked_request_body():
    server = yield Server().start()
    client = yield connect(server.number)
    body = logstash_body(batch(0, 50))
    head = (
        b"POST /any/path HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
        b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    response = yield client.request(head + chunks + b"0\r\n\r\n")
    assert response.status == 200
    assert [event["seq"] for event in server.events()] == list(range(50))
    yield server.stop(client)


@pytest_twisted.inlineCallbacks
def test_expect_100_continue():
    server = yield Server().start()
    client = yield connect(server.number)
    body = logstash_body(batch(0, 5))
    full = manticore_request(body, extra=b"Expect: 100-continue\r\n")
    client.send(full[: -len(body)])
    yield client.wait_bytes(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert server.batches == []
    client.send(body)
    response = (yield client.wait_responses(1))[0]
    assert response.status == 200
    assert len(server.events()) == 5
    yield server.stop(client)


@pytest_twisted.inlineCallbacks
def test_ndjson_body_from_a_twisted_logstash_output():
    server = yield Server().start()
    client = yield connect(server.number)
    lines = b'{"a":1}\n{"a":2}\nnot json\n'
    response = yield client.request(manticore_request(gzip.compress(lines)))
    assert response.status == 200
    events = server.events()
    assert [event.get("a") for event in events] == [1, 2, None]
    assert events[2]["tags"] == ["_jsonparsefailure"]
    assert all(event["@version"] == "1" and event["@timestamp"] for event in events)
    yield server.stop(client)


@pytest_twisted.inlineCallbacks
def test_slowloris_is_dropped():
    server = yield Server(header_timeout=0.2, idle_timeout=0.2).start()
    client = yield connect(server.number)
    client.send(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
    yield client.wait_closed()
    assert client.received == b""
    yield server.stop()


@pytest.mark.parametrize("connections", [3])
@pytest_twisted.inlineCallbacks
def test_connections_over_the_cap_get_503(connections):
    server = yield Server(max_connections=connections).start()
    clients = []
    for _ in range(connections):
        client = yield connect(server.number)
        clients.append(client)
    for client in clients:  # each connection is open on the server side once it answered
        assert (yield client.request(manticore_request(b"", encoding=None))).status == 200
    extra = yield connect(server.number)
    yield extra.wait_closed()
    assert extra.received.startswith(b"HTTP/1.1 503 ")
    response = yield clients[0].request(manticore_request(logstash_body(batch(0, 1))))
    assert response.status == 200
    yield server.stop(*clients)
