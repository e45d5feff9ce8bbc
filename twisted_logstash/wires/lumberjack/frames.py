"""Lumberjack frames: the constants, one small dataclass per frame, and the encoder.

Sans-IO: nothing here touches a socket. The sender side only ever writes version 2
(`W`, `J`, `C`, `A`), the way go-lumber's v2 client and the Beats do; version 1 frames
exist here only so that the decoder can hand them out.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted_logstash.codecs import jsonpolicy
from twisted_logstash.errors import CodecError, DecompressionError, TooLargeError

VERSION_1 = 0x31  # b"1"
VERSION_2 = 0x32  # b"2"
CODE_WINDOW_SIZE = 0x57  # b"W"
CODE_JSON_DATA = 0x4A  # b"J"
CODE_COMPRESSED = 0x43  # b"C"
CODE_ACK = 0x41  # b"A"
CODE_DATA = 0x44  # b"D" (version 1 key/value data)

DEFAULT_COMPRESSION_LEVEL = 3  # what the Beats use

_U32 = struct.Struct(">I")
_HEADER_U32 = struct.Struct(">BBI")  # version, code, one uint32
_JSON_HEADER = struct.Struct(">BBII")  # version, code, seq, length
_MAX_U32 = 0xFFFFFFFF


class LumberjackProtocolError(CodecError):
    """Bytes that are not a valid Lumberjack stream (the connection must be dropped)."""


class FrameTooLargeError(LumberjackProtocolError, TooLargeError):
    """A window, frame or inflated payload over a configured limit."""


class CompressedFrameError(LumberjackProtocolError, DecompressionError):
    """A `C` frame whose payload is not a valid zlib stream."""


@dataclass(frozen=True, slots=True)
class WindowSizeFrame:
    """`W count`: the next `count` data frames are one batch."""

    count: int
    version: int = VERSION_2


# The two data frames are made once per event: not frozen, as a frozen dataclass costs three
# times as much to build (object.__setattr__ per field). Treat them as values all the same.


@dataclass(slots=True)
class JsonDataFrame:
    """`2 J seq length json`: one event, a JSON object (`size`: its JSON length in bytes)."""

    seq: int
    event: dict[str, Any]
    size: int = field(default=0, compare=False)


class JsonDataRun:
    """Consecutive `J` frames decoded in one go, in stream order (never empty): their events,
    and their headers as `(version << 8 | code, seq, length)` tuples, the way the decoder unpacked
    them; `size` is the sum of their JSON lengths. What `FrameDecoder.decode_runs` hands out in
    place of `JsonDataFrame`s, so that a window of 2048 events costs a few Python objects per run
    instead of one frame per event; `frames()` gives the frames themselves."""

    __slots__ = ("events", "heads", "size")

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.heads: list[tuple[int, int, int]] = []
        self.size = 0

    @property
    def last_seq(self) -> int:
        return self.heads[-1][1]

    def frames(self) -> list[JsonDataFrame]:
        """The run as one `JsonDataFrame` per event."""
        return [
            JsonDataFrame(seq, event, length)
            for (_, seq, length), event in zip(self.heads, self.events, strict=True)
        ]

    def __repr__(self) -> str:
        return f"JsonDataRun({len(self.events)} events, {self.size} bytes)"


@dataclass(slots=True)
class V1DataFrame:
    """`1 D seq pairs (klen key vlen value)*`: one legacy event of string fields (`size`: the
    frame's length in bytes)."""

    seq: int
    event: dict[str, str]
    size: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class CompressedFrame:
    """`C length zlib`: a zlib stream of nested frames (the decoder hands out the nested
    frames themselves, never this; it exists for callers that build streams by parts)."""

    payload: bytes
    version: int = VERSION_2


@dataclass(frozen=True, slots=True)
class AckFrame:
    """`A seq`: every event up to the frame numbered `seq` was accepted (0: keep-alive)."""

    seq: int
    version: int = VERSION_2


Frame = WindowSizeFrame | JsonDataFrame | V1DataFrame | CompressedFrame | AckFrame
DataFrame = JsonDataFrame | V1DataFrame


def _u32(value: int, what: str) -> int:
    if not 0 <= value <= _MAX_U32:
        raise FrameTooLargeError(f"{what} {value} does not fit in 32 bits")
    return value


def encode_window_size(count: int, version: int = VERSION_2) -> bytes:
    """The `W` frame that opens a window of `count` data frames."""
    return _HEADER_U32.pack(version, CODE_WINDOW_SIZE, _u32(count, "window size"))


def encode_ack(seq: int, version: int = VERSION_2) -> bytes:
    """The `A` frame a receiver writes; seq 0 is the keep-alive."""
    return _HEADER_U32.pack(version, CODE_ACK, _u32(seq, "sequence"))


def encode_json_frame(seq: int, payload: bytes) -> bytes:
    """One `J` frame around already-serialised JSON bytes."""
    header = _JSON_HEADER.pack(
        VERSION_2, CODE_JSON_DATA, _u32(seq, "sequence"), _u32(len(payload), "JSON length")
    )
    return header + payload


def encode_compressed_frame(inner: bytes, level: int = DEFAULT_COMPRESSION_LEVEL) -> bytes:
    """One `C` frame holding `inner` (a run of frames) as a zlib stream."""
    body = zlib.compress(inner, level)
    return _HEADER_U32.pack(VERSION_2, CODE_COMPRESSED, _u32(len(body), "C length")) + body


serialize_event = jsonpolicy.dumps
"""Serialise one event by the one JSON policy (:mod:`jsonpolicy`): never raises, a value JSON
has no type for becomes its string form as on every other writer."""


def encode_json_documents(documents: Iterable[bytes], first_seq: int = 1) -> bytes:
    """The `J` frames around already-serialised events, numbered from `first_seq`."""
    pack = _JSON_HEADER.pack
    return b"".join(
        pack(VERSION_2, CODE_JSON_DATA, _u32(seq, "sequence"), len(doc)) + doc
        for seq, doc in enumerate(documents, first_seq)
    )


def encode_json_frames(events: list[Any], first_seq: int = 1) -> bytes:
    """The `J` frames of `events`, numbered from `first_seq`."""
    return encode_json_documents(map(serialize_event, events), first_seq)


def encode_window(
    events: list[Any],
    first_seq: int = 1,
    compression_level: int | None = DEFAULT_COMPRESSION_LEVEL,
) -> bytes:
    """A whole window as go-lumber's v2 client writes it.

    `2W count`, then one `C` frame holding the `J` frames (zlib at `compression_level`),
    or the plain `J` frames when `compression_level` is None (or 0, as in go-lumber).
    """
    head = encode_window_size(len(events))
    frames = encode_json_frames(events, first_seq)
    if compression_level:
        return head + encode_compressed_frame(frames, compression_level)
    return head + frames
