"""The incremental Lumberjack decoder: bytes in, frames out, resumable at any byte.

Sans-IO, in the shape of h11: a Protocol feeds whatever `dataReceived` got and acts on the
frames handed back. Version 2 (`W`, `J`, `C`, `A`) and version 1 (`W`, `D`, `C`, `A`, as
logstash-forwarder and go-lumber's v1 server speak it) are both read.

A `C` frame is inflated as its bytes arrive, so that a zlib bomb is refused as soon as its
inflated size passes `max_inflated`, without inflating the rest. Its nested frames are handed
out in order, in place of the `C` frame (`CompressedFrame` never comes out of here). Only data
frames of the `C` frame's own version may be nested (`J` in `2C`, `D` in `1C`): a window, an
ACK or another `C` inside a `C` is refused, as go-lumber's reader refuses them.

Every malformed input raises a `LumberjackProtocolError` (or its subclasses
`FrameTooLargeError`, `CompressedFrameError`); after that the decoder refuses further input,
since the stream has no resynchronisation point and the connection must be dropped.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from twisted_logstash.codecs.jsonpolicy import TooDeepError, loads
from twisted_logstash.wires.lumberjack.frames import (
    CODE_ACK,
    CODE_COMPRESSED,
    CODE_DATA,
    CODE_JSON_DATA,
    CODE_WINDOW_SIZE,
    VERSION_1,
    VERSION_2,
    AckFrame,
    CompressedFrameError,
    Frame,
    FrameTooLargeError,
    JsonDataFrame,
    LumberjackProtocolError,
    V1DataFrame,
    WindowSizeFrame,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_INFLATED",
    "DEFAULT_MAX_WINDOW",
    "FrameDecoder",
]

DEFAULT_MAX_WINDOW = 10_000  # go-lumber's server default
DEFAULT_MAX_FRAME = 100 * 1024 * 1024  # as the native input's max_content_length
DEFAULT_MAX_INFLATED = 100 * 1024 * 1024

_U32 = struct.Struct(">I")
_TWO_U32 = struct.Struct(">II")
_NEED_MORE = None


#: a TLS record header starts with content type 22 (handshake) and major version 3
_TLS_HANDSHAKE = 0x16
TLS_ON_PLAIN_PORT = (
    "TLS handshake received on a plain Lumberjack port (is ssl_enabled false on this input "
    "while the sender uses TLS?)"
)


class _Inflation:
    """A `C` frame being received: how much of it is still to come, and what it inflated to."""

    __slots__ = ("inflated", "inflater", "remaining", "version")

    def __init__(self, version: int, length: int):
        self.version = version
        self.remaining = length
        self.inflater = zlib.decompressobj()
        self.inflated = bytearray()

    def feed(self, chunk: bytes, limit: int) -> None:
        self.remaining -= len(chunk)
        if self.inflater.eof:
            raise CompressedFrameError("bytes after the end of the zlib stream in a C frame")
        room = limit - len(self.inflated)
        try:
            out = self.inflater.decompress(chunk, room + 1)
        except zlib.error as exc:
            raise CompressedFrameError(f"C frame is not a valid zlib stream: {exc}") from None
        if len(out) > room:
            raise FrameTooLargeError(f"C frame inflates to more than {limit} bytes")
        self.inflated += out
        if self.inflater.unused_data:
            raise CompressedFrameError("bytes after the end of the zlib stream in a C frame")

    def finish(self) -> bytearray:
        if not self.inflater.eof:
            raise CompressedFrameError("C frame ends before its zlib stream does")
        return self.inflated


class FrameDecoder:
    """Turn a Lumberjack byte stream into frames, whatever the cut points.

    `max_window` bounds a `W` count, `max_frame` the length a `J`, `D` or `C` frame may
    announce, `max_inflated` what one `C` frame may inflate to; over any of them,
    `FrameTooLargeError` is raised as soon as the header says so.
    """

    def __init__(
        self,
        max_window: int = DEFAULT_MAX_WINDOW,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_inflated: int = DEFAULT_MAX_INFLATED,
    ):
        self.max_window = max_window
        self.max_frame = max_frame
        self.max_inflated = max_inflated
        self._buffer = bytearray()
        self._inflation: _Inflation | None = None
        self._failure: LumberjackProtocolError | None = None

    @property
    def pending(self) -> bool:
        """True while part of a frame is held: the stream cannot end cleanly here."""
        return bool(self._buffer) or self._inflation is not None

    def feed(self, data: bytes) -> list[Frame]:
        """Every frame completed by `data` (and what was fed before), in stream order."""
        if self._failure is not None:
            raise LumberjackProtocolError(f"stream already failed: {self._failure}")
        try:
            return self._feed(data)
        except LumberjackProtocolError as exc:
            self._failure = exc
            self._buffer.clear()
            self._inflation = None
            raise

    def _feed(self, data: bytes) -> list[Frame]:
        buf = self._buffer
        buf += data
        out: list[Frame] = []
        pos = 0
        end = len(buf)
        while True:
            inflation = self._inflation
            if inflation is not None:
                take = min(inflation.remaining, end - pos)
                if take:
                    inflation.feed(bytes(buf[pos : pos + take]), self.max_inflated)
                    pos += take
                if inflation.remaining:
                    break
                self._inflation = None
                out.extend(self._nested(inflation.version, inflation.finish()))
                continue
            if end - pos < 2:
                break
            result = self._parse(buf, pos, end, nested_in=None)
            if result is _NEED_MORE:
                break
            frame, pos = result
            if frame is not None:
                out.append(frame)
        del buf[:pos]
        return out

    def _nested(self, version: int, inner: bytearray) -> list[Frame]:
        """The frames of an inflated `C` payload, which must hold whole data frames only
        (or nothing: Logstash accepts an empty one)."""
        frames: list[Frame] = []
        pos = 0
        end = len(inner)
        while pos < end:
            # _parse reads the version and type bytes: fewer than two left is a truncated frame
            result = _NEED_MORE if end - pos < 2 else self._parse(inner, pos, end, version)
            if result is _NEED_MORE:
                raise CompressedFrameError("C frame holds a truncated frame")
            frame, pos = result
            frames.append(frame)
        return frames

    def _parse(self, buf: bytearray, pos: int, end: int, nested_in: int | None):
        """One frame at `pos`: `(frame, next_pos)`, `(None, next_pos)` when a `C` frame
        begins (its payload is then streamed into the inflater), or _NEED_MORE."""
        version = buf[pos]
        code = buf[pos + 1]
        if version not in (VERSION_1, VERSION_2):
            if version == _TLS_HANDSHAKE and code == 0x03 and nested_in is None:
                raise LumberjackProtocolError(TLS_ON_PLAIN_PORT)
            raise LumberjackProtocolError(f"unknown protocol version byte {version:#04x}")
        if nested_in is not None:
            data_code = CODE_JSON_DATA if nested_in == VERSION_2 else CODE_DATA
            if version != nested_in or code != data_code:
                raise CompressedFrameError(
                    f"frame {_name(version, code)} is not allowed inside a "
                    f"{_name(nested_in, CODE_COMPRESSED)} frame"
                )
        if code == CODE_JSON_DATA and version == VERSION_2:
            return self._json(buf, pos, end)
        if code == CODE_DATA and version == VERSION_1:
            return self._v1_data(buf, pos, end)
        if code == CODE_WINDOW_SIZE:
            if end - pos < 6:
                return _NEED_MORE
            (count,) = _U32.unpack_from(buf, pos + 2)
            if count > self.max_window:
                raise FrameTooLargeError(f"window size {count} over the limit {self.max_window}")
            return WindowSizeFrame(count, version), pos + 6
        if code == CODE_ACK:
            if end - pos < 6:
                return _NEED_MORE
            (seq,) = _U32.unpack_from(buf, pos + 2)
            return AckFrame(seq, version), pos + 6
        if code == CODE_COMPRESSED:
            if end - pos < 6:
                return _NEED_MORE
            (length,) = _U32.unpack_from(buf, pos + 2)
            if length == 0:
                raise CompressedFrameError("C frame of length 0")
            if length > self.max_frame:
                raise FrameTooLargeError(
                    f"C frame of {length} bytes over the limit {self.max_frame}"
                )
            self._inflation = _Inflation(version, length)
            return None, pos + 6
        raise LumberjackProtocolError(f"unknown frame type {_name(version, code)}")

    def _json(self, buf: bytearray, pos: int, end: int):
        if end - pos < 10:
            return _NEED_MORE
        seq, length = _TWO_U32.unpack_from(buf, pos + 2)
        if length == 0:
            raise LumberjackProtocolError(f"J frame seq {seq} with JSON length 0")
        if length > self.max_frame:
            raise FrameTooLargeError(f"J frame of {length} bytes over the limit {self.max_frame}")
        stop = pos + 10 + length
        if stop > end:
            return _NEED_MORE
        return JsonDataFrame(seq, _load_object(buf[pos + 10 : stop], seq)), stop

    def _v1_data(self, buf: bytearray, pos: int, end: int):
        if end - pos < 10:
            return _NEED_MORE
        seq, pairs = _TWO_U32.unpack_from(buf, pos + 2)
        if pairs == 0:
            raise LumberjackProtocolError(f"D frame seq {seq} with no fields")
        if 8 * pairs > self.max_frame:
            raise FrameTooLargeError(f"D frame of {pairs} fields over the limit {self.max_frame}")
        cursor = pos + 10
        strings: list[str] = []
        for _ in range(2 * pairs):
            if end - cursor < 4:
                return _NEED_MORE
            (length,) = _U32.unpack_from(buf, cursor)
            cursor += 4
            if cursor + length - pos > self.max_frame:
                raise FrameTooLargeError(f"D frame seq {seq} over the limit {self.max_frame}")
            if cursor + length > end:
                return _NEED_MORE
            try:
                strings.append(buf[cursor : cursor + length].decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise LumberjackProtocolError(f"D frame seq {seq}: invalid UTF-8: {exc}") from None
            cursor += length
        event = dict(zip(strings[0::2], strings[1::2], strict=True))
        return V1DataFrame(seq, event), cursor


#: the tag of an event that stands for a payload we could not take (as the ndjson codec's)
PARSE_FAILURE_TAG = "_jsonparsefailure"


def _load_object(payload: bytearray, seq: int) -> dict[str, Any]:
    """One event: a JSON object in UTF-8, read by the JSON policy (strict RFC 8259; an
    integer beyond 64 bits kept exact).

    An object nested deeper than the policy writes (``jsonpolicy.MAX_DEPTH``) is valid JSON
    the project cannot carry as it is: it becomes a ``_jsonparsefailure`` event holding the
    payload as text, as the native input does with such a line, so that it is refused alone
    and its window is still acknowledged. (Logstash's beats input closes the connection
    over it, and the sender retries the window forever.) Anything else that is not a JSON
    object breaks the stream, as in Logstash."""
    try:
        event = loads(payload)
    except TooDeepError:
        return {"message": payload.decode("utf-8", "replace"), "tags": [PARSE_FAILURE_TAG]}
    except ValueError as exc:
        raise LumberjackProtocolError(f"J frame seq {seq} is not valid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise LumberjackProtocolError(
            f"J frame seq {seq} holds a JSON {type(event).__name__}, not an object"
        )
    return event


def _name(version: int, code: int) -> str:
    return repr(bytes((version, code)))
