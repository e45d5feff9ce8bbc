"""The incremental Lumberjack decoder: bytes in, frames out, resumable at any byte.

Sans-IO, in the shape of h11: a Protocol feeds whatever `dataReceived` got and acts on the
frames handed back. Version 2 (`W`, `J`, `C`, `A`) and version 1 (`W`, `D`, `C`, `A`, as
logstash-forwarder and go-lumber's v1 server speak it) are both read.

A `C` frame is inflated as its bytes arrive, a step of at most 256 KiB at a time, and its
nested frames are parsed and handed out between two steps, in order, in place of the `C` frame
(`CompressedFrame` never comes out of here): a zlib bomb is refused as soon as its inflated
size passes `max_inflated`, and a caller counting the events it holds can stop the stream
before the rest is inflated. Nothing is parsed twice: a `D` frame cut by a read resumes at its
next field, so the time taken is linear in the bytes fed however they are cut. Only data
frames of the `C` frame's own version may be nested (`J` in `2C`, `D` in `1C`): a window, an
ACK or another `C` inside a `C` is refused, as go-lumber's reader refuses them.

The common case is read in runs (`decode_runs`, the input's way): consecutive `J` frames are
walked in one loop over the bytes where they lie (the inflater's output itself, no gathering
buffer), each payload read by the JSON policy's reader through a memoryview, and handed out as
one `JsonDataRun` (events and headers) instead of a frame object per event. Whatever that loop
does not take as it is (a frame cut short, empty, over `max_frame`, over 2000 bytes so that its
depth must be checked, not JSON, not an object) goes to the careful path, one `_parse` per frame,
which decides exactly as before; `fast = False` uses the careful path alone (for the tests that
compare the two). `C` frames are inflated by ISA-L (`isal`, about 3 times zlib's speed on the
Beats' level-3 windows), zlib when it is missing.

Every malformed input raises a `LumberjackProtocolError` (or its subclasses
`FrameTooLargeError`, `CompressedFrameError`); after that the decoder refuses further input,
since the stream has no resynchronisation point and the connection must be dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from twisted_logstash.codecs.compression import engine, settle_vectors
from twisted_logstash.codecs.jsonpolicy import MAX_DEPTH, TooDeepError, loads, read
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
    JsonDataRun,
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
_J_HEAD = struct.Struct(">HII")  # version and code as one uint16, seq, length
_2J = VERSION_2 << 8 | CODE_JSON_DATA
_NEED_MORE = None
_SHALLOW = 2 * MAX_DEPTH
"""A JSON text of this many bytes at most cannot nest deeper than MAX_DEPTH (every level takes
two brackets): its event needs no depth check (`jsonpolicy.loads` skips it too)."""

_DEFLATE = engine()  # ISA-L, zlib when it is missing: compression.py chooses for both wires


#: a TLS record header starts with content type 22 (handshake) and major version 3
_TLS_HANDSHAKE = 0x16
TLS_ON_PLAIN_PORT = (
    "TLS handshake received on a plain Lumberjack port (is TLS off on this input while the "
    "sender uses it?)"
)

#: the first bytes of the HTTP requests a sender of the native wire makes
_HTTP_STARTS = frozenset({b"POST", b"PUT ", b"GET ", b"HEAD"})
HTTP_ON_LUMBERJACK_PORT = (
    "an HTTP request on a Lumberjack port (the sender speaks the native wire: a logstash output"
    " meant for a logstash input?)"
)


class _Stream:
    """Frame bytes not parsed yet, and the part of a `D` frame already read from them: a `D`
    frame cut by a read resumes at its next field instead of being parsed again from its start
    (which made 8 MB of `D` frames cost 41 s of CPU)."""

    __slots__ = ("buf", "partial")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.partial: _PartialData | None = None

    def held(self, start: int = 0) -> int:
        partial = self.partial
        return len(self.buf) - start + (partial.size if partial is not None else 0)


class _PartialData:
    """A `D` frame read in part: its header, the strings read so far, where the next one is."""

    __slots__ = ("offset", "pairs", "seq", "size", "strings")

    def __init__(self, seq: int, pairs: int, strings: list[str]) -> None:
        self.seq = seq
        self.pairs = pairs
        self.strings = strings
        self.offset = 10  # from the frame's first byte
        self.size = 0  # bytes of the strings read so far


class _Inflation:
    """A `C` frame being received: how much of it is still to come, what it inflated to so far,
    and the inflated bytes not yet parsed into frames."""

    __slots__ = ("inflater", "inner", "remaining", "total", "version")

    def __init__(self, version: int, length: int):
        self.version = version
        self.remaining = length
        self.inflater = _DEFLATE.decompressobj()
        self.inner = _Stream()
        self.total = 0


#: what one zlib call may inflate at most: nested frames are parsed (and counted by the caller)
#: between two calls, so a bomb never sits inflated in memory
_INFLATE_STEP = 256 * 1024
#: what zlib's state holds for an inflater (its 32 KiB window and tables), counted in `held`
_INFLATER_BYTES = 48 * 1024


class FrameDecoder:
    """Turn a Lumberjack byte stream into frames, whatever the cut points.

    `max_window` bounds a `W` count, `max_frame` the length a `J`, `D` or `C` frame may
    announce, `max_inflated` what one `C` frame may inflate to; over any of them,
    `FrameTooLargeError` is raised as soon as the header says so.

    `decode` hands frames out one at a time as they are parsed, a `C` frame's nested frames as
    its payload inflates, so that the caller can count what it holds and stop a stream that
    would hold too much before the rest is inflated; `held()` is what the decoder itself holds.
    Linear in the bytes fed, however they are cut: `steps` counts the parse steps taken (a field
    of a `D` frame, a frame header), for the tests that hold it so.
    """

    fast = True
    """Read runs of `J` frames in one loop (`_json_frames`); False: one `_parse` per frame, the
    careful path the tests compare the fast one with."""

    def __init__(
        self,
        max_window: int = DEFAULT_MAX_WINDOW,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_inflated: int = DEFAULT_MAX_INFLATED,
    ):
        self.max_window = max_window
        self.max_frame = max_frame
        self.max_inflated = max_inflated
        self._stream = _Stream()
        self._pos = 0  # in self._stream.buf, while `decode` runs: what is parsed already
        self._inflation: _Inflation | None = None
        self._failure: LumberjackProtocolError | None = None
        self._discarded = False
        self.steps = 0

    @property
    def _buffer(self) -> bytearray:
        return self._stream.buf

    @property
    def pending(self) -> bool:
        """True while part of a frame is held: the stream cannot end cleanly here."""
        return bool(self._stream.buf) or self._inflation is not None

    def held(self) -> int:
        """Bytes held: input not parsed yet, a `D` frame's strings read so far, inflated bytes
        not parsed yet and the inflater's own state."""
        held = self._stream.held(self._pos)
        inflation = self._inflation
        if inflation is not None:
            held += inflation.inner.held() + _INFLATER_BYTES
        return held

    def discard(self) -> None:
        """Drop what is held and take nothing more (the connection is closing)."""
        self._discarded = True
        self._clear()

    def feed(self, data: bytes) -> list[Frame]:
        """Every frame completed by `data` (and what was fed before), in stream order."""
        return [frame for frames in self.decode(data) for frame in frames]

    def decode(self, data: bytes) -> Iterator[list[Frame]]:
        """The frames completed by `data`, in runs as they are parsed: the frames read straight
        from `data`, then those of each inflation step of a `C` frame, and so on (the iterator
        must be run to its end for the stream to go on; left early, the decoder is to be
        discarded)."""
        for frames in self.decode_runs(data):
            if any(type(frame) is JsonDataRun for frame in frames):
                frames = [
                    one
                    for frame in frames
                    for one in (frame.frames() if type(frame) is JsonDataRun else (frame,))
                ]
            yield frames

    def decode_runs(self, data: bytes) -> Iterator[list[Frame | JsonDataRun]]:
        """As `decode`, but consecutive `J` frames come as one `JsonDataRun` (the input's way:
        no object per event besides the event itself)."""
        if self._failure is not None:
            raise LumberjackProtocolError(f"stream already failed: {self._failure}")
        if self._discarded:
            raise LumberjackProtocolError("stream discarded")
        stream = self._stream
        buf = stream.buf
        direct = None  # bytes of a C frame's payload that go to its inflater without a copy
        inflation = self._inflation
        if inflation is not None and not buf and self.fast:
            direct = data[: inflation.remaining]
            buf += memoryview(data)[len(direct) :]
        else:
            buf += data
        pos = 0
        frames: list[Frame] = []
        try:
            while True:
                inflation = self._inflation
                if inflation is not None:
                    if frames:
                        self._pos = pos
                        yield frames
                        frames = []
                    if direct is not None:
                        chunk, direct = direct, None
                        take = len(chunk)
                    else:
                        take = min(inflation.remaining, len(buf) - pos)
                        chunk = bytes(buf[pos : pos + take])
                        self._pos = pos = pos + take
                    if take:
                        inflation.remaining -= take
                        yield from self._inflate(inflation, chunk)
                    if inflation.remaining:
                        break
                    self._inflated(inflation)
                    self._inflation = None
                    continue
                if len(buf) - pos < 2:
                    break
                if buf[pos] == VERSION_2 and buf[pos + 1] == CODE_JSON_DATA and self.fast:
                    run = JsonDataRun()
                    start, pos = pos, self._json_frames(run, buf, pos, len(buf))
                    if run.events:
                        frames.append(run)
                    if pos == start:
                        break  # a J frame not whole yet
                    continue
                result = self._parse(stream, pos, len(buf), nested_in=None)
                if result is _NEED_MORE:
                    break
                frame, pos = result
                if frame is not None:
                    frames.append(frame)
            if frames:
                self._pos = pos
                yield frames
        except LumberjackProtocolError as exc:
            self._failure = exc
            self._clear()
            raise
        finally:
            if stream is self._stream:
                del buf[:pos]
                self._pos = 0

    def _clear(self) -> None:
        self._stream = _Stream()
        self._pos = 0
        self._inflation = None

    def _inflate(self, inflation: _Inflation, chunk: bytes) -> Iterator[list[Frame]]:
        """Inflate `chunk` a step at a time, handing out the nested frames completed."""
        inflater = inflation.inflater
        if inflater.eof:
            raise CompressedFrameError("bytes after the end of the zlib stream in a C frame")
        limit = self.max_inflated
        inner = inflation.inner
        data = chunk
        while True:
            step = min(_INFLATE_STEP, limit - inflation.total + 1)
            try:
                out = inflater.decompress(data, step)
            except _DEFLATE.error as exc:
                raise CompressedFrameError(f"C frame is not a valid zlib stream: {exc}") from None
            finally:
                settle_vectors()
            inflation.total += len(out)
            if inflation.total > limit:
                raise FrameTooLargeError(f"C frame inflates to more than {limit} bytes")
            if inflater.unused_data:
                raise CompressedFrameError("bytes after the end of the zlib stream in a C frame")
            if out:
                if inflation.version == VERSION_2 and self.fast:
                    frames = self._nested_json(inner, out)
                else:
                    inner.buf += out
                    frames = self._nested(inner, inflation.version)
                if frames:
                    yield frames
            data = inflater.unconsumed_tail
            if not data and len(out) < step:
                return

    def _inflated(self, inflation: _Inflation) -> None:
        """The end of a `C` frame: its zlib stream and its last nested frame must end too."""
        if not inflation.inflater.eof:
            raise CompressedFrameError("C frame ends before its zlib stream does")
        if inflation.inner.buf:
            raise CompressedFrameError("C frame holds a truncated frame")

    def _nested(self, inner: _Stream, version: int) -> list[Frame]:
        """The whole frames in the inflated bytes of a `C` frame, which must hold data frames
        only (or nothing: Logstash accepts an empty one)."""
        buf = inner.buf
        end = len(buf)
        frames: list[Frame] = []
        pos = 0
        while end - pos >= 2:
            result = self._parse(inner, pos, end, version)
            if result is _NEED_MORE:
                break
            frame, pos = result
            frames.append(frame)
        del buf[:pos]
        return frames

    def _nested_json(self, inner: _Stream, out: bytes) -> list[Frame]:
        """As `_nested` for a `2C` frame, reading the `J` frames of `out` (one inflation step)
        where they lie: only a frame cut by the end of a step is copied (into `inner.buf`), and
        completed from the start of the next step. (Gathering every step into one buffer cost
        two large allocations and copies per step.)"""
        run = JsonDataRun()
        start = 0
        buf = inner.buf
        if buf:
            start = self._complete(buf, out)
            end = len(buf)
            pos = self._json_frames(run, buf, 0, end)
            self._only_json(buf, pos, end)
            if pos < end:  # still not whole: every byte of `out` went into it
                return [run] if run.events else []
            buf.clear()
        end = len(out)
        pos = self._json_frames(run, out, start, end)
        if pos < end:
            self._only_json(out, pos, end)
            buf += memoryview(out)[pos:]
        return [run] if run.events else []

    def _only_json(self, buf: bytes | bytearray, pos: int, end: int) -> None:
        """Raise, as `_parse` does, when the frame at `pos` is not a `J` frame (in a `2C`)."""
        if end - pos >= 2 and (buf[pos] != VERSION_2 or buf[pos + 1] != CODE_JSON_DATA):
            probe = _Stream()
            probe.buf += buf[pos : pos + 2]
            self._parse(probe, 0, 2, VERSION_2)
            raise AssertionError("unreachable")  # pragma: no cover

    def _complete(self, buf: bytearray, out: bytes) -> int:
        """Add to `buf` (a `J` frame cut by the end of the last step) what it still needs of
        `out`, or all of `out`; how many bytes were taken."""
        taken = 0
        if len(buf) < 10:
            taken = min(10 - len(buf), len(out))
            buf += out[:taken]
            if len(buf) < 10:
                return taken
        kind, _, length = _J_HEAD.unpack_from(buf, 0)
        if kind != _2J or not 0 < length <= self.max_frame:
            return taken  # refused as it is
        more = min(10 + length - len(buf), len(out) - taken)
        buf += memoryview(out)[taken : taken + more]
        return taken + more

    def _parse(self, stream: _Stream, pos: int, end: int, nested_in: int | None):
        """One frame at `pos`: `(frame, next_pos)`, `(None, next_pos)` when a `C` frame
        begins (its payload is then streamed into the inflater), or _NEED_MORE."""
        buf = stream.buf
        version = buf[pos]
        code = buf[pos + 1]
        if version not in (VERSION_1, VERSION_2):
            if version == _TLS_HANDSHAKE and code == 0x03 and nested_in is None:
                raise LumberjackProtocolError(TLS_ON_PLAIN_PORT)
            if nested_in is None and bytes(buf[pos : pos + 4]) in _HTTP_STARTS:
                raise LumberjackProtocolError(HTTP_ON_LUMBERJACK_PORT)
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
            return self._v1_data(stream, pos, end)
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

    def _json_frames(self, run: JsonDataRun, buf: bytearray, pos: int, end: int) -> int:
        """The `J` frames from `pos` on, added to `run`; where they stop (the end, a frame cut
        short, or another kind of frame). A bad `J` frame raises as `_json` does."""
        events = run.events
        heads = run.heads
        first, count = pos, len(events)
        limit = min(_SHALLOW, self.max_frame)
        unpack = _J_HEAD.unpack_from
        view = memoryview(buf)  # a payload is read in place: no copy (released before return)
        try:
            while True:
                # the fast path: a frame whose event reads as a dict without help; anything
                # else (cut short, empty, long, not JSON, not an object) is left to `_json`
                while end - pos >= 10:
                    head = unpack(buf, pos)
                    kind, _, length = head
                    start = pos + 10
                    stop = start + length
                    if kind != _2J or stop > end or not 0 < length <= limit:
                        break
                    try:
                        event = read(view[start:stop])
                    except Exception:
                        break
                    if type(event) is not dict:
                        break
                    events.append(event)
                    heads.append(head)
                    pos = stop
                if end - pos < 2 or buf[pos] != VERSION_2 or buf[pos + 1] != CODE_JSON_DATA:
                    return pos
                result = self._json(buf, pos, end)
                if result is _NEED_MORE:
                    return pos
                frame, pos = result
                events.append(frame.event)
                heads.append((_2J, frame.seq, frame.size))
        finally:
            view.release()
            run.size += pos - first - 10 * (len(events) - count)

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
        return JsonDataFrame(seq, _load_object(buf[pos + 10 : stop], seq), length), stop

    def _v1_data(self, stream: _Stream, pos: int, end: int):
        """A `D` frame, read on from where the last read of it stopped (if it did)."""
        buf = stream.buf
        partial = stream.partial
        if partial is None:
            if end - pos < 10:
                return _NEED_MORE
            seq, pairs = _TWO_U32.unpack_from(buf, pos + 2)
            if pairs == 0:
                raise LumberjackProtocolError(f"D frame seq {seq} with no fields")
            if 8 * pairs > self.max_frame:
                raise FrameTooLargeError(
                    f"D frame of {pairs} fields over the limit {self.max_frame}"
                )
            strings: list[str] = []
            want = 2 * pairs
            cursor = pos + 10
            size = 0
        else:
            seq = partial.seq
            strings = partial.strings
            want = 2 * partial.pairs
            cursor = pos + partial.offset
            size = partial.size
        self.steps += 1
        limit = pos + self.max_frame
        steps = 0
        unpack = _U32.unpack_from
        while len(strings) < want:
            if end - cursor < 4:
                break
            (length,) = unpack(buf, cursor)
            stop = cursor + 4 + length
            if stop > limit:
                raise FrameTooLargeError(f"D frame seq {seq} over the limit {self.max_frame}")
            if stop > end:
                break
            steps += 1
            try:
                strings.append(buf[cursor + 4 : stop].decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise LumberjackProtocolError(f"D frame seq {seq}: invalid UTF-8: {exc}") from None
            size += length
            cursor = stop
        self.steps += steps
        if len(strings) < want:
            if partial is None:
                partial = stream.partial = _PartialData(seq, want // 2, strings)
            partial.offset = cursor - pos
            partial.size = size
            return _NEED_MORE
        stream.partial = None
        event = dict(zip(strings[0::2], strings[1::2], strict=True))
        return V1DataFrame(seq, event, cursor - pos), cursor


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
