"""Memory bounded by bytes on the inputs, and the stalls that end (issue 11), on a Clock.

Each test reproduces an attack of the issue and asserts on the bytes the code accounts (the
exchanges' ``held``, the factory's sum, the batches' sizes), not on RSS: bench/memory.py measures
the RSS of the same attacks on a real process.
"""

from __future__ import annotations

import base64
import gzip

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from zope.interface import implementer

from twisted_logstash.codecs import compression, ndjson
from twisted_logstash.interfaces import IEventSink
from twisted_logstash.wires.native import server
from twisted_logstash.wires.native.http import ResponseParser
from twisted_logstash.wires.native.server import STEP, HttpInputFactory, event_bytes

MIB = 1024 * 1024
ONE_STEP = event_bytes(2 * STEP, 2 * STEP // 3 + 1)  # the most one step of decoding adds


@implementer(IEventSink)
class HeldSink:
    """A sink whose Deferreds the test fires."""

    def __init__(self) -> None:
        self.batches: list[list[dict]] = []
        self.held: list[defer.Deferred] = []

    def deliver(self, events):
        self.batches.append(events)
        d: defer.Deferred = defer.Deferred()
        self.held.append(d)
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d in held:
            d.callback(None)

    @property
    def events(self) -> int:
        return sum(len(b) for b in self.batches)


class BufferingTransport(StringTransport):
    """A StringTransport that, like Twisted's TCP transport, pauses its registered streaming
    producer when more than ``buffer`` bytes wait to be sent, and resumes it once they went."""

    buffer = 64 * 1024

    def write(self, data: bytes) -> None:
        super().write(data)
        over = len(self.value()) > self.buffer
        if over and self.producer is not None and not getattr(self, "writes_paused", False):
            self.writes_paused = True
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        """The peer read everything."""
        data = self.value()
        self.clear()
        if getattr(self, "writes_paused", False):
            self.writes_paused = False
            self.producer.resumeProducing()
        return data


def connect(factory, n: int = 0, transport_class=StringTransport):
    addr = IPv4Address("TCP", "127.0.0.1", 40000 + n)
    proto = factory.buildProtocol(addr)
    transport = transport_class(peerAddress=addr)
    proto.makeConnection(transport)
    return proto, transport


def statuses(data: bytes) -> list[int]:
    found = []
    while data:
        parser = ResponseParser()
        response = parser.feed(data)
        assert response is not None, data[:200]
        found.append(response.status)
        data = parser.leftover
    return found


def gzip_request(body: bytes, extra: bytes = b"") -> bytes:
    compressed = gzip.compress(body, 9)
    return (
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Encoding: gzip\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(compressed)
        + compressed
    )


# -- 1. a body is inflated and decoded a step at a time, its events counted ------------------------


def test_a_gzip_flood_of_empty_objects_is_decoded_in_batches_bounded_by_bytes():
    """100 KiB of gzip that inflated to 105 MB of ``{}`` lines took the input to 65 MB per
    inflated MB (here 6 MB, two million events); now the events go to the sink in batches of at most
    max_batch_bytes, and the input never holds more than its budget and one step."""
    lines = 2_000_000
    budget = 16 * MIB
    sink = HeldSink()
    factory = HttpInputFactory(sink, Clock(), max_held_bytes=budget)
    proto, transport = connect(factory)
    request = gzip_request(b"{}\n" * lines)
    proto.dataReceived(request)
    batch_bytes = factory.settings.max_batch_bytes
    assert batch_bytes == budget // 16
    peak = factory.held
    while sink.held:
        assert factory.held <= budget + ONE_STEP + batch_bytes
        peak = max(peak, factory.held)
        last = len(sink.batches[-1])
        assert event_bytes(3 * last, last) <= batch_bytes + ONE_STEP
        assert transport.value() == b""  # answered only after the last batch
        sink.release()
    assert sink.events == lines and len(sink.batches) > 10
    assert statuses(transport.value()) == [200]
    assert factory.held == 0 and proto.exchange.held() == 0
    assert peak > batch_bytes  # the events were counted as they were decoded


def test_a_body_inflating_past_max_content_length_is_still_413():
    sink = HeldSink()
    factory = HttpInputFactory(sink, Clock(), max_content_length=4 * MIB)
    proto, transport = connect(factory)
    proto.dataReceived(gzip_request(b"{}\n" * (2 * MIB)))  # 6 MiB inflated
    while sink.held:
        sink.release()
    assert statuses(transport.value()) == [413]
    assert factory.held == 0


def test_a_batch_of_a_body_refused_by_the_sink_drops_the_rest_and_answers_500():
    sink = HeldSink()
    factory = HttpInputFactory(sink, Clock(), max_held_bytes=16 * MIB)
    proto, transport = connect(factory)
    proto.dataReceived(gzip_request(b'{"a":1}\n' * 300_000) + gzip_request(b"{}\n"))
    assert len(sink.batches) == 1
    sink.held.pop().errback(RuntimeError("disk full"))
    assert statuses(transport.value()) == [500]  # the rest of the body was dropped
    assert [len(b) for b in sink.batches[1:]] == [1]  # the next request goes on
    sink.release()
    assert statuses(transport.value()) == [500, 200]


def test_a_long_line_across_steps_is_decoded_once_whole():
    sink = HeldSink()
    factory = HttpInputFactory(sink, Clock())
    proto, transport = connect(factory)
    line = b'{"message":"' + b"x" * (5 * STEP) + b'"}\n'
    proto.dataReceived(gzip_request(b'{"n":1}\n' + line + b'{"n":2}\n'))
    assert [len(b) for b in sink.batches] == [3]
    assert len(sink.batches[0][1]["message"]) == 5 * STEP
    sink.release()
    assert statuses(transport.value()) == [200]


# -- 2. one budget of held bytes per input: unfinished bodies count ----------------------------


def test_unfinished_gzip_bodies_count_against_the_budget_and_pause_reading():
    """Ten unfinished gzip bodies (0.8 MB sent) held 852 MB, uncounted."""
    budget = 16 * MIB
    sink = HeldSink()
    factory = HttpInputFactory(sink, Clock(), max_held_bytes=budget)
    request = gzip_request(b"{}\n" * 3_000_000)  # 9 MB inflated
    cut = len(request) - 1000  # never finished
    connections = [connect(factory, n) for n in range(10)]
    for proto, _ in connections:
        proto.dataReceived(request[:cut])
        assert factory.held <= budget + ONE_STEP + factory.settings.max_batch_bytes
    assert factory.held == sum(p.exchange.held() for p, _ in connections)
    assert factory.held > budget
    # over the budget, a connection reads nothing more; a new request is refused (429 once its
    # body, read and dropped, ends): it holds nothing
    paused = [p for p, t in connections if t.producerState == "paused"]
    others = [p for p, t in connections if t.producerState != "paused"]
    assert paused and others
    assert all(p.exchange.held() == 0 for p in others)
    for proto in others:
        proto.dataReceived(request[cut:])
    assert all(statuses(t.value()) == [429] for p, t in connections if p in others)
    # the sink takes what it holds: the input holds less, paused connections go on in turn
    for _ in range(200):
        if not sink.held:
            break
        sink.release()
        assert factory.held <= budget + ONE_STEP + factory.settings.max_batch_bytes
    for proto, _ in connections:
        proto.connectionLost(None)
    assert factory.held == 0


def test_a_new_request_is_answered_429_while_the_input_is_over_its_budget():
    budget = 1 * MIB
    sink = HeldSink()
    factory = HttpInputFactory(sink, Clock(), max_held_bytes=budget)
    big, _ = connect(factory, 0)
    big.dataReceived(gzip_request(b'{"a":1}\n' * 300_000))
    assert factory.held > budget
    proto, transport = connect(factory, 1)
    proto.dataReceived(gzip_request(b'{"a":1}\n'))
    assert statuses(transport.value()) == [429]


def test_the_budget_counts_batches_with_the_sink_and_the_bytes_waiting_behind_them():
    sink = HeldSink()
    factory = HttpInputFactory(sink, Clock())
    proto, _ = connect(factory)
    body = b'{"message":"hello"}\n' * 100
    proto.dataReceived(gzip_request(body) + b"x" * 1000)
    assert factory.held == event_bytes(len(body), 100) + 1000
    sink.release()
    assert factory.held == proto.exchange.held() == 1000


# -- 3. a peer that does not read its answers stops being read -----------------------------------


def test_a_peer_that_never_reads_its_answers_is_no_longer_read():
    """120 MB of requests answered without the sink grew the write buffer to 1,086 MB."""
    factory = HttpInputFactory(HeldSink(), Clock(), username="u", password="p")
    proto, transport = connect(factory, transport_class=BufferingTransport)
    assert transport.producer is proto and transport.streaming
    unauthorized = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
    sent = 0
    for _ in range(2000):
        if transport.producerState == "paused":
            break
        proto.dataReceived(unauthorized * 10)
        sent += 1
    assert transport.producerState == "paused"  # reading stopped
    buffered = len(transport.value())
    assert buffered < 2 * BufferingTransport.buffer
    answers = len(statuses(transport.drain()))
    assert transport.producerState == "producing"  # the answers drained: read again
    assert answers == sent * 10


def test_a_peer_that_never_reads_is_aborted_at_its_deadline_not_closed_politely():
    factory = HttpInputFactory(HeldSink(), Clock(), username="u", password="p", idle_timeout=5.0)
    proto, transport = connect(factory, transport_class=BufferingTransport)
    proto.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n" * 1000)
    assert transport.producerState == "paused"
    factory.reactor.advance(10.0)
    assert transport.disconnected  # aborted: a polite close would wait for it forever


# -- 4. pipelined requests answered without the sink: no recursion ------------------------------


def test_two_thousand_pipelined_requests_answered_without_the_sink_do_not_recurse():
    token = base64.b64encode(b"u:wrong")
    requests = [
        b"POST / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic %s\r\nContent-Length: 2\r\n\r\n{}"
        % token,  # 401
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",  # 405
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",  # no events: 200, no sink
    ]
    stream = b"".join(requests[n % 3] for n in range(2000))
    for pieces in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        sink = HeldSink()
        factory = HttpInputFactory(sink, Clock(), username="u", password="p")
        proto, transport = connect(factory)
        for piece in pieces:
            proto.dataReceived(piece)
        assert statuses(transport.value()) == [[401, 405, 401][n % 3] for n in range(2000)]
        assert sink.batches == []


# -- 5. a batch that waits on the sink too long is answered 429 ---------------------------------


def test_a_request_whose_events_wait_on_the_sink_too_long_is_answered_429():
    clock = Clock()
    sink = HeldSink()
    factory = HttpInputFactory(sink, clock, sink_timeout=10.0)
    proto, transport = connect(factory)
    proto.dataReceived(gzip_request(b'{"n":1}\n'))
    clock.advance(9.0)
    assert transport.value() == b""
    with capturedLogs() as events:
        clock.advance(2.0)
    assert statuses(transport.value()) == [429]
    assert b"Connection: close" in transport.value() and transport.disconnecting
    assert any("answered 429" in formatEvent(e) for e in events)
    assert factory.pending == 1  # still with the sink, still counted
    transport.clear()
    with capturedLogs() as events:
        sink.release()  # the sink took them late: nothing more is written, and it is logged
    assert transport.value() == b""
    assert factory.pending == 0 and factory.held == 0
    assert any("may arrive twice" in formatEvent(e) for e in events)


def test_a_late_failure_of_the_sink_writes_nothing_more():
    clock = Clock()
    sink = HeldSink()
    factory = HttpInputFactory(sink, clock, sink_timeout=1.0)
    proto, transport = connect(factory)
    proto.dataReceived(gzip_request(b'{"n":1}\n'))
    clock.advance(2.0)
    transport.clear()
    sink.held.pop().errback(RuntimeError("late"))
    assert transport.value() == b"" and factory.pending == 0


# -- fuzz: a body cut anywhere, in steps and batches of any size, gives the same events -------


_lines = st.lists(
    st.one_of(
        st.just(b"{}"),
        st.just(b""),
        st.just(b"not json"),
        st.builds(lambda n: b'{"n":%d}' % n, st.integers(0, 10**6)),
        st.builds(lambda k: b"[" + b",".join([b'{"a":1}'] * k) + b"]", st.integers(0, 5)),
        st.builds(lambda k: b'{"m":"' + b"x" * k + b'"}', st.integers(0, 300)),
    ),
    max_size=60,
)


@given(
    lines=_lines,
    encoding=st.sampled_from(["gzip", "deflate", "snappy", "identity"]),
    step=st.integers(1, 64),
    budget=st.integers(1, 4096),
    cuts=st.lists(st.integers(1, 50), max_size=20),
    release_late=st.booleans(),
)
def test_a_body_in_steps_and_batches_gives_the_events_of_the_whole(
    lines, encoding, step, budget, cuts, release_late
):
    saved = server.STEP
    server.STEP = step  # tiny steps and batches: every path of the streaming is taken
    try:
        _body_in_steps(lines, encoding, budget, cuts, release_late)
    finally:
        server.STEP = saved


def _plain(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in ("@timestamp", "@version")} for e in events]


