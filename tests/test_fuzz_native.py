"""Fuzzing the native input's request path: random bytes, mutated and split valid requests.

The protocol runs over a TCP-like StringTransport with a Clock and a scripted sink. Whatever the
bytes, these must hold:

- no exception escapes ``dataReceived``; nothing is logged as an error or a failure (other than
  the scripted sink's own refusals); no sink Deferred is left holding an unhandled failure;
- what the input writes is a sequence of complete, well-formed HTTP responses, and nothing is
  written after it closed its side;
- a batch the sink confirmed while the client was connected is answered ``200`` at exactly that
  point of the stream, a batch the sink failed is answered ``500``: no ``200`` without the
  sink's confirmation, and no confirmed batch left unanswered;
- the bytes held stay bounded: the parser's buffer by the head limit (plus one read while the
  transport is paused), the decoded body by ``max_content_length``;
- no hang: once the sink answered everything, advancing the clock past every timeout closes the
  connection, and then no timer is left behind.

For valid requests (pipelined, split anywhere, sink outcomes mixed) the oracle is exact: every
request is answered in order, and a ``200`` means the sink got exactly that request's events.
The bad inputs named in docs/reliability.md are checked one by one at the end.
"""

from __future__ import annotations

import gzip
import json
from collections import deque
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support_fuzz import (
    FUZZ,
    SINK_MODES,
    LogWatch,
    ScriptedSink,
    Wire,
    hostile_lines,
    mutate,
    mutations,
    same_json,
    split,
    split_points,
)
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twisted_logstash.codecs import compression, ndjson
from twisted_logstash.wires.native.http import MAX_CHUNK_LINE, ResponseParser
from twisted_logstash.wires.native.server import LINGER, HttpInputFactory

MAX_HEAD = 1024
"""A small head limit, so that mutations reach it."""
LIMIT = 4096
"""A small body limit (declared and inflated), so that mutations reach it."""
# No sink timeout here: the clock steps below (31 s, 61 s) would answer a held batch 429 before
# the scripted sink fires it, which these invariants do not model; tests/test_input_budget.py
# holds the sink timeout.
TIMEOUTS = {
    "header_timeout": 30.0,
    "body_timeout": 60.0,
    "idle_timeout": 60.0,
    "sink_timeout": None,
}
USER, PASSWORD = "logstash", "s3cret"
AUTH = b"Authorization: Basic bG9nc3Rhc2g6czNjcmV0\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
STATUSES = {200, 400, 401, 405, 413, 415, 417, 429, 431, 500, 501, 503, 505}


# -- driving the protocol -----------------------------------------------------------------------


@dataclass
class Answer:
    offset: int  # where its final status line starts in the output
    status: int
    close: bool


