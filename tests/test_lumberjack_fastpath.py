"""The framed input's fast path (runs of `J` frames read in one loop, a run added to its window
in one go) gives what the careful path (one `_parse` per frame, one frame at a time into the
window) gives: the same frames, events, errors, windows, ACKs and held bytes, however the
stream is cut and whatever the payloads hold."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_logstash.codecs.jsonpolicy import MAX_DEPTH, dumps
from twisted_logstash.wires.lumberjack.decoder import FrameDecoder
from twisted_logstash.wires.lumberjack.frames import (
    JsonDataFrame,
    JsonDataRun,
    LumberjackProtocolError,
)
from twisted_logstash.wires.lumberjack.server import (
    EVENT_OVERHEAD,
    LumberjackExchange,
    LumberjackInputSettings,
)


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def j(seq: int, payload: bytes) -> bytes:
    return b"2J" + u32(seq) + u32(len(payload)) + payload


def w(count: int) -> bytes:
    return b"2W" + u32(count)


def c(inner: bytes, level: int = 3) -> bytes:
    body = zlib.compress(inner, level)
    return b"2C" + u32(len(body)) + body


GOOD = [
    b'{"message":"hello","n":1}',
    b'{"big":123456789012345678901234567890,"neg":-98765432109876543210987}',
    b'{"nested":{"a":[1,2,{"b":null}]},"u":"\\u00e9\\ud83d\\ude00"}',
    b"  {}  ",
    b'{"long":"' + b"x" * 3000 + b'"}',  # over 2000 bytes: read by the careful path
    b'{"a":' * (MAX_DEPTH + 5) + b"1" + b"}" * (MAX_DEPTH + 5),  # too deep: a failure event
    b'{"dup":1,"dup":2}',
]
BAD = [
    b"[1,2]",  # not an object
    b'"text"',
    b"7",
    b'{"a":',  # not JSON
    b'{"a":1}{',
    b'{"a":NaN}',
    b'{"a":"\xff"}',  # not UTF-8
    b"",  # length 0
]


def careful(decoder: FrameDecoder) -> FrameDecoder:
    decoder.fast = False
    return decoder


def outcome(stream: bytes, cuts: list[int], fast: bool, **limits) -> tuple:
    """The frames `stream` decodes to when fed in pieces cut at `cuts`, and the error if any."""
    decoder = FrameDecoder(**limits)
    decoder.fast = fast
    frames: list = []
    start = 0
    try:
        for cut in [*cuts, len(stream)]:
            frames.extend(decoder.feed(stream[start:cut]))
            start = cut
    except LumberjackProtocolError as exc:
        return frames, type(exc), str(exc)
    return frames, None, decoder.pending


def mixed_window(payloads: list[bytes], compressed: bool) -> bytes:
    inner = b"".join(j(seq, payload) for seq, payload in enumerate(payloads, 1))
    return w(len(payloads)) + (c(inner) if compressed else inner)


@pytest.mark.parametrize("compressed", [True, False])
def test_every_byte_boundary_gives_the_careful_frames(compressed):
    payloads = [GOOD[0], GOOD[1], GOOD[3], GOOD[2], GOOD[6], GOOD[0]]
    stream = mixed_window(payloads, compressed) + mixed_window(payloads[:2], compressed)
    expected = outcome(stream, [], fast=False)
    assert expected[1] is None and len(expected[0]) == 10
    for cut in range(len(stream) + 1):
        assert outcome(stream, [cut], fast=True) == expected, cut
        assert outcome(stream, [cut], fast=False) == expected, cut


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("payload", GOOD + BAD)
def test_each_kind_of_payload_between_good_ones_is_taken_or_refused_alike(payload, compressed):
    payloads = [GOOD[0], payload, GOOD[1]]
    stream = mixed_window(payloads, compressed)
    fast = outcome(stream, [], fast=True)
    assert fast == outcome(stream, [], fast=False)
    if payload in BAD:
        assert fast[1] is not None
        assert fast[2] == outcome(stream, [], fast=False)[2]
    else:
        assert fast[1] is None
        assert [f.seq for f in fast[0][1:]] == [1, 2, 3]


def test_big_integers_stay_exact_and_too_deep_becomes_a_failure_event():
    frames, error, _ = outcome(mixed_window([GOOD[1], GOOD[5]], True), [], fast=True)
    assert error is None
    assert frames[1].event["big"] == 123456789012345678901234567890
    assert frames[2].event["tags"] == ["_jsonparsefailure"]


def test_runs_hold_the_frames_decode_hands_out():
    stream = mixed_window([GOOD[0], GOOD[4], GOOD[1]], True) + mixed_window([GOOD[3]], False)
    decoder = FrameDecoder()
    runs = [f for frames in decoder.decode_runs(stream) for f in frames]
    kinds = [type(f).__name__ for f in runs]
    assert kinds == ["WindowSizeFrame", "JsonDataRun", "WindowSizeFrame", "JsonDataRun"]
    frames = [one for f in runs for one in (f.frames() if type(f) is JsonDataRun else [f])]
    assert frames == FrameDecoder().feed(stream)
    assert runs[1].size == len(GOOD[0]) + len(GOOD[4]) + len(GOOD[1])
    assert runs[1].last_seq == 3
    assert [type(f) for f in frames].count(JsonDataFrame) == 4


payload_strategy = st.one_of(
    st.sampled_from(GOOD + BAD),
    st.dictionaries(
        st.text(max_size=5),
        st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=8), st.none()),
        max_size=4,
    ).map(dumps),
)


@settings(max_examples=200, deadline=None)
@given(
    windows=st.lists(
        st.tuples(st.lists(payload_strategy, min_size=1, max_size=5), st.booleans()),
        min_size=1,
        max_size=3,
    ),
    data=st.data(),
)
def test_any_payloads_cut_anywhere_decode_as_the_careful_path_does(windows, data):
    stream = b"".join(mixed_window(payloads, compressed) for payloads, compressed in windows)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    assert outcome(stream, cuts, fast=True) == outcome(stream, cuts, fast=False)
    assert outcome(stream, cuts, fast=True, max_frame=100) == outcome(
        stream, cuts, fast=False, max_frame=100
    )


# -- the exchange: a run into its window in one go, or frame by frame ---------------------------


class Connection:
    def set_phase(self, phase: str) -> None:
        pass

    def peer(self) -> str:
        return "peer"


def exchange_outcome(stream: bytes, cuts: list[int], fast: bool, **settings) -> list:
    """What the exchange does with `stream` cut at `cuts`: after each piece, what `receive`
    gives (each window acked at once), the bytes held and the error."""
    exchange = LumberjackExchange(Connection(), LumberjackInputSettings(**settings))
    exchange.decoder.fast = fast
    seen: list = []
    start = 0
    for cut in [*cuts, len(stream)]:
        results = exchange.receive(stream[start:cut])
        start = cut
        while True:
            seen.append((repr(results), exchange.held()))
            batches = [r for r in results if type(r) is list]
            if not batches:
                break
            seen.append(exchange.ack(batches[0]))
            results = exchange.receive(b"")
    seen.append(exchange.error)
    return seen


@pytest.mark.parametrize(
    "stream",
    [
        # W counts that end inside a run: the rest of the run is outside a window
        w(2) + c(b"".join(j(n, GOOD[0]) for n in range(1, 5))),
        # a run across two windows (plain J frames: one run for them all)
        w(2) + j(1, GOOD[0]) + j(2, GOOD[1]) + w(1) + j(7, GOOD[2]),
        # a new W before the window is complete
        w(3) + c(j(1, GOOD[0])) + w(1) + c(j(1, GOOD[1])),
        w(0) + w(2) + c(j(5, GOOD[3]) + j(6, GOOD[3])),
        # data outside any window
        c(j(1, GOOD[0])),
    ],
)
def test_windows_split_and_errors_as_frame_by_frame(stream):
    for cut in range(len(stream) + 1):
        expected = exchange_outcome(stream, [cut], fast=False)
        assert exchange_outcome(stream, [cut], fast=True) == expected, cut


def test_the_byte_limit_is_crossed_at_the_same_frame_with_the_same_message():
    payload = b'{"message":"' + b"x" * 200 + b'"}'
    stream = w(50) + c(b"".join(j(n, payload) for n in range(1, 51)))
    limit = 20 * (len(payload) + EVENT_OVERHEAD) + 500
    for cut in (0, 7, 100, len(stream) // 2, len(stream)):
        expected = exchange_outcome(stream, [cut], fast=False, max_window_bytes=limit)
        assert "max_window_bytes" in expected[-1]
        assert exchange_outcome(stream, [cut], fast=True, max_window_bytes=limit) == expected


@settings(max_examples=100, deadline=None)
@given(
    windows=st.lists(
        st.tuples(
            st.integers(0, 6),
            st.lists(st.sampled_from(GOOD[:4] + GOOD[6:] + BAD[:1]), max_size=6),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
    ),
    limit=st.sampled_from([None, 3000, 9000]),
    data=st.data(),
)
def test_the_exchange_does_what_it_does_frame_by_frame(windows, limit, data):
    stream = b""
    seq = 1
    for count, payloads, compressed in windows:
        inner = b"".join(j(seq + n, p) for n, p in enumerate(payloads))
        seq += len(payloads)
        stream += w(count) + (c(inner) if compressed and inner else inner)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    settings_ = {} if limit is None else {"max_window_bytes": limit}
    assert exchange_outcome(stream, cuts, fast=True, **settings_) == exchange_outcome(
        stream, cuts, fast=False, **settings_
    )