def _body_in_steps(lines, encoding, budget, cuts, release_late) -> None:
    body = b"\n".join(lines) + b"\n"
    compressed = compression.compress(body, encoding)
    header = b"" if encoding == "identity" else b"Content-Encoding: %s\r\n" % encoding.encode()
    request = (
        b"POST / HTTP/1.1\r\nHost: h\r\n" + header + b"Content-Length: %d\r\n\r\n" % len(compressed)
    ) + compressed
    sink = HeldSink()
    factory = HttpInputFactory(sink, Clock(), max_held_bytes=budget)
    proto, transport = connect(factory)
    at = 0
    for cut in [*cuts, len(request)]:
        proto.dataReceived(request[at : at + cut])
        at += cut
        if not release_late:
            sink.release()
        if at >= len(request):
            break
    while sink.held:
        sink.release()
    assert _plain([e for b in sink.batches for e in b]) == _plain(ndjson.decode(body))
    assert statuses(transport.value()) == [200]
    assert factory.held == 0 and factory.pending == 0


def test_batches_settled_at_once_give_the_reactor_back_between_turns():
    """The gzip flood blocked the reactor for 30 s: batches that a sink settles at once are
    worked through for TURN seconds, then the connection waits a reactor turn."""
    clock = Clock()

    @implementer(IEventSink)
    class SlowImmediateSink:
        batches = 0

        def deliver(self, events):
            self.batches += 1
            clock.advance(0.02)  # each batch takes the reactor 20 ms
            return defer.succeed(None)

    sink = SlowImmediateSink()
    factory = HttpInputFactory(sink, clock)
    proto, transport = connect(factory)
    proto.dataReceived(gzip_request(b'{"n":1}\n') * 20)
    assert sink.batches < 20  # gave the reactor back
    for _ in range(40):
        clock.advance(0)
    assert sink.batches == 20
    assert statuses(transport.value()) == [200] * 20