class NativeRun:
    """One connection of an ``HttpInputFactory``, fed as a reactor would feed it."""

    def __init__(self, modes=("ok",), *, auth: bool = False, **options) -> None:
        self.clock = Clock()
        self.wire = Wire()
        self.sink = ScriptedSink(modes, self.wire, lambda: not self.proto.lost)
        kwargs = dict(TIMEOUTS, max_head_size=MAX_HEAD, max_content_length=LIMIT)
        kwargs.update(options)
        if auth:
            kwargs.update(username=USER, password=PASSWORD)
        self.factory = HttpInputFactory(self.sink, self.clock, **kwargs)
        self.proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.proto.makeConnection(self.wire)
        self.backlog: deque[bytes] = deque()
        self.gone = False

    # feeding

    def pump(self) -> None:
        """Hand over what the client sent, while the transport reads."""
        while self.backlog and not self.gone and not self.wire.paused:
            chunk = self.backlog.popleft()
            self.proto.dataReceived(chunk)
            self._check_bounds(chunk)
            self.settle()

    def settle(self) -> None:
        """A connection the protocol closed is lost soon after, as over TCP."""
        if self.wire.disconnecting and not self.gone:
            self.gone = True
            self.proto.connectionLost(Failure(ConnectionDone()))

    def hang_up(self) -> None:
        """The client goes away."""
        if not self.gone:
            self.wire.disconnecting = True
            self.settle()

    def send(self, pieces, steps=((0, False),)) -> None:
        """Each piece arrives, then the step says: advance the clock by N, fire held batches."""
        for index, piece in enumerate(pieces):
            self.backlog.append(piece)
            self.pump()
            advance, fire = steps[index % len(steps)]
            if fire:
                self.sink.fire_held()
                self.settle()
                self.pump()
            if advance:
                self.clock.advance(advance)
                self.settle()
                self.pump()

    def finish(self, hang_up: bool = False) -> None:
        """The sink answers everything; the client stops sending; time passes."""
        if hang_up:
            self.hang_up()
        while self.sink.fire_held():
            self.settle()
            self.pump()
        assert not self.sink.held()
        if not self.gone and self.backlog:
            assert not self.wire.paused, "paused with nothing left to wait for"
        # no hang: every phase has a deadline once the sink answered
        longest = max(max(t for t in TIMEOUTS.values() if t is not None), LINGER)
        for _ in range(int(longest) * 2 + 10):
            if self.gone:
                break
            self.clock.advance(1.0)
            self.settle()
        assert self.gone, f"still open in phase {self.proto.phase} after every timeout"
        assert self.clock.getDelayedCalls() == [], "a timer outlived the connection"
        assert self.factory.connections == 0
        assert self.factory.pending == 0

    def _check_bounds(self, chunk: bytes) -> None:
        proto = self.proto
        settled_buffer = max(MAX_HEAD, MAX_CHUNK_LINE) + 4
        buffered = proto.exchange.parser.buffered
        assert buffered <= settled_buffer + len(chunk)
        if proto.holding is None and not proto.closing:
            assert buffered <= settled_buffer, f"{buffered} bytes buffered between requests"
        assert sum(map(len, proto.exchange.parts)) <= LIMIT

    # judging

    def answers(self) -> list[Answer]:
        """The output as responses; it must be nothing else."""
        out = self.wire.value()
        assert not self.wire.late_writes, f"written after close: {self.wire.late_writes!r}"
        found = []
        pos = 0
        while pos < len(out):
            while out.startswith(CONTINUE, pos):
                pos += len(CONTINUE)
            if pos == len(out):
                break  # a 100 Continue, then the connection closed
            parser = ResponseParser()
            response = parser.feed(out[pos:])
            assert response is not None, f"incomplete response {out[pos : pos + 200]!r}"
            assert response.status in STATUSES, response
            assert response.body_length == int(response.header("content-length"))
            found.append(Answer(pos, response.status, not response.keep_alive))
            pos = len(out) - len(parser.leftover)
        return found

    def check(self) -> list[Answer]:
        """The invariants that hold whatever was sent; the answers, for more checks."""
        self.sink.check_handled()
        answers = self.answers()
        at = {answer.offset: answer for answer in answers}
        for batch in self.sink.batches:
            assert batch.fired is not None
            if not batch.connected:
                continue  # the client left first: it got no answer and will resend
            answer = at.get(batch.offset)
            assert answer is not None, f"batch {batch.mode} fired and never answered"
            assert answer.status == (200 if batch.fired == "ok" else 500), (batch, answer)
        delivered_at = {b.offset for b in self.sink.batches if b.fired == "ok" and b.connected}
        for answer in answers:
            if answer.status == 200 and answer.offset not in delivered_at:
                # a 200 without a batch: allowed only for a request that held no event
                assert not any(b.offset == answer.offset for b in self.sink.batches)
        return answers


def run(stream: bytes, points, modes, steps=((0, False),), *, auth=False, hang_up=False):
    with LogWatch() as watch:
        case = NativeRun(modes, auth=auth)
        case.send(split(stream, points), steps)
        case.finish(hang_up)
    assert watch.defects() == []
    case.check()
    return case, watch


# -- valid requests -----------------------------------------------------------------------------

EVENTS = st.lists(
    st.fixed_dictionaries(
        {"message": st.text(max_size=12), "n": st.integers(-(2**53), 2**53)},
    ),
    max_size=4,
)


@dataclass
class Request:
    data: bytes
    events: list[dict]
    close: bool


@st.composite
def requests(draw, auth: bool = False) -> Request:
    events = draw(EVENTS)
    if draw(st.booleans()):
        body = json.dumps(events).encode() if events else b""  # what a Logstash output sends
    else:
        body = ndjson.encode(events)
    encoding = draw(st.sampled_from(compression.ENCODINGS))
    if body or draw(st.booleans()):
        body = compression.compress(body, encoding)
    head = b"%s / HTTP/1.1\r\nHost: 127.0.0.1:9800\r\n" % draw(st.sampled_from([b"POST", b"PUT"]))
    if encoding != "identity":
        head += b"Content-Encoding: " + encoding.encode() + b"\r\n"
    if auth:
        head += AUTH
    close = draw(st.integers(0, 5)) == 0
    if close:
        head += b"Connection: close\r\n"
    if draw(st.booleans()):
        head += b"Expect: 100-continue\r\n"
    if draw(st.booleans()):
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        cuts = split(body, draw(split_points(len(body))))
        for piece in cuts:
            extension = b";x=1" if draw(st.booleans()) else b""
            head += b"%x%s\r\n%s\r\n" % (len(piece), extension, piece)
        head += b"0\r\n" + (b"X-Trailer: 1\r\n" if draw(st.booleans()) else b"") + b"\r\n"
        data = head
    else:
        data = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    return Request(data, events, close)


