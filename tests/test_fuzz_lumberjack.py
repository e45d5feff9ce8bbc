"""Fuzzing the Lumberjack input: random bytes, mutated and split valid windows (J, D and C frames).

The protocol runs over a TCP-like StringTransport with a Clock and a scripted sink. Whatever the
bytes, these must hold:

- no exception escapes ``dataReceived``; nothing is logged as an error or a failure (other than
  the scripted sink's own refusals); no sink Deferred is left holding an unhandled failure;
- what the input writes is a run of well-formed ``A`` frames, nothing after it closed;
- an ACK with a non-zero seq is written only at the point where the sink confirmed a window (no
  ACK for events not delivered); a window the sink confirmed while connected gets its ACK there;
  a window the sink failed gets no ACK and the connection closes;
- a protocol error closes the connection with its reason logged (once the window already with the
  sink, if any, is settled);
- the decoder holds at most one frame (``max_frame``), a ``C`` frame inflates to at most
  ``max_inflated``, an open window holds at most ``max_window`` events, and the connection holds
  at most ``max_window_bytes`` accounted bytes (``held()``);
- no hang: once the sink answered, advancing the clock past the inactivity timeout closes the
  connection, and no timer is left behind.

For valid windows the oracle is exact: every window reaches the sink whole and in order, and its
ACK names the seq of its last frame. The bad inputs of docs/reliability.md are checked one by one.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support_fuzz import (
    FUZZ,
    NOT_JSON_NUMBERS,
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
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twisted_logstash.wires.lumberjack.decoder import _INFLATE_STEP
from twisted_logstash.wires.lumberjack.frames import encode_json_frames, encode_window_size
from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory

MAX_WINDOW = 16
MAX_FRAME = 2048
MAX_INFLATED = 4096
INACTIVITY = 60.0
KEEPALIVE = 5.0


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


# -- driving the protocol -----------------------------------------------------------------------


class LumberjackRun:
    """One connection of a ``LumberjackInputFactory``, fed as a reactor would feed it."""

    def __init__(self, modes=("ok",), **options) -> None:
        self.clock = Clock()
        self.wire = Wire()
        self.sink = ScriptedSink(modes, self.wire, lambda: not self.proto.lost)
        kwargs = dict(
            client_inactivity_timeout=INACTIVITY,
            keepalive_interval=KEEPALIVE,
            max_window=MAX_WINDOW,
            max_frame=MAX_FRAME,
            max_inflated=MAX_INFLATED,
        )
        kwargs.update(options)
        self.factory = LumberjackInputFactory(self.sink, self.clock, **kwargs)
        self.proto = self.factory.buildProtocol(None)
        self.proto.makeConnection(self.wire)
        self.backlog: deque[bytes] = deque()
        self.gone = False
        self.closed_by_error = False
        self.peak_held = 0

    def pump(self) -> None:
        while self.backlog and not self.gone and not self.wire.paused:
            chunk = self.backlog.popleft()
            self.proto.dataReceived(chunk)
            self._check_bounds()
            self.settle()

    def settle(self) -> None:
        if self.wire.disconnecting and not self.gone:
            self.gone = True
            self.proto.connectionLost(Failure(ConnectionDone()))

    def send(self, pieces, steps=((0, False),)) -> None:
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
        if hang_up and not self.gone:
            self.wire.disconnecting = True
            self.settle()
        while self.sink.fire_held():
            self.settle()
            self.pump()
        assert not self.sink.held()
        if not self.gone and self.backlog:
            assert not self.wire.paused, "paused with nothing left to wait for"
        if self.proto.exchange.error is not None:
            # a protocol error: closed as soon as the window with the sink was settled
            assert self.wire.disconnecting, "protocol error, connection left open"
            self.closed_by_error = True
        for _ in range(int(INACTIVITY) * 2 + 10):
            if self.gone:
                break
            self.clock.advance(1.0)
            self.settle()
        assert self.gone, "still open after the inactivity timeout"
        assert self.clock.getDelayedCalls() == [], "a timer outlived the connection"
        assert self.factory.connections == 0

    def _check_bounds(self) -> None:
        factory = self.factory
        decoder = self.proto.exchange.decoder
        assert len(decoder._buffer) <= factory.max_frame + 10
        if decoder._inflation is not None:
            assert decoder._inflation.total <= factory.max_inflated
            assert len(decoder._inflation.inner.buf) <= factory.max_frame + 10 + _INFLATE_STEP
        window = self.proto.exchange.window
        if window is not None:
            assert len(window.events) <= factory.max_window
        # what the connection holds, in accounted bytes, never passes max_window_bytes
        assert self.proto.exchange.held() <= self.factory.max_window_bytes
        self.peak_held = max(self.peak_held, self.proto.exchange.held())

    def acks(self) -> list[tuple[int, bytes, int]]:
        """(offset, version, seq) of every frame written; they must all be ACKs."""
        assert not self.wire.late_writes, f"written after close: {self.wire.late_writes!r}"
        out = self.wire.value()
        assert len(out) % 6 == 0, out
        found = []
        for at in range(0, len(out), 6):
            assert out[at : at + 2] in (b"2A", b"1A"), out
            found.append((at, out[at : at + 1], struct.unpack(">I", out[at + 2 : at + 6])[0]))
        return found

    def check(self) -> list[tuple[int, bytes, int]]:
        self.sink.check_handled()
        acks = self.acks()
        at = {offset: seq for offset, _, seq in acks}
        confirmed = set()
        for batch in self.sink.batches:
            assert batch.fired is not None
            assert batch.events, "an empty window went to the sink"
            if not batch.connected:
                continue  # the sender left first: no ACK, it resends
            if batch.fired == "ok":
                assert batch.offset in at, "a window the sink confirmed got no ACK"
                confirmed.add(batch.offset)
            else:
                assert batch.offset not in at, "ACK after the sink failed"
                assert len(self.wire.value()) == batch.offset, "written after a sink failure"
        for offset, _, seq in acks:
            if seq:
                assert offset in confirmed, f"ACK {seq} for events the sink did not confirm"
        return acks


def run(stream: bytes, points, modes, steps=((0, False),), *, hang_up=False):
    with LogWatch() as watch:
        case = LumberjackRun(modes)
        case.send(split(stream, points), steps)
        case.finish(hang_up)
    assert watch.defects() == []
    case.check()
    if case.closed_by_error:
        reasons = [e for e in watch.events if "protocol error" in e.get("log_format", "")]
        assert reasons and reasons[0].get("reason"), "closed without a reason logged"
    return case, watch


# -- valid windows ------------------------------------------------------------------------------


def v1_data(seq: int, event: dict[str, str]) -> bytes:
    body = b"".join(
        u32(len(k.encode())) + k.encode() + u32(len(v.encode())) + v.encode()
        for k, v in event.items()
    )
    return b"1D" + u32(seq) + u32(len(event)) + body


def c_frame(inner: bytes, version: bytes = b"2") -> bytes:
    body = zlib.compress(inner, 3)
    return version + b"C" + u32(len(body)) + body


@dataclass
class Window:
    data: bytes
    events: list[dict]
    version: bytes
    last_seq: int


TEXT = st.text(max_size=10)


@st.composite
def windows(draw) -> Window:
    version = draw(st.sampled_from([b"2", b"2", b"1"]))
    if version == b"2":
        events = draw(
            st.lists(
                st.fixed_dictionaries({"message": TEXT, "n": st.integers(0, 2**40)}),
                max_size=5,
            )
        )
    else:
        events = draw(st.lists(st.fixed_dictionaries({"message": TEXT, "k": TEXT}), max_size=5))
    first = draw(st.integers(1, 2**31))
    if version == b"2":
        frames = encode_json_frames(events, first)
    else:
        frames = b"".join(v1_data(seq, e) for seq, e in enumerate(events, first))
    if events and draw(st.booleans()):
        # a window may be sent as several C frames, each holding whole data frames
        cuts = _frames(frames)
        group = draw(st.integers(1, len(cuts)))
        body = b"".join(
            c_frame(b"".join(cuts[i : i + group]), version) for i in range(0, len(cuts), group)
        )
    else:
        body = frames
    head = version + b"W" + u32(len(events))
    if version == b"2" and draw(st.booleans()):
        head = encode_window_size(len(events))
    last = first + len(events) - 1 if events else 0
    return Window(head + body, events, version, last)


def _frames(frames: bytes) -> list[bytes]:
    """Cut a run of J or D frames into frames."""
    out, pos = [], 0
    while pos < len(frames):
        if frames[pos + 1 : pos + 2] == b"J":
            end = pos + 10 + struct.unpack(">I", frames[pos + 6 : pos + 10])[0]
        else:
            pairs = struct.unpack(">I", frames[pos + 6 : pos + 10])[0]
            end = pos + 10
            for _ in range(2 * pairs):
                end += 4 + struct.unpack(">I", frames[end : end + 4])[0]
        out.append(frames[pos:end])
        pos = end
    return out


def fire_steps():
    return st.lists(st.tuples(st.just(0), st.booleans()), min_size=1, max_size=4)


def clock_steps():
    return st.lists(
        st.tuples(st.sampled_from([0, 0, 0, 0, 3, 6, 61]), st.booleans()), min_size=1, max_size=4
    )


@FUZZ
@given(
    st.data(),
    st.lists(windows(), min_size=1, max_size=4),
    st.lists(st.sampled_from(SINK_MODES), min_size=1, max_size=4),
)
def test_valid_windows_split_anywhere_reach_the_sink_whole_and_are_acked(data, wins, modes):
    """Exact oracle: windows reach the sink in order, whole; the ACK of a confirmed window names
    its last seq; the first failed window closes the connection, later ones get nothing."""
    stream = b"".join(w.data for w in wins)
    steps = data.draw(fire_steps())
    case, _ = run(stream, data.draw(split_points(len(stream))), modes, steps)
    acks = case.check()
    batches = iter(case.sink.batches)
    expected_acks = []
    for win in wins:
        if not win.events:
            expected_acks.append((win.version, 0))
            continue
        batch = next(batches)
        fields = [{k: e[k] for k in e if not k.startswith("@")} for e in batch.events]
        assert fields == win.events
        if batch.fired != "ok":
            break
        expected_acks.append((win.version, win.last_seq))
    assert next(batches, None) is None, "a window after a failed one reached the sink"
    assert [(v, s) for _, v, s in acks] == expected_acks


@FUZZ
@given(
    st.data(),
    st.lists(hostile_lines(max_levels=1020), min_size=1, max_size=MAX_WINDOW),
    st.booleans(),
)
def test_each_hostile_json_frame_is_taken_or_refused_alone_and_the_window_acked(
    data, lines, compressed
):
    """Deep nesting (past what the policy writes; a J frame cannot hold orjson's own limit
    under this input's max_frame) and integers beyond 64 bits: one event per J frame, the too
    deep ones as ``_jsonparsefailure`` events holding the payload, the window delivered whole
    and acknowledged, the connection kept. A NaN/Infinity token is not JSON: that stream is
    refused with its reason."""
    frames = b"".join(
        b"2J" + u32(seq) + u32(len(line)) + line for seq, (line, _) in enumerate(lines, 1)
    )
    if compressed:
        frames = b"".join(c_frame(f) for f in _frames(frames))
    stream = encode_window_size(len(lines)) + frames
    case, _ = run(stream, data.draw(split_points(len(stream))), ("ok",))
    acks = case.check()
    if any(token in line for line, _ in lines for token in NOT_JSON_NUMBERS):
        # not JSON at all: the stream is refused with its reason, as Logstash's beats input
        # does, and the window is not acknowledged (nothing of it reached the sink)
        assert case.closed_by_error
        assert case.sink.batches == [] and [seq for _, _, seq in acks if seq] == []
        return
    assert not case.closed_by_error
    assert [seq for _, _, seq in acks][-1:] == [len(lines)]
    (batch,) = case.sink.batches
    got = [{k: v for k, v in e.items() if not k.startswith("@")} for e in batch.events]
    assert same_json(got, [event for _, event in lines])


def pipelines():
    return st.lists(windows(), min_size=1, max_size=3).map(lambda ws: b"".join(w.data for w in ws))


@FUZZ
@given(
    st.data(),
    pipelines(),
    mutations(),
    st.lists(st.sampled_from(SINK_MODES), min_size=1, max_size=3),
    st.booleans(),
)
def test_mutated_windows_never_crash_nor_ack_undelivered_events(data, stream, ops, modes, hang):
    stream = mutate(stream, ops)
    points = data.draw(split_points(len(stream)))
    run(stream, points, modes, data.draw(clock_steps()), hang_up=hang)


@FUZZ
@given(
    st.sampled_from([b"", b"2W\x00\x00\x00\x02", b"2W\x00\x00\x00\x01" + b"2C\x00\x00\x00\x40"]),
    st.binary(max_size=400),
    st.data(),
)
def test_random_bytes_never_crash(prefix, noise, data):
    stream = prefix + noise
    run(stream, data.draw(split_points(len(stream))), ("ok", "held"), data.draw(clock_steps()))


# -- the bad inputs of docs/reliability.md, one by one ------------------------------------------


def j(seq: int, payload: bytes) -> bytes:
    return b"2J" + u32(seq) + u32(len(payload)) + payload


W1 = b"2W" + u32(1)
BAD_STREAMS = {
    "unknown version byte": (b"3W" + u32(1), "unknown protocol version byte"),
    "unknown frame type": (b"2Z" + u32(1), "unknown frame type"),
    "J length 0": (W1 + j(1, b""), "JSON length 0"),
    "J not JSON": (W1 + j(1, b"{nope"), "not valid JSON"),
    "J JSON but not an object": (W1 + j(1, b"[1,2]"), "not an object"),
    "J invalid UTF-8": (W1 + j(1, b'{"a":"\xff"}'), "not valid JSON"),
    "J over max_frame": (W1 + b"2J" + u32(1) + u32(MAX_FRAME + 1), "over the limit"),
    "window over max_window": (b"2W" + u32(MAX_WINDOW + 1), "over the limit"),
    "C length 0": (W1 + b"2C" + u32(0), "C frame of length 0"),
    "C over max_frame": (W1 + b"2C" + u32(MAX_FRAME + 1), "over the limit"),
    "C not zlib": (W1 + b"2C" + u32(8) + b"notzlib!", "not a valid zlib stream"),
    "zlib bomb in C": (W1 + c_frame(j(1, b'{"a":"' + b"x" * 50_000 + b'"}')), "inflates"),
    "C truncated inner frame": (W1 + c_frame(j(1, b'{"a":1}')[:-2]), "truncated frame"),
    "W inside C": (W1 + c_frame(b"2W" + u32(1)), "not allowed inside"),
    "C inside C": (W1 + c_frame(c_frame(j(1, b"{}"))), "not allowed inside"),
    "bytes after the zlib stream in C": (
        W1 + b"2C" + u32(len(zlib.compress(j(1, b"{}"))) + 3) + zlib.compress(j(1, b"{}")) + b"abc",
        "after the end of the zlib stream",
    ),
    "ACK from the sender": (b"2A" + u32(1), "must not send ACK"),
    "data frame outside a window": (j(1, b"{}"), "outside a window"),
    "D frame invalid UTF-8": (
        b"1W" + u32(1) + b"1D" + u32(1) + u32(1) + u32(1) + b"\xff" + u32(0),
        "invalid UTF-8",
    ),
    "D frame with no fields": (b"1W" + u32(1) + b"1D" + u32(1) + u32(0), "no fields"),
}


@pytest.mark.parametrize("name", sorted(BAD_STREAMS))
def test_bad_stream_closes_with_its_reason(name):
    data, reason = BAD_STREAMS[name]
    with LogWatch() as watch:
        case = LumberjackRun()
        case.send([data])
        assert case.gone, "connection left open"
        assert case.wire.value() == b"", "something was acknowledged"
        assert case.sink.batches == []
    assert reason in watch.text()
    assert watch.defects() == []


def test_window_before_the_bad_frame_is_still_acked_once_delivered():
    """A protocol error after a complete window that the sink holds: the paused transport reads
    the bad bytes only after that window's ACK, then the connection closes."""
    good = W1 + j(7, b'{"a":1}')
    with LogWatch() as watch:
        case = LumberjackRun(("held",))
        case.send([good, b"2Z" + u32(0)])
        assert not case.gone and case.wire.value() == b""
        case.sink.fire_held()
        case.pump()
    assert case.wire.value() == b"2A" + u32(7)
    assert case.gone and "unknown frame type" in watch.text()


def test_bad_frame_in_the_same_read_as_a_window_drops_both_unacked():
    """The window and the bad bytes in one read: nothing is delivered nor ACKed (the sender
    resends the window on its next connection)."""
    with LogWatch() as watch:
        case = LumberjackRun()
        case.send([W1 + j(7, b'{"a":1}') + b"2Z" + u32(0)])
    assert case.gone and case.wire.value() == b"" and case.sink.batches == []
    assert "unknown frame type" in watch.text()


def test_sink_failure_closes_without_ack():
    case, watch = run(W1 + j(1, b'{"a":1}'), [], ("fail",))
    assert case.wire.value() == b""
    assert "sink failed" in watch.text()


def test_silent_sender_is_closed_after_the_inactivity_timeout():
    case = LumberjackRun()
    case.send([b"2W" + u32(2) + j(1, b"{}")])  # half a window, then silence
    case.clock.advance(INACTIVITY - 1)
    case.settle()
    assert not case.gone
    case.clock.advance(1.5)
    case.settle()
    assert case.gone and case.sink.batches == []


def test_keepalives_while_the_sink_holds_a_window_and_no_timeout_meanwhile():
    case = LumberjackRun(("held",))
    case.send([W1 + j(3, b'{"a":1}')])
    for _ in range(int(INACTIVITY * 3 / KEEPALIVE)):
        case.clock.advance(KEEPALIVE)
    case.settle()
    assert not case.gone
    assert set(case.acks()) >= {(0, b"2", 0)}
    case.finish()
    assert orjson.dumps(case.sink.batches[0].events[0]["a"]) == b"1"
    assert case.acks()[-1][2] == 3


# -- the memory and CPU attacks of issue 11 -------------------------------------------------------

ATTACK_WINDOW_BYTES = 256 * 1024


def _big_events(count: int, first: int, size: int = 10_000) -> bytes:
    payload = b'{"message":"' + b"x" * size + b'"}'
    return b"".join(j(seq, payload) for seq in range(first, first + count))


def _unfinished_c_window() -> bytes:
    """W 10000 whose C frames of very compressible events never complete it (1 MB sent held
    1.1 GB before max_window_bytes)."""
    frames = []
    for n in range(0, 200, 10):
        inner = _big_events(10, n + 1)
        body = zlib.compress(inner, 9)
        frames.append(b"2C" + u32(len(body)) + body)
    return b"2W" + u32(10_000) + b"".join(frames)


def _unfinished_j_window() -> bytes:
    return b"2W" + u32(10_000) + _big_events(200, 1, size=1_000)


def _w0_flood() -> bytes:
    return W1 + j(1, b"{}") + (b"2W" + u32(0)) * 5_000


ATTACKS = {
    "W 10000, C frames never completing it": (_unfinished_c_window, ("ok",)),
    "W 10000, J frames never completing it": (_unfinished_j_window, ("ok",)),
    "W 0 flood behind a window with the sink": (_w0_flood, ("held",)),
}


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 30])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_are_refused_by_bytes_held(name, piece):
    make, modes = ATTACKS[name]
    stream = make()
    with LogWatch() as watch:
        case = LumberjackRun(
            modes,
            max_window=10_000,
            max_frame=1 << 20,
            max_inflated=1 << 20,
            max_window_bytes=ATTACK_WINDOW_BYTES,
        )
        pieces = [stream[at : at + piece] for at in range(0, len(stream), piece)]
        if piece == 1 and len(pieces) > 40_000:
            pieces = [*pieces[:20_000], b"".join(pieces[20_000:])]  # the rest in one read
        case.send(pieces)
        case.finish()
    if "W 0" in name and piece < len(stream):
        # read after read: each W 0 answered as it comes while the paused transport waits
        assert not case.closed_by_error and len(case.acks()) == 5_001
    else:
        assert case.closed_by_error and "max_window_bytes" in watch.text()
    assert watch.defects() == []
    assert case.peak_held <= ATTACK_WINDOW_BYTES
    assert case.proto.exchange.held() == 0
    case.check()


def test_v1_data_frames_cut_anywhere_cost_steps_linear_in_their_fields():
    pairs = {f"k{i}": "v" * (i % 7) for i in range(3_000)}
    stream = b"1W" + u32(1) + v1_data(1, pairs)
    for piece in (1, 3, 64, 4096):
        case = LumberjackRun(max_frame=1 << 20)
        case.send([stream[at : at + piece] for at in range(0, len(stream), piece)])
        case.finish()
        assert case.sink.batches[0].events[0]["k2999"] == "v" * (2999 % 7)
        steps = case.proto.exchange.decoder.steps
        assert steps <= 2 * len(pairs) + len(stream) // piece + 2
