"""Body compression: round trips, interop between backends, bounds, and hostile input."""

from __future__ import annotations

import gzip
import io
import struct
import tracemalloc
import zlib

import cramjam
import pytest
import snappy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twisted_logstash.codecs import compression
from twisted_logstash.codecs.compression import (
    _BACKENDS,
    ENCODINGS,
    Decompressor,
    available_backends,
    compress,
    compressor,
    decompress,
    normalize,
)
from twisted_logstash.errors import ConfigurationError, DecompressionError, TooLargeError

BACKENDS = available_backends()
COMPRESSED = ("gzip", "deflate", "snappy")
LIMIT = 1 << 24
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

payloads = st.one_of(
    st.binary(max_size=3000),
    st.builds(lambda text, n: text.encode() * n, st.text(max_size=40), st.integers(1, 3000)),
)


def feed_in_pieces(decompressor: Decompressor, data: bytes, cuts: list[int]) -> bytes:
    out = []
    start = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        out.append(decompressor.feed(data[start:cut]))
        start = cut
    out.append(decompressor.finish())
    return b"".join(out)


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "encoding"),
    [
        ("gzip", "gzip"),
        ("x-gzip", "gzip"),
        (" GZIP ", "gzip"),
        ("deflate", "deflate"),
        ("x-deflate", "deflate"),
        ("snappy", "snappy"),
        ("identity", "identity"),
        ("none", "identity"),
        ("", "identity"),
    ],
)
def test_normalize_spellings(spelling, encoding):
    assert normalize(spelling) == encoding


@pytest.mark.parametrize("spelling", ["br", "zstd", "gzip, deflate", "lz4"])
def test_normalize_refuses_unknown_encodings_naming_the_accepted_ones(spelling):
    with pytest.raises(ConfigurationError, match=r"gzip.*deflate.*snappy"):
        normalize(spelling)


def test_the_default_backend_is_isal_when_importable():
    pytest.importorskip("isal")
    assert BACKENDS[0] == "isal"
    assert "zlib" in BACKENDS


# -- round trips ---------------------------------------------------------------------------


@FAST
@given(data=payloads, encoding=st.sampled_from(ENCODINGS), backend=st.sampled_from(BACKENDS))
def test_round_trip_every_encoding(data, encoding, backend):
    packed = compress(data, encoding, backend=backend)
    assert decompress(packed, encoding, LIMIT, backend=backend) == data


@FAST
@given(
    data=payloads,
    encoding=st.sampled_from(("gzip", "deflate")),
    level=st.integers(0, 9),
    packer=st.sampled_from(BACKENDS),
    unpacker=st.sampled_from(BACKENDS),
)
def test_each_backend_inflates_the_other_ones_output_at_every_level(
    data, encoding, level, packer, unpacker
):
    packed = compress(data, encoding, level, backend=packer)
    assert decompress(packed, encoding, LIMIT, backend=unpacker) == data


@pytest.mark.parametrize("backend", BACKENDS)
def test_gzip_is_readable_by_the_stdlib_and_reads_the_stdlib(backend):
    data = b'{"message":"hello"}\n' * 500
    assert gzip.decompress(compress(data, "gzip", backend=backend)) == data
    assert decompress(gzip.compress(data, 6), "gzip", LIMIT, backend=backend) == data


def test_gzip_defaults_to_level_1():
    data = b'{"message":"hello world","n":1234567}\n' * 5000
    assert compress(data, "gzip", backend="zlib") == compress(data, "gzip", 1, backend="zlib")
    assert compress(data, "gzip", backend="zlib") != compress(data, "gzip", 6, backend="zlib")


@pytest.mark.parametrize("level", [-1, 10, "1", 1.0, True])
def test_compress_refuses_a_bad_level(level):
    with pytest.raises(ConfigurationError, match="level"):
        compress(b"x", "gzip", level)


def test_an_unknown_backend_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="backend"):
        compress(b"x", "gzip", backend="nope")