def pipelines(auth: bool = False):
    return st.lists(requests(auth), min_size=1, max_size=4)


def fire_steps():
    return st.lists(st.tuples(st.just(0), st.booleans()), min_size=1, max_size=4)


def clock_steps():
    return st.lists(
        st.tuples(st.sampled_from([0, 0, 0, 0, 1, 31, 61]), st.booleans()), min_size=1, max_size=4
    )


def fields(events):
    return [{k: e[k] for k in e if not k.startswith("@")} for e in events]


@FUZZ
@given(st.data(), pipelines(), st.lists(st.sampled_from(SINK_MODES), min_size=1, max_size=4))
def test_valid_pipelined_requests_split_anywhere_are_each_answered(data, reqs, modes):
    """Exact oracle: answers in request order up to the first ``Connection: close``; a 200
    carries exactly that request's events to the sink, a sink failure is a 500."""
    stream = b"".join(r.data for r in reqs)
    points = data.draw(split_points(len(stream)))
    case, _ = run(stream, points, modes, data.draw(fire_steps()))
    answers = case.check()
    expected = reqs[: next((i + 1 for i, r in enumerate(reqs) if r.close), len(reqs))]
    assert len(answers) == len(expected)
    by_offset = {b.offset: b for b in case.sink.batches}
    for req, answer in zip(expected, answers, strict=True):
        batch = by_offset.get(answer.offset)
        if not req.events:
            assert batch is None and answer.status == 200
            continue
        assert batch is not None
        assert fields(batch.events) == req.events
        assert answer.status == (200 if batch.fired == "ok" else 500)
        assert all(event["@version"] == "1" and "@timestamp" in event for event in batch.events)
    assert len(case.sink.batches) == sum(1 for r in expected if r.events)
    assert answers[-1].close == expected[-1].close


@FUZZ
@given(
    st.data(),
    pipelines(auth=True),
    mutations(),
    st.lists(st.sampled_from(SINK_MODES), min_size=1, max_size=3),
    st.booleans(),
)
def test_mutated_requests_never_crash_nor_answer_200_without_the_sink(
    data, reqs, ops, modes, hang_up
):
    """Bytes flipped, set, inserted, deleted or repeated anywhere in pipelined requests (head
    and compressed body alike), cut anywhere, with time passing between the pieces."""
    stream = mutate(b"".join(r.data for r in reqs), ops)
    points = data.draw(split_points(len(stream)))
    run(stream, points, modes, data.draw(clock_steps()), auth=True, hang_up=hang_up)


@FUZZ
@given(
    st.sampled_from([b"", b"POST / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nHost: a\r\n"]),
    st.binary(max_size=600),
    st.data(),
)
def test_random_bytes_never_crash(prefix, noise, data):
    stream = prefix + noise
    run(stream, data.draw(split_points(len(stream))), ("ok", "held"), data.draw(clock_steps()))


@FUZZ
@given(st.data(), st.sampled_from(["gzip", "deflate", "snappy"]), mutations(max_ops=3))
def test_mutated_compressed_bodies_are_refused_or_delivered_whole(data, encoding, ops):
    """A damaged body under a valid head: 400/413 with nothing delivered, or 200 with whatever
    the damaged bytes still decode to (never a partial batch plus an error)."""
    events = data.draw(EVENTS.filter(bool))
    body = mutate(compression.compress(ndjson.encode(events), encoding), ops)
    stream = (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
        % (encoding.encode(), len(body))
        + body
    )
    case, _ = run(stream, data.draw(split_points(len(stream))), ("ok",))
    (answer,) = case.check()
    try:
        inflated = compression.decompress(body, encoding, LIMIT)
    except compression.TooLargeError:
        assert answer.status == 413
        expected = None
    except compression.DecompressionError:
        assert answer.status == 400
        expected = None
    else:
        assert answer.status == 200
        expected = ndjson.decode(inflated)
    if expected:
        (batch,) = case.sink.batches
        for got, want in zip(batch.events, expected, strict=True):
            assert {k: got[k] for k in want} == want
    else:
        assert case.sink.batches == []


