"""Sans-IO ndjson: the body of the native wire and the lines of tcp/stdin sources.

Decoding follows Logstash's ``json_lines`` codec (see docs/WIRE-LOGSTASH.md, "Input
behaviour"): input is cut at ``\\n``; a last line without ``\\n`` is still decoded; an
empty (or whitespace-only) line yields nothing; a JSON object is one event; a JSON array
of objects is one event per element (``[]`` yields nothing, as in Logstash). Anything
else is never dropped: it becomes ``{"message": <line>, "tags": ["_jsonparsefailure"]}``.

Decisions where Logstash leaves room:
- An array holding anything but objects fails as a whole (Logstash raises while building
  the events and falls back for the whole line): one failure event with the raw line,
  so no part of the line is half-delivered.
- A line that is not valid UTF-8 is a parse failure (orjson refuses it). Its ``message``
  is the line decoded with ``errors="replace"`` (U+FFFD for each bad byte), the way
  Netty's ``toString(UTF_8)`` turns a body into a Java string, so that the event can be
  encoded again by any sink. (Logstash would scrub first and then try to parse; we tag
  instead, so that the sender learns its bytes were damaged.)
- The raw line keeps a trailing ``\\r`` (CRLF input): JSON allows it as whitespace, and
  a failure message holds the line exactly as received.

- JSON is read by the one JSON policy (:func:`jsonpolicy.loads`): an event nested deeper than
  ``jsonpolicy.MAX_DEPTH`` (what the policy writes as it is) is a parse failure, alone, as a
  line orjson cannot read; an integer beyond 64 bits keeps its exact value.

Decoding never raises except :class:`TooLargeError` from :class:`LineDecoder`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from twisted_logstash.codecs.jsonpolicy import (
    MAX_DEPTH,
    dumps_lines,
    loads,
    read,
    read_object_lines,
)
from twisted_logstash.errors import CodecError, TooLargeError

__all__ = [
    "DEFAULT_MAX_LINE_LENGTH",
    "PARSE_FAILURE_TAG",
    "LineDecoder",
    "LineSplitter",
    "NdjsonError",
    "decode",
    "decode_line",
    "encode",
]

PARSE_FAILURE_TAG = "_jsonparsefailure"
DEFAULT_MAX_LINE_LENGTH = 100 * 1024 * 1024

_DEEP_LINE = 2 * MAX_DEPTH  # a shorter line cannot nest deeper than the policy writes


class NdjsonError(CodecError):
    """Kept for callers that catch it: :func:`encode` no longer raises it (the JSON policy
    writes every event)."""


def encode(events: Iterable[dict]) -> bytes:
    """One compact JSON object per event, each followed by ``\\n``; ``b""`` for none.

    Written by the one JSON policy (:mod:`jsonpolicy`): never raises, a value JSON has no
    type for becomes its string form.
    """
    return dumps_lines(events)


def decode(data: bytes) -> list[dict]:
    """Every event of an ndjson body (complete: the last line needs no ``\\n``).

    A body of one object per line (the usual one) is read in one call
    (:func:`jsonpolicy.read_object_lines`); any other is read line by line, which gives the
    same events for the lines that are objects."""
    if type(data) is not bytes:
        data = bytes(data)
    events = read_object_lines(data)
    if events is not None:
        return events
    out: list[dict] = []
    _decode_lines(data.split(b"\n"), out)
    return out


def decode_line(line: bytes) -> list[dict]:
    """The events of one line (without its ``\\n``): zero, one, or one per array element."""
    out: list[dict] = []
    _decode_lines((line,), out)
    return out


def _decode_lines(
    lines: Iterable[bytes],
    out: list[dict],
    *,
    _read=read,
    _long=_DEEP_LINE,
    _dict=dict,
    _list=list,
) -> None:
    """The hot loop: the common case (an object per line) costs one read and one append (the
    names it uses are bound as locals: this loop runs once per event).

    A line that may nest deeper than the policy writes is read by :func:`jsonpolicy.loads`,
    which refuses the depth. The reader recurses, so while Python's recursion limit is not
    above MAX_DEPTH, any line it reads at all is within MAX_DEPTH, and one that reaches the
    limit raises RecursionError; only under a raised limit is every long line read the
    careful way."""
    append = out.append
    careful = sys.getrecursionlimit() > MAX_DEPTH
    for line in lines:
        if not line:
            continue
        try:
            if careful and len(line) > _long:
                parsed = loads(line)
            else:
                try:
                    parsed = _read(line)
                except RecursionError:
                    parsed = loads(line)
        except ValueError:  # not JSON (msgspec's DecodeError), TooDeepError
            if line.strip():
                append(_failure(line))
            continue
        kind = type(parsed)
        if kind is _dict:
            append(parsed)
        elif kind is _list and all(type(item) is _dict for item in parsed):
            out.extend(parsed)
        else:
            append(_failure(line))


def _failure(line: bytes) -> dict:
    """The event Logstash makes of a line that is not an object or an array of objects."""
    return {"message": line.decode("utf-8", "replace"), "tags": [PARSE_FAILURE_TAG]}


class LineSplitter:
    """Incremental line cutting: feed bytes cut anywhere, get the lines they complete.

    The one place that holds an unfinished line and enforces ``max_line_length`` (bytes,
    without the ``\\n``), for the ndjson decoder here and for the lines of the output's
    sources, which turn lines into events their own way. A line known to be too long raises
    :class:`TooLargeError` before it is buffered whole; what was held is then dropped.
    """

    def __init__(self, max_line_length: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        self.max_line_length = max_line_length
        self._parts: list[bytes] = []
        self._held = 0

    @property
    def buffered(self) -> int:
        """How many bytes of an unfinished line are held."""
        return self._held

    def lines(self, data: bytes) -> list[bytes]:
        """Every line completed by ``data``, without its ``\\n``."""
        newline = data.rfind(b"\n")
        if newline < 0:
            self._hold(data)
            return []
        chunk = data[:newline]
        if self._parts:
            self._parts.append(chunk)
            chunk = b"".join(self._parts)
            self._parts = []
            self._held = 0
        lines = chunk.split(b"\n")
        if len(chunk) > self.max_line_length:
            longest = max(map(len, lines))
            if longest > self.max_line_length:
                self._too_long(longest)
        self._hold(data[newline + 1 :])
        return lines

    def rest(self) -> bytes:
        """A last line that had no ``\\n`` (``b""`` for none); the splitter is then empty."""
        line = b"".join(self._parts)
        self._parts = []
        self._held = 0
        return line

    def _hold(self, data: bytes) -> None:
        if not data:
            return
        self._held += len(data)
        if self._held > self.max_line_length:
            self._too_long(self._held)
        self._parts.append(bytes(data))

    def _too_long(self, size: int) -> None:
        self._parts = []
        self._held = 0
        raise TooLargeError(
            f"a line of at least {size} bytes exceeds the limit of {self.max_line_length} bytes"
        )


class LineDecoder(LineSplitter):
    """Incremental ndjson decoder: feed bytes cut anywhere, get the events of whole lines.

    Feeding a body in pieces yields the same events as :func:`decode` of the whole. A line
    longer than ``max_line_length`` bytes (without its ``\\n``) raises
    :class:`TooLargeError` as soon as it is known to be too long, before it is buffered
    whole; the decoder then drops what it held (the caller should drop the connection).
    """

    def feed(self, data: bytes) -> list[dict]:
        """The events of every line completed by ``data``."""
        out: list[dict] = []
        _decode_lines(self.lines(data), out)
        return out

    def finish(self) -> list[dict]:
        """The events of a last line that had no ``\\n``; the decoder is then empty."""
        return decode_line(self.rest())