def test_snappy_output_is_the_framing_format_python_snappy_reads():
    data = b'{"message":"hello"}\n' * 10000  # several 64 KiB chunks
    packed = compress(data, "snappy")
    assert packed.startswith(b"\xff\x06\x00\x00sNaPpY")
    out = io.BytesIO()
    snappy.stream_decompress(io.BytesIO(packed), out)
    assert out.getvalue() == data
    assert bytes(cramjam.snappy.decompress(packed)) == data


def test_identity_passes_bytes_through():
    assert compress(b"abc", "none") == b"abc"
    assert decompress(b"abc", "identity", 3) == b"abc"


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_body_is_empty_under_every_encoding(encoding, backend):
    assert decompress(b"", encoding, 0, backend=backend) == b""


# -- incremental ---------------------------------------------------------------------------


@FAST
@given(
    data=payloads,
    encoding=st.sampled_from(ENCODINGS),
    backend=st.sampled_from(BACKENDS),
    cuts=st.lists(st.integers(0, 4000), max_size=12),
)
def test_feeding_in_pieces_equals_decompressing_the_whole(data, encoding, backend, cuts):
    packed = compress(data, encoding, backend=backend)
    whole = decompress(packed, encoding, LIMIT, backend=backend)
    pieces = feed_in_pieces(Decompressor(encoding, LIMIT, backend=backend), packed, cuts)
    assert pieces == whole == data


@pytest.mark.parametrize("encoding", COMPRESSED)
@pytest.mark.parametrize("backend", BACKENDS)
def test_one_byte_at_a_time(encoding, backend):
    data = b'{"message":"one byte at a time"}\n' * 300
    packed = compress(data, encoding, backend=backend)
    decompressor = Decompressor(encoding, LIMIT, backend=backend)
    out = b"".join(decompressor.feed(packed[i : i + 1]) for i in range(len(packed)))
    assert out + decompressor.finish() == data
    assert decompressor.total == len(data)


def test_a_decompressor_refuses_input_after_an_error_and_after_finish():
    decompressor = Decompressor("gzip", LIMIT)
    with pytest.raises(DecompressionError):
        decompressor.feed(b"this is not gzip")
    with pytest.raises(DecompressionError, match="already failed"):
        decompressor.feed(compress(b"x", "gzip"))
    done = Decompressor("gzip", LIMIT)
    done.feed(compress(b"x", "gzip"))
    done.finish()
    with pytest.raises(ValueError, match="after finish"):
        done.feed(b"")