# -- JSON the policy cannot write as it is, and stacked codings (issue 11) ------------------------


@st.composite
def hostile_bodies(draw) -> tuple[list[bytes], list[dict]]:
    """Lines and the events they must make: small ones around at most one deep line, so that
    the body stays under the input's limit."""
    small = draw(st.lists(hostile_lines(max_levels=300), min_size=1, max_size=5))
    if draw(st.booleans()):
        small.insert(draw(st.integers(0, len(small))), draw(hostile_lines(max_levels=1100)))
    # one line of 1025 levels and four of 256 made 4,123 bytes (answered 413, as it should be):
    # the shortest lines go until the body fits, the deep one stays
    while len(small) > 1 and sum(len(line) + 1 for line, _ in small) > LIMIT:
        small.pop(min(range(len(small)), key=lambda i: len(small[i][0])))
    return [line for line, _ in small], [event for _, event in small]


@FUZZ
@given(st.data(), hostile_bodies(), st.sampled_from(compression.ENCODINGS))
def test_each_hostile_json_line_is_taken_or_refused_alone(data, body, encoding):
    """Deep nesting (to past orjson's own limit), integers beyond 64 bits, NaN/Infinity tokens:
    one event per line, in order, the refused ones as ``_jsonparsefailure`` events holding the
    line, their batch-mates delivered and the request answered 200; and what the sink got is
    written back by the policy and read again the same (reading and writing agree)."""
    lines, expected = body
    payload = compression.compress(b"\n".join(lines) + b"\n", encoding)
    headers = b"" if encoding == "identity" else b"Content-Encoding: %s\r\n" % encoding.encode()
    stream = post(payload, headers)
    case, _ = run(stream, data.draw(split_points(len(stream))), ("ok",))
    (answer,) = case.check()
    assert answer.status == 200
    (batch,) = case.sink.batches
    got = [{k: v for k, v in e.items() if not k.startswith("@")} for e in batch.events]
    assert same_json(got, expected)
    again = ndjson.decode(ndjson.encode(batch.events))
    assert same_json(again, batch.events)


CODINGS = [b"gzip", b"GZIP", b"x-gzip", b"identity", b"deflate", b"snappy", b"gzip, gzip", b"br"]


@FUZZ
@given(st.data(), st.lists(st.sampled_from(CODINGS), min_size=2, max_size=3))
def test_more_than_one_content_encoding_line_is_refused_whatever_the_values(data, codings):
    """Never read last-wins: 400 with nothing delivered, and the connection still serves the
    next request."""
    body = gzip.compress(b'{"a":1}\n')
    headers = b"".join(b"Content-Encoding: %s\r\n" % coding for coding in codings)
    stream = post(body, headers) + post(body, GZ)
    case, _ = run(stream, data.draw(split_points(len(stream))), ("ok",))
    first, second = case.check()
    assert (first.status, second.status) == (400, 200)
    (batch,) = case.sink.batches
    assert batch.events[0]["a"] == 1


# -- the bad inputs of docs/reliability.md, one by one ------------------------------------------


def post(body: bytes = b"", headers: bytes = b"", *, length: bool = True) -> bytes:
    head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


