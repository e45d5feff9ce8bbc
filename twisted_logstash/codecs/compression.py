"""Sans-IO body compression for the native wire: gzip, deflate, snappy (framed), identity.

What Logstash's input accepts (Netty's ``HttpContentDecompressor``), we accept, and a little
more where it costs nothing:

- ``gzip``: every member of a multi-member body is inflated (Netty stops after the first
  member and silently drops the rest).
- ``deflate``: a zlib stream (RFC 1950); a body without a zlib header is taken as raw deflate
  (RFC 1951), as Netty does. Unlike Netty we accept any valid zlib window size, not only 32K.
- ``snappy``: the snappy *framing* format, starting with its stream identifier, CRC-checked.
- ``identity``: the bytes as they are.

Every decoder bounds the INFLATED size: once more than ``limit`` bytes would come out it raises
:class:`TooLargeError` without producing them, so a small "zip bomb" costs memory in
proportion to ``limit`` (a few times it at most), never to what it would inflate to. Anything
that does not decode raises :class:`DecompressionError`; no other exception escapes. An empty
body decodes to ``b""`` under every encoding (Netty emits nothing for nothing too). Bytes after
the end of a deflate stream, or after a gzip member that do not start another member, are an
error rather than ignored: a damaged body is refused, not half-delivered.

gzip and deflate run on ISA-L (``isal``) when it is importable, about 2.5 times faster than
zlib at inflating and at compressing (level 1) ndjson; stdlib ``zlib`` otherwise. Both produce
standard streams and each inflates the other's output. ISA-L only knows levels 1 to 3, so a
level of 0 or above 3 is compressed with zlib, whatever the backend.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import partial
from typing import NamedTuple, Protocol

import cramjam  # the engine of python-snappy >= 0.7, used directly for CRC-checked frames
import orjson
import snappy

from twisted_logstash.errors import ConfigurationError, DecompressionError, TooLargeError

try:
    from isal import isal_zlib
except ImportError:  # pragma: no cover - isal is a declared dependency
    isal_zlib = None

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_GZIP_LEVEL",
    "ENCODINGS",
    "Decompressor",
    "available_backends",
    "compress",
    "compressor",
    "decompress",
    "engine",
    "normalize",
    "settle_vectors",
]

ENCODINGS = ("gzip", "deflate", "snappy", "identity")
_CANONICAL = {name: name for name in ENCODINGS}
DEFAULT_GZIP_LEVEL = 1

_SPELLINGS = {
    "": "identity",
    "none": "identity",
    "identity": "identity",
    "gzip": "gzip",
    "x-gzip": "gzip",
    "deflate": "deflate",
    "x-deflate": "deflate",
    "snappy": "snappy",
}


def normalize(name: str) -> str:
    """The encoding a CLI value or a ``Content-Encoding`` header names (case-insensitive)."""
    try:
        return _SPELLINGS[name.strip().lower()]
    except (KeyError, AttributeError):
        raise ConfigurationError(
            f"unknown compression {name!r}: expected one of gzip, x-gzip, deflate, "
            "x-deflate, snappy, identity, none"
        ) from None


# -- zlib backends -------------------------------------------------------------------------


class Backend(NamedTuple):
    """One implementation of DEFLATE: its objects, its error, and the levels it compresses at."""

    name: str
    compressobj: Callable
    decompressobj: Callable
    error: type[Exception]
    levels: range


_BACKENDS: dict[str, Backend] = {
    "zlib": Backend("zlib", zlib.compressobj, zlib.decompressobj, zlib.error, range(0, 10)),
}
if isal_zlib is not None:
    _BACKENDS["isal"] = Backend(
        "isal", isal_zlib.compressobj, isal_zlib.decompressobj, isal_zlib.error, range(1, 4)
    )

DEFAULT_BACKEND = "isal" if "isal" in _BACKENDS else "zlib"
_DEFAULT_ENGINE = _BACKENDS[DEFAULT_BACKEND]


def engine(name: str | None = None) -> Backend:
    """The DEFLATE backend ``name`` ("isal" or "zlib"), or the fastest importable one: for a
    wire that runs the compression objects itself (the framed wire's `C` frames)."""
    return _backend(name)


def available_backends() -> tuple[str, ...]:
    """The DEFLATE backends importable here, the default first."""
    return tuple(sorted(_BACKENDS, key=lambda name: name != DEFAULT_BACKEND))


def _backend(name: str | None) -> Backend:
    try:
        return _BACKENDS[name or DEFAULT_BACKEND]
    except KeyError:
        raise ConfigurationError(
            f"unknown or unavailable compression backend {name!r}: "
            f"available are {', '.join(available_backends())}"
        ) from None


# -- compression ---------------------------------------------------------------------------


def compress(
    data: bytes, encoding: str, level: int | None = None, *, backend: str | None = None
) -> bytes:
    """``data`` encoded for a ``Content-Encoding: encoding`` body.

    ``level`` (0-9) applies to gzip and deflate only and defaults to 1, which is what we
    send: on ndjson it costs a fraction of level 6's time for a few percent more bytes.
    ``backend`` ("isal" or "zlib") is for tests and benchmarks; the default is the fastest.
    """
    return compressor(encoding, level, backend=backend)(data)


# One-shot compression of each backend: the same stream as a compressobj's, one call.
_ONE_SHOT: dict[str, Callable] = {"zlib": zlib.compress}
if isal_zlib is not None:
    _ONE_SHOT["isal"] = isal_zlib.compress


def compressor(
    encoding: str, level: int | None = None, *, backend: str | None = None
) -> Callable[[bytes], bytes]:
    """``compress`` with its arguments checked and its engine chosen once: the function a
    transmitter calls per batch (no name, level or backend looked at again)."""
    encoding = normalize(encoding)
    if encoding == "identity":
        return bytes
    if encoding == "snappy":
        return _snappy
    if level is None:
        level = DEFAULT_GZIP_LEVEL
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise ConfigurationError(f"compression level must be an integer 0-9, not {level!r}")
    engine = _backend(backend)
    if level not in engine.levels:
        engine = _BACKENDS["zlib"]
    wbits = 31 if encoding == "gzip" else 15
    one_shot = _ONE_SHOT.get(engine.name)
    if one_shot is not None:
        return partial(one_shot, level=level, wbits=wbits)
    make = engine.compressobj

    def deflate(data: bytes) -> bytes:
        compressor = make(level, zlib.DEFLATED, wbits)
        return compressor.compress(data) + compressor.flush()

    return deflate


def _snappy(data: bytes) -> bytes:
    return snappy.StreamCompressor().compress(bytes(data))


# -- after ISA-L ---------------------------------------------------------------------------


def settle_vectors(_vzeroupper=orjson.loads, _text=b"0") -> None:
    """Leave the CPU's vector registers clean after an ISA-L call, so that the code run next
    does not pay for ISA-L's.

    ISA-L's AVX2/AVX-512 routines return with the upper halves of the vector registers in use;
    until something executes ``VZEROUPPER``, every legacy SSE instruction run afterwards (msgspec's
    JSON reader, much of CPython) carries a false dependency on them. Measured on the bench bodies
    (Xeon with AVX-512): isal inflate then msgspec ``decode_lines`` 118 µs per 125-event body,
    against 81 µs with this call between them (the decode alone: 52 µs). orjson's functions are
    built for AVX2 and end with ``VZEROUPPER``; reading ``0`` with it costs about 0.1 µs. With
    another orjson build the call does nothing useful and costs as little."""
    _vzeroupper(_text)


# -- decompression -------------------------------------------------------------------------


def decompress(data: bytes, encoding: str, limit: int, *, backend: str | None = None) -> bytes:
    """The inflated body; at most ``limit`` bytes, else :class:`TooLargeError`.

    Raises :class:`DecompressionError` for a body that is corrupt or truncated.
    """
    decompressor = Decompressor(encoding, limit, backend=backend)
    head = decompressor.feed(data)
    tail = decompressor.finish()
    return head + tail if tail else head


class _Codec(Protocol):
    held: int
    more: bool

    def feed(self, data: bytes, room: int, cap: int | None) -> bytes: ...

    def finish(self) -> bytes: ...


class Decompressor:
    """Incremental decoder for a body that arrives in pieces.

    Feeding a body cut anywhere yields, joined, the same bytes as :func:`decompress` of the
    whole. With ``max_length``, :meth:`feed` gives at most that many bytes and keeps the rest of
    its input (:attr:`held` bytes, :attr:`more`) for the next calls (``feed(b"", max_length)``),
    so that a caller inflates a body a step at a time, never more than it chose to hold, whatever
    a piece of input inflates to (a 64 KiB read of gzip may inflate to 64 MiB). :meth:`feed`
    raises :class:`TooLargeError` as soon as the total inflated size would exceed ``limit``,
    before producing the excess; :meth:`finish` raises :class:`DecompressionError` if the body
    stopped short. After an error the decompressor refuses further input.
    """

    def __init__(self, encoding: str, limit: int, *, backend: str | None = None) -> None:
        # a name already canonical (what the native input passes) needs no normalizing
        canonical = type(encoding) is str and encoding in _CANONICAL
        self.encoding = encoding if canonical else normalize(encoding)
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        self.limit = limit
        self.total = 0
        self.more = False
        """Whether ``feed(b"", max_length)`` may give more without new input."""
        self._failed = False
        self._finished = False
        self._codec = _codec(self.encoding, backend)

    @property
    def held(self) -> int:
        """Bytes of input kept, not inflated yet (a ``max_length`` reached, a header unfinished)."""
        return self._codec.held

    def feed(self, chunk: bytes, max_length: int | None = None) -> bytes:
        """The bytes inflated from ``chunk`` and what was kept (possibly ``b""`` while a frame is
        incomplete); at most ``max_length`` of them when given."""
        if self._failed or self._finished:
            self._check_open()
        try:
            out = self._codec.feed(chunk, self.limit - self.total, max_length)
        except TooLargeError:
            self._failed = True
            raise TooLargeError(
                f"{self.encoding} body inflates to more than {self.limit} bytes"
            ) from None
        except DecompressionError:
            self._failed = True
            raise
        self.total += len(out)
        self.more = self._codec.more
        return out

    def finish(self) -> bytes:
        """The last inflated bytes, once the body is complete; error if it was cut short."""
        if self._failed or self._finished:
            self._check_open()
        self._finished = True
        try:
            return self._codec.finish()
        except DecompressionError:
            self._failed = True
            raise

    def _check_open(self) -> None:
        if self._failed:
            raise DecompressionError(f"{self.encoding} body already failed to decompress")
        if self._finished:
            raise ValueError("Decompressor used after finish()")


def _codec(encoding: str, backend: str | None) -> _Codec:
    if encoding == "gzip" or encoding == "deflate":
        engine = _DEFAULT_ENGINE if backend is None else _backend(backend)
        return _Inflater(engine, encoding == "gzip")
    if encoding == "snappy":
        return _SnappyFrames()
    return _Identity()


class _Identity:
    held = 0
    more = False

    def feed(self, data: bytes, room: int, cap: int | None) -> bytes:
        if len(data) > room:
            raise TooLargeError()
        return bytes(data)

    def finish(self) -> bytes:
        return b""


def _looks_like_zlib(first: int, second: int) -> bool:
    """A valid RFC 1950 header: method 8, window <= 32K, header check multiple of 31."""
    return first & 0x0F == 8 and first >> 4 <= 7 and (first << 8 | second) % 31 == 0


_GZIP_MAGIC = b"\x1f\x8b"
_MAX_GZIP_HEADER = 65536 + 4096  # a full FEXTRA field and a generous name and comment


def _gzip_header_length(data: bytes) -> int | None:
    """The length of the gzip member header ``data`` starts with; None while incomplete."""
    if len(data) < 10:
        return None
    flags = data[3]
    end = 10
    if flags & 0x04:  # FEXTRA
        if len(data) < 12:
            return None
        end = 12 + int.from_bytes(data[10:12], "little")
    for flag in (0x08, 0x10):  # FNAME, FCOMMENT: zero-terminated
        if flags & flag:
            nul = data.find(b"\0", end)
            if nul < 0:
                return None
            end = nul + 1
    if flags & 0x02:  # FHCRC
        end += 2
    return end if end <= len(data) else None


class _Inflater:
    """gzip (members one after another) or deflate (zlib stream, else raw), bounded.

    The start of each member or stream is held until it can be judged: two bytes for deflate
    (zlib header or raw), the whole header for gzip. ISA-L fails on a gzip header whose
    optional header CRC (FHCRC) arrives split across calls, so a gzip header always reaches
    the backend in one piece.
    """

    def __init__(self, engine: Backend, gzip: bool) -> None:
        self._engine = engine
        self._gzip = gzip
        self._name = "gzip" if gzip else "deflate"
        self._stream = None  # the member (gzip) or stream (deflate) being inflated
        self._ended = False  # deflate: the stream ended; nothing may follow
        self._head = b""  # the start of a member or stream, held until it can be judged
        self._tail = b""  # input kept when the caller's cap was reached
        self.more = False  # the cap was reached: the stream may give more without input

    @property
    def held(self) -> int:
        return len(self._tail) + len(self._head)

    def feed(self, data: bytes, room: int, cap: int | None) -> bytes:
        if self._tail:
            data = self._tail + data if data else self._tail
            self._tail = b""
        out = []
        produced = 0
        flush = self.more and self._stream is not None
        self.more = False
        while data or flush:
            flush = False
            stream = self._stream
            if stream is None:
                if self._ended:
                    raise DecompressionError("data after the end of the deflate stream")
                data = self._head + data if self._head else data
                stream = self._start(data)
                if stream is None:
                    self._head = bytes(data)
                    break
                self._head = b""
                self._stream = stream
            # room + 1: one byte too many proves the limit is crossed; never 0 (unbounded).
            length = room + 1
            if cap is not None:
                if produced >= cap:
                    self._tail = bytes(data)
                    self.more = True
                    break
                if cap - produced < length:
                    length = cap - produced
            try:
                piece = stream.decompress(data, length)
            except self._engine.error as e:
                raise DecompressionError(f"invalid {self._name} data: {e}") from None
            finally:
                settle_vectors()
            if len(piece) > room:
                raise TooLargeError()
            room -= len(piece)
            produced += len(piece)
            out.append(piece)
            if stream.eof:
                data = stream.unused_data
                self._stream = None
                self._ended = not self._gzip
            elif len(piece) == length:
                # the cap was reached: keep the rest; the stream may hold more output too
                self._tail = bytes(stream.unconsumed_tail)
                self.more = True
                break
            else:
                # Less than max_length came out, so every input byte was consumed.
                data = b""
        return b"".join(out)

    def _start(self, data: bytes):
        """A decompressor for the member or stream ``data`` starts; None to wait for more."""
        if not self._gzip:
            if len(data) < 2:
                return None
            wbits = 15 if _looks_like_zlib(data[0], data[1]) else -15
            return self._engine.decompressobj(wbits=wbits)
        if len(data) >= 10 and not data[3] & 0x1E:
            pass  # the usual header: 10 bytes, no optional field (whole, or no header at all)
        elif data[:2] == _GZIP_MAGIC[: len(data)] and _gzip_header_length(data) is None:
            if len(data) > _MAX_GZIP_HEADER:
                raise DecompressionError("invalid gzip data: header too long")
            return None
        # A whole header, or bytes that are no gzip header at all (the backend says so).
        return self._engine.decompressobj(wbits=31)

    def finish(self) -> bytes:
        if self._stream is not None or self._head or self._tail:
            raise DecompressionError(f"truncated {self._name} data")
        return b""


_SNAPPY_IDENTIFIER = b"\xff\x06\x00\x00sNaPpY"
_SNAPPY_BLOCK = 65536  # most bytes one data chunk may inflate to
_SNAPPY_MAX_COMPRESSED = 4 + 32 + _SNAPPY_BLOCK + _SNAPPY_BLOCK // 6  # CRC + worst-case block


class _SnappyFrames:
    """The snappy framing format, chunk by chunk, sized before anything is inflated.

    Chunks are parsed here so that the inflated size of each one is known from its header
    (at most 64 KiB) before it is decoded; complete data chunks are then decoded in one call
    that also verifies their CRC-32C.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0  # bytes of a skippable chunk still to be dropped
        self._started = False
        self.more = False  # the cap was reached with whole chunks left in the buffer

    @property
    def held(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes, room: int, cap: int | None) -> bytes:
        self.more = False
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        buffer = self._buffer
        buffer += data
        chunks = []
        size = 0
        at = 0
        end = len(buffer)
        while end - at >= 4:
            kind = buffer[at]
            length = int.from_bytes(buffer[at + 1 : at + 4], "little")
            if kind == 0xFF:
                if length != 6:
                    raise DecompressionError("invalid snappy stream identifier")
            elif not self._started:
                raise DecompressionError("not a snappy framed stream (no stream identifier)")
            elif kind == 0x00:
                if not 4 <= length <= _SNAPPY_MAX_COMPRESSED:
                    raise DecompressionError(f"invalid snappy compressed chunk of {length} bytes")
            elif kind == 0x01:
                if not 4 <= length <= 4 + _SNAPPY_BLOCK:
                    raise DecompressionError(f"invalid snappy literal chunk of {length} bytes")
            elif kind < 0x80:
                raise DecompressionError(f"reserved unskippable snappy chunk type {kind:#04x}")
            else:  # padding or reserved skippable: dropped without being held
                if end - at - 4 < length:
                    self._skip = length - (end - at - 4)
                    at = end
                    break
                at += 4 + length
                continue
            if end - at - 4 < length:
                break  # wait for the rest of this chunk
            chunk = bytes(buffer[at : at + 4 + length])
            if kind == 0xFF:
                at += 4 + length
                if chunk != _SNAPPY_IDENTIFIER:
                    raise DecompressionError("invalid snappy stream identifier")
                self._started = True
                continue
            inflated = self._inflated_size(kind, chunk)
            if cap is not None and chunks and size + inflated > cap:
                self.more = True  # the rest waits for the next call
                break
            at += 4 + length
            size += inflated
            if size > room:
                raise TooLargeError()
            chunks.append(chunk)
        del buffer[:at]
        if not chunks:
            return b""
        try:
            return bytes(cramjam.snappy.decompress(_SNAPPY_IDENTIFIER + b"".join(chunks)))
        except cramjam.DecompressionError as e:
            raise DecompressionError(f"invalid snappy data: {e}") from None

    @staticmethod
    def _inflated_size(kind: int, chunk: bytes) -> int:
        """From the header of the chunk; its CRC (4 bytes) follows the chunk header."""
        if kind == 0x01:
            return len(chunk) - 8
        try:
            size = cramjam.snappy.decompress_raw_len(memoryview(chunk)[8:])
        except cramjam.DecompressionError as e:
            raise DecompressionError(f"invalid snappy data: {e}") from None
        if size > _SNAPPY_BLOCK:
            raise DecompressionError(f"snappy chunk claims {size} bytes, more than 64 KiB")
        return size

    def finish(self) -> bytes:
        if self._buffer or self._skip:
            raise DecompressionError("truncated snappy data")
        return b""