# -- gzip and deflate specifics -------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_member_of_a_multi_member_gzip_body_is_inflated(backend):
    members = [compress(b"one\n", "gzip", backend=b) for b in BACKENDS]
    members += [gzip.compress(b"two\n"), gzip.compress(b""), gzip.compress(b"three\n")]
    body = b"".join(members)
    expected = b"one\n" * len(BACKENDS) + b"two\nthree\n"
    assert decompress(body, "gzip", LIMIT, backend=backend) == expected
    assert feed_in_pieces(Decompressor("gzip", LIMIT, backend=backend), body, [3, 19, 30]) == (
        expected
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_gzip_headers_with_name_extra_comment_and_header_crc(backend):
    payload = b"events\n" * 100
    deflated = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw = deflated.compress(payload) + deflated.flush()
    flags = 0x02 | 0x04 | 0x08 | 0x10  # FHCRC FEXTRA FNAME FCOMMENT
    header = b"\x1f\x8b\x08" + bytes((flags,)) + b"\x00\x00\x00\x00\x00\xff"
    header += struct.pack("<H", 4) + b"AB\x00\x00" + b"batch.ndjson\x00" + b"a comment\x00"
    header += struct.pack("<H", zlib.crc32(header) & 0xFFFF)
    trailer = struct.pack("<II", zlib.crc32(payload), len(payload))
    body = header + raw + trailer
    assert gzip.decompress(body) == payload  # the construction is right
    assert decompress(body, "gzip", LIMIT, backend=backend) == payload
    pieces = Decompressor("gzip", LIMIT, backend=backend)
    assert b"".join(pieces.feed(body[i : i + 1]) for i in range(len(body))) == payload
    assert pieces.finish() == b""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wbits", [9, 12, 15])
def test_deflate_accepts_zlib_streams_of_any_window(backend, wbits):
    data = b"deflate with a zlib header\n" * 200
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    body = packer.compress(data) + packer.flush()
    assert decompress(body, "deflate", LIMIT, backend=backend) == data


@pytest.mark.parametrize("backend", BACKENDS)
def test_deflate_accepts_raw_deflate_without_a_zlib_header(backend):
    data = b"raw deflate, as some clients send it\n" * 200
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = packer.compress(data) + packer.flush()
    assert decompress(body, "deflate", LIMIT, backend=backend) == data
    assert feed_in_pieces(Decompressor("deflate", LIMIT, backend=backend), body, [1, 2, 5]) == data


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_truncation_of_a_gzip_or_zlib_body_is_an_error(encoding, backend):
    body = compress(b"truncate me, please\n" * 50, encoding, backend=backend)
    for end in range(1, len(body)):
        with pytest.raises(DecompressionError, match=r"truncated|invalid"):
            decompress(body[:end], encoding, LIMIT, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bytes_after_the_end_are_refused(backend):
    gz = compress(b"data\n", "gzip", backend=backend)
    with pytest.raises(DecompressionError):
        decompress(gz + b"garbage", "gzip", LIMIT, backend=backend)
    zl = compress(b"data\n", "deflate", backend=backend)
    with pytest.raises(DecompressionError, match="after the end"):
        decompress(zl + b"x", "deflate", LIMIT, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_corrupt_gzip_checksum_is_an_error(backend):
    body = bytearray(compress(b"checksummed\n" * 20, "gzip", backend=backend))
    body[-6] ^= 0x01  # inside the CRC-32 trailer
    with pytest.raises(DecompressionError):
        decompress(bytes(body), "gzip", LIMIT, backend=backend)


# -- snappy specifics ------------------------------------------------------------------------

IDENTIFIER = b"\xff\x06\x00\x00sNaPpY"


def masked_crc32c(data: bytes) -> bytes:
    """The CRC the framing format stores, computed the slow way (tests only)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    crc ^= 0xFFFFFFFF
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    return struct.pack("<I", masked)


def chunk(kind: int, body: bytes) -> bytes:
    return bytes((kind,)) + len(body).to_bytes(3, "little") + body


def test_snappy_literal_chunks_padding_and_skippable_chunks():
    body = (
        IDENTIFIER
        + chunk(0x01, masked_crc32c(b"plain ") + b"plain ")
        + chunk(0xFE, b"\x00" * 100)  # padding
        + chunk(0x80, b"reserved but skippable")
        + chunk(0x00, masked_crc32c(b"packed") + snappy.compress(b"packed"))
        + IDENTIFIER  # streams may be concatenated
    )
    assert decompress(body, "snappy", LIMIT) == b"plain packed"
    assert feed_in_pieces(Decompressor("snappy", LIMIT), body, [3, 20, 30, 60, 120]) == (
        b"plain packed"
    )


def test_snappy_checks_the_crc():
    body = IDENTIFIER + chunk(0x01, b"\x00\x00\x00\x00" + b"wrong crc")
    with pytest.raises(DecompressionError, match="checksum"):
        decompress(body, "snappy", LIMIT)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (chunk(0x01, masked_crc32c(b"x") + b"x"), "no stream identifier"),
        (snappy.compress(b"raw, unframed snappy"), "no stream identifier"),
        (b"\xff\x05\x00\x00sNaPp", "identifier"),
        (b"\xff\x06\x00\x00SnApPy", "identifier"),
        (IDENTIFIER + chunk(0x02, b"x"), "unskippable"),
        (IDENTIFIER + chunk(0x01, b"\x00\x00"), "literal chunk"),
        (IDENTIFIER + chunk(0x01, b"\x00" * (65536 + 5)), "literal chunk"),
        (IDENTIFIER + b"\x00\xff\xff\xff", "compressed chunk"),
        (IDENTIFIER + chunk(0x00, b"\x00\x00\x00\x00" + b"\x80\x80\x05"), "64 KiB"),
        (IDENTIFIER + chunk(0x00, b"\x00\x00\x00\x00" + b"\x10garbage"), "invalid snappy"),
        (IDENTIFIER + b"\x00\x10", "truncated"),
        (IDENTIFIER + chunk(0xFE, b"\x00" * 10)[:-1], "truncated"),
    ],
)
def test_snappy_refuses_malformed_streams(body, reason):
    with pytest.raises(DecompressionError, match=reason):
        decompress(body, "snappy", LIMIT)


# -- limits and bombs ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_limit_is_inclusive_and_bounds_the_inflated_size(encoding, backend):
    data = b"0123456789" * 1000
    packed = compress(data, encoding, backend=backend)
    assert decompress(packed, encoding, len(data), backend=backend) == data
    with pytest.raises(TooLargeError, match=f"more than {len(data) - 1} bytes"):
        decompress(packed, encoding, len(data) - 1, backend=backend)
    pieces = Decompressor(encoding, len(data) - 1, backend=backend)
    with pytest.raises(TooLargeError):
        for i in range(0, len(packed), 7):
            pieces.feed(packed[i : i + 7])
        pieces.finish()


MIB = 1 << 20


def zero_blocks(wbits: int, mebibytes: int) -> tuple[bytes, int]:
    """A DEFLATE stream of ``mebibytes`` MiB of zeros, built from one repeated block.

    A full flush makes each 1 MiB block independent of the ones before it, so one compressed
    block can be repeated without ever holding the inflated data. Returns the stream (header
    per ``wbits``, no trailer) and the CRC-32 of the inflated data.
    """
    zeros = bytes(MIB)
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    first = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    assert packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH) == block
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(zeros, crc)
    return first + block * (mebibytes - 1) + packer.flush(zlib.Z_FINISH), crc


def gzip_bomb(mebibytes: int) -> bytes:
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    raw, crc = zero_blocks(-15, mebibytes)
    return header + raw + struct.pack("<II", crc, (mebibytes * MIB) & 0xFFFFFFFF)


def deflate_bomb(mebibytes: int) -> bytes:
    raw, _ = zero_blocks(-15, mebibytes)
    adler = 1
    zeros = bytes(MIB)
    for _ in range(mebibytes):
        adler = zlib.adler32(zeros, adler)
    return b"\x78\xda" + raw + struct.pack(">I", adler)


def snappy_bomb(mebibytes: int) -> bytes:
    framed = compress(bytes(65536), "snappy")
    one = framed[len(IDENTIFIER) :]
    return IDENTIFIER + one * (mebibytes * 16)


def test_the_bombs_are_well_formed():
    """Small versions of the bombs inflate to exactly their zeros with reference decoders."""
    assert gzip.decompress(gzip_bomb(3)) == bytes(3 * MIB)
    assert zlib.decompress(deflate_bomb(3)) == bytes(3 * MIB)
    assert bytes(cramjam.snappy.decompress(snappy_bomb(3))) == bytes(3 * MIB)


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """1 GiB of zeros as gzip and deflate (about 1 MiB each), 256 MiB as snappy (12 MiB)."""
    return {"gzip": gzip_bomb(1024), "deflate": deflate_bomb(1024), "snappy": snappy_bomb(256)}


@pytest.mark.parametrize("encoding", COMPRESSED)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_zip_bomb_raises_with_bounded_memory(bombs, encoding, backend):
    bomb = bombs[encoding]
    limit = 8 * MIB
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeError):
            decompress(bomb, encoding, limit, backend=backend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * limit + 2 * len(bomb), f"peak {peak} bytes"


@pytest.mark.parametrize("encoding", COMPRESSED)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_zip_bomb_fed_in_pieces_stops_early(bombs, encoding, backend):
    bomb = bombs[encoding]
    limit = 4 * MIB
    decompressor = Decompressor(encoding, limit, backend=backend)
    fed = 0
    with pytest.raises(TooLargeError):
        while fed < len(bomb):
            decompressor.feed(bomb[fed : fed + 16384])
            fed += 16384
    assert decompressor.total <= limit
    assert fed < len(bomb) // 2


# -- hostile input -----------------------------------------------------------------------------

ALLOWED = (DecompressionError, TooLargeError)


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    mutable = bytearray(data)
    for position, value in flips:
        if mutable:
            mutable[position % len(mutable)] = value
    return bytes(mutable[:cut] if cut is not None else mutable)


hostile = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda tail: b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + tail, st.binary()),
    st.builds(  # gzip headers with any flags, to exercise header holding
        lambda flags, tail: b"\x1f\x8b\x08" + bytes((flags,)) + tail,
        st.integers(0, 255),
        st.binary(),
    ),
    st.builds(lambda tail: b"\x78\x9c" + tail, st.binary()),
    st.builds(lambda tail: IDENTIFIER + tail, st.binary()),
)


@settings(max_examples=150, deadline=None)
@given(
    data=hostile,
    encoding=st.sampled_from(ENCODINGS),
    backend=st.sampled_from(BACKENDS),
    cuts=st.lists(st.integers(0, 600), max_size=6),
)
def test_arbitrary_bytes_raise_only_codec_errors(data, encoding, backend, cuts):
    try:
        decompress(data, encoding, 4096, backend=backend)
    except ALLOWED:
        pass
    try:
        feed_in_pieces(Decompressor(encoding, 4096, backend=backend), data, cuts)
    except ALLOWED:
        pass


@FAST
@given(
    data=payloads,
    encoding=st.sampled_from(COMPRESSED),
    backend=st.sampled_from(BACKENDS),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    cut=st.none() | st.integers(0, 4000),
    cuts=st.lists(st.integers(0, 4000), max_size=6),
)
def test_damaged_bodies_raise_only_codec_errors_whole_or_in_pieces(
    data, encoding, backend, flips, cut, cuts
):
    damaged = mutate(compress(data, encoding, backend=backend), flips, cut)
    try:
        decompress(damaged, encoding, LIMIT, backend=backend)
    except ALLOWED:
        pass
    try:
        feed_in_pieces(Decompressor(encoding, LIMIT, backend=backend), damaged, cuts)
    except ALLOWED:
        pass


def test_module_exports_the_contract():
    assert compression.ENCODINGS == ("gzip", "deflate", "snappy", "identity")
    assert compression.DEFAULT_GZIP_LEVEL == 1


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "snappy"])
def test_max_length_inflates_a_step_at_a_time_and_keeps_the_rest(encoding):
    """A 64 KiB read of gzip may inflate to 64 MiB: with ``max_length`` the caller takes it a
    step at a time, and what is kept is counted (``held``)."""
    data = b"{}\n" * 400_000
    body = compress(data, encoding)
    decompressor = Decompressor(encoding, len(data))
    out = [decompressor.feed(body[:1000], 65536)]
    rest = body[1000:]
    steps = 1
    while rest or decompressor.more:
        assert len(out[-1]) <= 65536
        assert decompressor.held <= len(body)
        out.append(decompressor.feed(rest, 65536))
        rest = b""
        steps += 1
    out.append(decompressor.finish())
    assert b"".join(out) == data
    assert steps >= len(data) // 65536 and decompressor.held == 0


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("level", range(10))
def test_a_compressor_writes_the_stream_of_a_compressobj(backend, encoding, level):
    """The one-shot call a compressor makes is the same stream, byte for byte."""
    data = b"".join(b'{"n":%d,"message":"hello %d"}\n' % (n, n * n) for n in range(2000))
    engine = _BACKENDS[backend] if level in _BACKENDS[backend].levels else _BACKENDS["zlib"]
    reference = engine.compressobj(level, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
    expected = reference.compress(data) + reference.flush()
    assert compressor(encoding, level, backend=backend)(data) == expected
    assert compress(data, encoding, level, backend=backend) == expected


def test_a_compressor_checks_its_arguments_once_made():
    with pytest.raises(ConfigurationError, match="level"):
        compressor("gzip", 10)
    with pytest.raises(ConfigurationError, match="unknown compression"):
        compressor("brotli")
    assert compressor("none")(bytearray(b"x")) == b"x"
    assert decompress(compressor("snappy")(b"x" * 100), "snappy", LIMIT) == b"x" * 100
