"""The incremental Lumberjack decoder: real senders' byte streams, any cut points, bad input."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_logstash.wires.lumberjack.decoder import FrameDecoder
from twisted_logstash.wires.lumberjack.frames import (
    AckFrame,
    CompressedFrameError,
    FrameTooLargeError,
    JsonDataFrame,
    LumberjackProtocolError,
    V1DataFrame,
    WindowSizeFrame,
    encode_window,
)


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def stored_zlib(data: bytes) -> bytes:
    """A zlib stream written by hand (header, one stored deflate block, adler32), so that the
    decoder is checked against bytes no compressor of ours produced."""
    assert len(data) < 0x10000
    block = b"\x01" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data
    return b"\x78\x01" + block + u32(zlib.adler32(data))


# go-lumber client/v2 Client.Send for two events, json.Marshal'ed (Go escapes <, > and &):
# "2W" count, then per event "2J" seq(1..n) len payload;
# compressed: "2W" count "2C" len zlib(all the J frames)
GO_EVENT_1 = b'{"@timestamp":"2026-11-23T10:00:00.000Z","message":"a \\u003cb\\u003e \\u0026 c"}'
GO_EVENT_2 = b'{"beat":{"name":"web-1"},"offset":42,"tags":["x","y"]}'
GO_J_FRAMES = (
    b"2J" + b"\x00\x00\x00\x01" + u32(len(GO_EVENT_1)) + GO_EVENT_1
    + b"2J" + b"\x00\x00\x00\x02" + u32(len(GO_EVENT_2)) + GO_EVENT_2
)  # fmt: skip
GO_PLAIN = b"2W\x00\x00\x00\x02" + GO_J_FRAMES
GO_STORED = stored_zlib(GO_J_FRAMES)
GO_COMPRESSED = b"2W\x00\x00\x00\x02" + b"2C" + u32(len(GO_STORED)) + GO_STORED
GO_FRAMES = [
    WindowSizeFrame(2),
    JsonDataFrame(1, {"@timestamp": "2026-11-23T10:00:00.000Z", "message": "a <b> & c"}),
    JsonDataFrame(2, {"beat": {"name": "web-1"}, "offset": 42, "tags": ["x", "y"]}),
]

# a version 1 forwarder: "1W" count, then "1D" seq pairs (klen key vlen value)*
V1_PLAIN = (
    b"1W\x00\x00\x00\x02"
    + b"1D\x00\x00\x00\x01\x00\x00\x00\x02"
    + u32(4) + b"line" + u32(5) + b"hello"
    + u32(4) + b"file" + u32(13) + b"/var/log/a.\xc3\xa9"
    + b"1D\x00\x00\x00\x02\x00\x00\x00\x01"
    + u32(4) + b"line" + u32(0)
)  # fmt: skip
V1_FRAMES = [
    WindowSizeFrame(2, version=0x31),
    V1DataFrame(1, {"line": "hello", "file": "/var/log/a.é"}),
    V1DataFrame(2, {"line": ""}),
]


def decode_whole(data: bytes, **limits) -> list:
    return FrameDecoder(**limits).feed(data)


def decode_bytewise(data: bytes, **limits) -> list:
    decoder = FrameDecoder(**limits)
    frames = []
    for i in range(len(data)):
        frames.extend(decoder.feed(data[i : i + 1]))
    assert not decoder.pending
    return frames


@pytest.mark.parametrize("decode", [decode_whole, decode_bytewise])
def test_go_lumber_plain_window(decode):
    assert decode(GO_PLAIN) == GO_FRAMES


@pytest.mark.parametrize("decode", [decode_whole, decode_bytewise])
def test_go_lumber_compressed_window(decode):
    assert decode(GO_COMPRESSED) == GO_FRAMES


def test_go_lumber_compressed_at_level_3():
    body = zlib.compress(GO_J_FRAMES, 3)
    data = b"2W\x00\x00\x00\x02" + b"2C" + u32(len(body)) + body
    assert decode_whole(data) == GO_FRAMES


@pytest.mark.parametrize("decode", [decode_whole, decode_bytewise])
def test_v1_forwarder_window(decode):
    assert decode(V1_PLAIN) == V1_FRAMES


def test_v1_compressed_window_as_logstash_forwarder_sends_it():
    inner = V1_PLAIN[6:]
    body = stored_zlib(inner)
    data = b"1W\x00\x00\x00\x02" + b"1C" + u32(len(body)) + body
    assert decode_whole(data) == V1_FRAMES


def test_acks_and_empty_window():
    data = b"2A\x00\x00\x00\x00" + b"2A\x00\x00\x00\x7d" + b"1A\x00\x00\x00\x03" + b"2W" + u32(0)
    assert decode_bytewise(data) == [
        AckFrame(0),
        AckFrame(125),
        AckFrame(3, version=0x31),
        WindowSizeFrame(0),
    ]


def test_seq_numbers_are_handed_out_as_sent():
    data = encode_window([{"a": 1}, {"a": 2}], first_seq=126, compression_level=None)
    assert [f.seq for f in decode_whole(data)[1:]] == [126, 127]


def test_several_windows_in_one_feed_and_a_frame_cut_in_two():
    stream = GO_PLAIN + GO_COMPRESSED + V1_PLAIN
    decoder = FrameDecoder()
    first = decoder.feed(stream[:50])
    assert decoder.pending
    rest = decoder.feed(stream[50:])
    assert first + rest == GO_FRAMES + GO_FRAMES + V1_FRAMES
    assert not decoder.pending


events_strategy = st.lists(
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.booleans()),
        max_size=4,
    ),
    min_size=0,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    windows=st.lists(
        st.tuples(events_strategy, st.sampled_from([None, 1, 3, 9])), min_size=1, max_size=3
    ),
    data=st.data(),
)
def test_any_cut_points_give_the_same_frames(windows, data):
    stream = b"".join(encode_window(events, 1, level) for events, level in windows) + V1_PLAIN
    expected = decode_whole(stream)
    assert [f.event for f in expected if hasattr(f, "event")][-2:] == [
        {"line": "hello", "file": "/var/log/a.é"},
        {"line": ""},
    ]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = FrameDecoder()
    frames = []
    start = 0
    for cut in [*cuts, len(stream)]:
        frames.extend(decoder.feed(stream[start:cut]))
        start = cut
    assert frames == expected
    assert not decoder.pending


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([b"", b"2", b"1", b"2C", b"2J", b"1D", b"2W"]))
def test_arbitrary_bytes_only_raise_the_codec_errors(junk, prefix):
    decoder = FrameDecoder(max_frame=4096, max_inflated=4096)
    try:
        decoder.feed(prefix + junk)
    except LumberjackProtocolError:
        with pytest.raises(LumberjackProtocolError):
            decoder.feed(b"2W\x00\x00\x00\x00")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_arbitrary_zlib_payload_only_raises_the_codec_errors(junk):
    try:
        decode_whole(b"2C" + u32(len(junk)) + junk, max_inflated=4096)
    except LumberjackProtocolError:
        pass


def raises(data: bytes, error=LumberjackProtocolError, **limits) -> str:
    with pytest.raises(error) as info:
        FrameDecoder(**limits).feed(data)
    return str(info.value)


def test_malformed_frames_are_refused_with_a_reason():
    assert "version" in raises(b"3W\x00\x00\x00\x01")
    assert "frame type" in raises(b"2X\x00\x00\x00\x01")
    assert "frame type" in raises(b"2D" + u32(1) + u32(1))  # D is version 1 only
    assert "frame type" in raises(b"1J" + u32(1) + u32(2) + b"{}")  # J is version 2 only
    assert "length 0" in raises(b"2J" + u32(1) + u32(0))
    assert "not an object" in raises(b"2J" + u32(1) + u32(7) + b"[1,2,3]")
    assert "not an object" in raises(b"2J" + u32(1) + u32(3) + b'"x"')
    assert "not valid JSON" in raises(b"2J" + u32(7) + u32(2) + b'{"')
    assert "not valid JSON" in raises(b"2J" + u32(1) + u32(10) + b'{"a":"\xff\xfe"}')
    assert "not valid JSON" in raises(b"2J" + u32(1) + u32(9) + b'{"a":NaN}')
    assert "no fields" in raises(b"1D" + u32(1) + u32(0))
    assert "UTF-8" in raises(b"1D" + u32(1) + u32(1) + u32(1) + b"\xff" + u32(0))


def test_json_scalar_is_not_an_event():
    assert "not an object" in raises(b"2J" + u32(1) + u32(1) + b"5")


def test_bad_zlib_is_refused():
    assert "zlib" in raises(b"2C" + u32(4) + b"abcd", CompressedFrameError)
    truncated = zlib.compress(GO_J_FRAMES)[:-3]
    assert "ends before" in raises(b"2C" + u32(len(truncated)) + truncated, CompressedFrameError)
    trailing = zlib.compress(GO_J_FRAMES) + b"xx"
    assert "after the end" in raises(b"2C" + u32(len(trailing)) + trailing, CompressedFrameError)
    assert "length 0" in raises(b"2C" + u32(0), CompressedFrameError)


def test_compressed_payload_must_hold_whole_data_frames_of_its_version():
    def compressed(inner: bytes, version: bytes = b"2") -> bytes:
        body = zlib.compress(inner)
        return version + b"C" + u32(len(body)) + body

    nested = compressed(compressed(GO_J_FRAMES))
    assert "not allowed inside" in raises(nested, CompressedFrameError)
    assert "not allowed inside" in raises(compressed(b"2W" + u32(1)), CompressedFrameError)
    assert "not allowed inside" in raises(compressed(b"2A" + u32(1)), CompressedFrameError)
    assert "not allowed inside" in raises(compressed(V1_PLAIN[6:]), CompressedFrameError)
    assert "truncated" in raises(compressed(GO_J_FRAMES[:-1]), CompressedFrameError)
    assert decode_whole(compressed(b"")) == []


def test_compressed_payload_ending_in_one_byte_is_a_truncated_frame():
    # one byte cannot even hold a frame's version and type: the codec error, not an IndexError
    for inner in (b"2", GO_J_FRAMES + b"2"):
        body = zlib.compress(inner)
        assert "truncated" in raises(b"2C" + u32(len(body)) + body, CompressedFrameError)


def test_limits():
    assert "window size" in raises(b"2W" + u32(11), FrameTooLargeError, max_window=10)
    decode_whole(b"2W" + u32(10), max_window=10)
    assert "J frame" in raises(b"2J" + u32(1) + u32(101), FrameTooLargeError, max_frame=100)
    assert "C frame" in raises(b"2C" + u32(101), FrameTooLargeError, max_frame=100)
    big_v1 = b"1D" + u32(1) + u32(1) + u32(60) + b"k" * 60 + u32(60)
    assert "D frame" in raises(big_v1, FrameTooLargeError, max_frame=100)
    assert "D frame" in raises(b"1D" + u32(1) + u32(13), FrameTooLargeError, max_frame=100)
    limit = len(GO_J_FRAMES) - 1
    assert "inflates" in raises(GO_COMPRESSED, FrameTooLargeError, max_inflated=limit)
    assert decode_whole(GO_COMPRESSED, max_inflated=len(GO_J_FRAMES)) == GO_FRAMES


def test_zlib_bomb_is_refused_before_it_is_all_read():
    size = 64 * 1024 * 1024  # one J frame's worth: zeros alone are refused as a bad frame sooner
    bomb = zlib.compress(b"2J" + u32(1) + u32(size) + b"\x00" * size, 9)
    stream = b"2W" + u32(1) + b"2C" + u32(len(bomb)) + bomb
    decoder = FrameDecoder(max_inflated=1024 * 1024)
    with pytest.raises(FrameTooLargeError):
        for start in range(0, len(stream), 1024):
            decoder.feed(stream[start : start + 1024])
    assert start < len(stream) // 10


def test_a_failed_decoder_refuses_more_input():
    decoder = FrameDecoder()
    with pytest.raises(LumberjackProtocolError):
        decoder.feed(b"9W")
    with pytest.raises(LumberjackProtocolError, match="already failed"):
        decoder.feed(GO_PLAIN)


def test_a_tls_client_hello_on_a_plain_port_is_named():
    hello = bytes.fromhex("16030100c8010000c40303") + bytes(40)
    with pytest.raises(LumberjackProtocolError, match="TLS handshake received on a plain"):
        FrameDecoder().feed(hello)


def test_other_unknown_version_bytes_keep_their_message():
    with pytest.raises(LumberjackProtocolError, match="unknown protocol version byte 0x16"):
        FrameDecoder().feed(b"\x16\x01\x00\x00")


@pytest.mark.parametrize("start", [b"POST / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\n", b"PUT /"])
def test_an_http_request_on_the_port_is_named_as_such(start):
    """A sender of the native wire at a Lumberjack port: said in words, not as a version byte."""
    with pytest.raises(LumberjackProtocolError, match="an HTTP request on a Lumberjack port"):
        FrameDecoder().feed(start)