GZ = b"Content-Encoding: gzip\r\n"
BAD_REQUESTS = {
    "head over the limit": (post(headers=b"X-Long: " + b"a" * 2000 + b"\r\n"), 431, True),
    "Content-Length and Transfer-Encoding": (
        post(b"0\r\n\r\n", b"Transfer-Encoding: chunked\r\n"),
        400,
        True,
    ),
    "two different Content-Length": (post(b"{}", b"Content-Length: 3\r\n"), 400, True),
    "Content-Length not a number": (
        post(b"", b"Content-Length: 1e3\r\n", length=False),
        400,
        True,
    ),
    "declared body over the limit": (
        post(b"", b"Content-Length: 999999\r\n", length=False),
        413,
        True,
    ),
    "chunk size not hex": (
        post(b"zz\r\n{}\r\n0\r\n\r\n", b"Transfer-Encoding: chunked\r\n", length=False),
        400,
        True,
    ),
    "chunk longer than its size": (
        post(b"1\r\n{}\r\n0\r\n\r\n", b"Transfer-Encoding: chunked\r\n", length=False),
        400,
        True,
    ),
    "chunk sizes over the limit": (
        post(b"ffffff\r\n", b"Transfer-Encoding: chunked\r\n", length=False),
        413,
        True,
    ),
    "transfer coding other than chunked": (
        post(b"", b"Transfer-Encoding: gzip\r\n", length=False),
        501,
        True,
    ),
    "bare LF line ends": (b"POST / HTTP/1.1\nHost: a\nContent-Length: 0\n\n", 400, True),
    "obsolete header folding": (post(b"", b"X-A: 1\r\n  folded\r\n"), 400, True),
    "control byte in the head": (post(b"", b"X-A: \x01\r\n"), 400, True),
    "no Host header": (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400, True),
    "HTTP/2.0 request line": (b"POST / HTTP/2.0\r\nHost: a\r\n\r\n", 505, True),
    "garbage request line": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, True),
    "unknown expectation": (post(b"", b"Expect: 200-ok\r\n"), 417, True),
    "GET": (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 405, False),
    "unknown Content-Encoding": (post(b"{}", b"Content-Encoding: br\r\n"), 415, False),
    "two Content-Encoding lines": (post(b"{}", GZ + GZ), 400, False),
    "a list of content codings": (post(b"{}", b"Content-Encoding: gzip, identity\r\n"), 400, False),
    "zip bomb": (post(gzip.compress(b" " * 10 * LIMIT), GZ), 413, False),
    "invalid gzip": (post(b"not gzip at all", GZ), 400, False),
    "truncated gzip": (post(gzip.compress(b'{"a":1}\n')[:-6], GZ), 400, False),
    "snappy without its stream identifier": (
        post(b"\x00\x05\x00\x00abcde", b"Content-Encoding: snappy\r\n"),
        400,
        False,
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_request_answer(name):
    data, status, closes = BAD_REQUESTS[name]
    with LogWatch() as watch:
        case = NativeRun()
        case.send([data])
        (answer,) = case.answers()
        assert answer.status == status
        assert answer.close == closes
        assert case.wire.write_closed == closes
        assert case.sink.batches == []
        case.finish()
    assert watch.defects() == []


def test_bad_lines_are_delivered_tagged_not_dropped():
    body = b'{"ok":1}\nnot json\n\xff\xfe{"bad utf-8":1}\n[1,2]\n'
    case, _ = run(post(body), [], ("ok",))
    (answer,) = case.check()
    assert answer.status == 200
    (batch,) = case.sink.batches
    assert batch.events[0]["ok"] == 1
    failed = batch.events[1:]
    assert [e["tags"] for e in failed] == [["_jsonparsefailure"]] * 3
    assert failed[0]["message"] == "not json"
    assert failed[1]["message"].startswith("\ufffd\ufffd")
    assert orjson.loads(orjson.dumps(batch.events)) == batch.events


def test_wrong_credentials_get_401_and_the_body_is_never_decoded():
    wrong = b"Authorization: Basic d3Jvbmc6d3Jvbmc=\r\n"
    bomb = gzip.compress(b" " * 10 * LIMIT)
    stream = post(bomb, wrong + GZ) + post(b'{"a":1}', AUTH)
    case, _ = run(stream, [], ("ok",), auth=True)
    first, second = case.check()
    assert (first.status, first.close) == (401, False)
    assert second.status == 200
    assert [fields(b.events) for b in case.sink.batches] == [[{"a": 1}]]


def test_wrong_credentials_while_waiting_on_100_continue_close():
    headers = b"Authorization: Basic d3Jvbmc6d3Jvbmc=\r\nExpect: 100-continue\r\n"
    case, _ = run(post(b"{}", headers)[:-2], [], ("ok",), auth=True)
    (answer,) = case.check()
    assert (answer.status, answer.close) == (401, True)


def test_truncated_head_is_dropped_by_the_header_timeout():
    case = NativeRun()
    case.send([b"POST / HTTP/1.1\r\nHost: a\r\nContent-Len"])
    case.clock.advance(TIMEOUTS["header_timeout"] - 1.5)
    assert not case.gone
    case.clock.advance(2.0)
    case.settle()
    assert case.gone and case.wire.disconnected  # aborted, nothing written
    assert case.wire.value() == b""


def test_stalled_body_is_dropped_by_the_body_timeout():
    case = NativeRun()
    case.send([post(b'{"a":1}\n')[:-3]])
    case.clock.advance(TIMEOUTS["body_timeout"] + 1.5)
    case.settle()
    assert case.gone and case.wire.disconnected and case.sink.batches == []
