"""The incremental readers: bytes in, events out, for requests (server side) and responses
(client side) alike.

``feed(data)`` appends bytes cut anywhere; ``next_event()`` returns the next event of the stream:

- a head (:class:`~.heads.RequestHead` or :class:`~.heads.ResponseHead`), with the body framing
  it decided;
- ``bytes``: a piece of the body (de-chunked; never empty);
- :data:`END`: the message is complete; the next call starts on the next (pipelined) message;
- :data:`NEED_DATA`: nothing more can be decided until more bytes are fed.

One body reader serves both sides: a declared ``Content-Length``, chunked (chunk-size lines of at
most :data:`MAX_CHUNK_LINE` bytes, trailers within the head limit and of the head's syntax), and,
for a response only, a body that runs until :meth:`MessageReader.end_of_stream`. The caller pulls
at its own pace: a server that is still answering one request simply does not ask for the next,
and the bytes of pipelined requests wait in the buffer.

Anything that is not well-formed HTTP/1.1 raises the side's error class (:class:`RequestError`,
:class:`ResponseError`) carrying the status a server answers for it; the reader is then dead,
because the framing of what follows is unknown.

Per message the cost is a ``find`` for the blank line, one ``split`` of the head, a ``partition``
and a ``lower`` per header and a few C-level ``translate`` checks; body bytes are passed on
without copying when they arrive whole.
"""

from __future__ import annotations

from twisted_logstash.wires.native.http.errors import ProtocolError, RequestError, ResponseError
from twisted_logstash.wires.native.http.heads import read_request_head, read_response_head
from twisted_logstash.wires.native.http.lines import (
    HEAD_END,
    HEX,
    TCHAR,
    field,
    take_line,
    unended_head,
)

__all__ = [
    "END",
    "MAX_CHUNK_LINE",
    "MAX_HEAD",
    "NEED_DATA",
    "MessageReader",
    "RequestParser",
    "ResponseReader",
]

MAX_HEAD = 64 * 1024
"""Default limit of a head (start line and headers), and of a chunked body's trailers."""
MAX_CHUNK_LINE = 4096
"""Limit of a chunk-size line, extensions included."""
_STATUS_START = b"HTTP/"
_TLS_START = b"\x16\x03"  # a TLS handshake record, which the input names itself once it is sure


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA = _Marker("NEED_DATA")
"""Event: feed more bytes."""
END = _Marker("END")
"""Event: the current message (head and body) is complete."""

# reader states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE, _ERROR = (
    range(9)
)


class MessageReader:
    """Incremental reader of the messages one side of a connection receives.

    ``max_head`` bounds a head and a chunked body's trailers (431 beyond). ``max_body``, when
    set, refuses a declared ``Content-Length`` above it at once, and a chunked body as soon as its
    chunk sizes add up to more (413), before the body is read. A subclass says which head it
    reads, in which words, and which error class its caller catches.
    """

    what = "message"
    """The side's word in error reasons."""
    error: type[ProtocolError] = ProtocolError
    """The class the caller catches."""
    skip_blank_lines = False
    """Whether empty lines before a head are ignored."""

    def __init__(self, max_head: int = MAX_HEAD, max_body: int | None = None) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self._buffer = b""
        self._state = _HEAD
        self._scanned = 0  # how far the head was already searched for its end
        self._remaining = 0
        self._body_total = 0
        self._trailer_bytes = 0
        self._error: ProtocolError | None = None
        self._eof = False
        self._started = False  # the unended head's first token was seen whole

    @property
    def buffered(self) -> int:
        """How many received bytes wait to be parsed."""
        return len(self._buffer)

    @property
    def in_message(self) -> bool:
        """True between the first byte of a message and its :data:`END`."""
        return self._state != _HEAD or bool(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append received bytes (any amount, cut anywhere)."""
        if data and self._error is None:
            self._buffer = self._buffer + data if self._buffer else bytes(data)

    def end_of_stream(self) -> None:
        """The peer closed its side: a body that runs until the close is complete now."""
        self._eof = True

    def take_buffered(self) -> bytes:
        """The bytes received and not parsed yet, which the reader forgets."""
        data, self._buffer = self._buffer, b""
        self._scanned = 0
        return data

    def next_event(self):
        """The next head, body ``bytes``, :data:`END` or :data:`NEED_DATA`."""
        if self._error is not None:
            raise self._error
        try:
            while True:
                state = self._state
                if state == _LENGTH:
                    return self._read_body(_DONE)
                if state == _HEAD:
                    event = self._read_head()
                elif state == _CHUNK_DATA:
                    return self._read_body(_CHUNK_END)
                elif state == _CHUNK_SIZE:
                    event = self._read_chunk_size()
                elif state == _CHUNK_END:
                    event = self._read_chunk_end()
                elif state == _TRAILERS:
                    event = self._read_trailer()
                elif state == _DONE:
                    self._state = _HEAD
                    return END
                else:  # _UNTIL_CLOSE (_ERROR never gets here)
                    event = self._read_until_close()
                if event is not None:
                    return event
        except ProtocolError as error:
            raise self._fail(error) from None

    def _check_start(self, buf: bytes, checked: int) -> None:
        """A head not ended yet whose first bytes already say it is none (``checked`` of them
        were looked at before): the request side refuses it at once."""

    @staticmethod
    def _read_head_block(block: bytes, max_body: int | None):
        """The head of a message from its bytes up to its blank line (which is left out)."""
        raise NotImplementedError

    # -- head -------------------------------------------------------------------------------------

    def _read_head(self):
        buf = self._buffer
        if buf[:1] in (b"\r", b"\n") and self.skip_blank_lines:
            buf = self._buffer = buf.lstrip(b"\r\n")
            self._scanned = 0
        if not buf:
            return NEED_DATA
        # a head fed bit by bit is searched once
        start = self._scanned - 3 if self._scanned > 3 else 0
        end = buf.find(HEAD_END, start, self.max_head + 4)
        if end < 0:
            unended_head(buf, start, self.max_head, self.what)
            self._check_start(buf, self._scanned)
            self._scanned = len(buf)
            return NEED_DATA
        self._started = False
        self._scanned = 0
        self._buffer = buf[end + 4 :]
        head = self._read_head_block(buf[:end], self.max_body)
        length = head.content_length
        if head.chunked:
            self._state = _CHUNK_SIZE
            self._body_total = 0
            self._trailer_bytes = 0
        elif length:
            self._state = _LENGTH
            self._remaining = length
        elif length is None:
            self._state = _UNTIL_CLOSE
        else:
            self._state = _DONE
        return head

    # -- bodies -----------------------------------------------------------------------------------

    def _read_body(self, then: int):
        """The next piece of a body of known size (the whole, or one chunk), ``then`` the state
        after its last byte."""
        buf = self._buffer
        if not buf:
            return NEED_DATA
        remaining = self._remaining
        if len(buf) <= remaining:
            self._buffer = b""
            data = buf
        else:
            data = buf[:remaining]
            self._buffer = buf[remaining:]
        remaining -= len(data)
        self._remaining = remaining
        if remaining == 0:
            self._state = then
        return data

    def _read_until_close(self):
        buf = self._buffer
        if buf:
            self._buffer = b""
            return buf
        if self._eof:
            self._state = _DONE
            return None
        return NEED_DATA

    def _read_chunk_size(self):
        buf = self._buffer
        line = take_line(buf, MAX_CHUNK_LINE, "chunk size line")
        if line is None:
            return NEED_DATA
        self._buffer = buf[len(line) + 2 :]
        size_text = line.partition(b";")[0].rstrip(b" \t")
        if not size_text or size_text.translate(None, HEX) or len(size_text) > 16:
            raise ProtocolError(400, f"bad chunk size line {line[:40]!r}")
        size = int(size_text, 16)
        if self.max_body is not None:
            self._body_total += size
            if self._body_total > self.max_body:
                raise ProtocolError(
                    413, f"chunked body larger than the limit of {self.max_body} bytes"
                )
        if size:
            self._remaining = size
            self._state = _CHUNK_DATA
        else:
            self._state = _TRAILERS
        return None

    def _read_chunk_end(self):
        buf = self._buffer
        if len(buf) < 2:
            if buf and buf != b"\r":
                raise ProtocolError(400, "chunk data longer than its declared size")
            return NEED_DATA
        if buf[:2] != b"\r\n":
            raise ProtocolError(400, "chunk data longer than its declared size")
        self._buffer = buf[2:]
        self._state = _CHUNK_SIZE
        return None

    def _read_trailer(self):
        buf = self._buffer
        line = take_line(buf, self.max_head, "trailer line")
        if line is None:
            return NEED_DATA
        self._buffer = buf[len(line) + 2 :]
        if not line:
            self._state = _DONE
            return None
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > self.max_head:
            raise ProtocolError(431, f"trailers larger than {self.max_head} bytes")
        field(line, "trailer")
        return None

    def _fail(self, error: ProtocolError) -> ProtocolError:
        if not isinstance(error, self.error):
            error = self.error(error.status, error.reason)
        self._error = error
        self._state = _ERROR
        self._buffer = b""
        return error


class RequestParser(MessageReader):
    """Incremental reader of a stream of HTTP/1.x requests on one connection (server side).

    Empty lines before a request line are ignored (RFC 9112 2.2: some clients send a CRLF after a
    body); failures raise :class:`RequestError`.
    """

    what = "request"
    error = RequestError
    skip_blank_lines = True

    _read_head_block = staticmethod(read_request_head)

    def _check_start(self, buf: bytes, checked: int) -> None:
        """Refuse at once a head whose first bytes cannot start a request line (a method token,
        then SP): a TLS ClientHello (0x16), a Lumberjack window (``2W`` then a NUL), any binary
        protocol. Without this, such a sender waits for a CRLF CRLF that never comes until the
        header timeout. Each byte is looked at once, however the head is cut, and only until
        the method's SP. The first two bytes of a TLS handshake wait for the third: the input
        answers a TLS client in words of its own (`transport/server.py`, ``tls_handshake``)."""
        if self._started or (len(buf) < 3 and _TLS_START.startswith(buf)):
            return  # a TLS handshake's first bytes: the input's own check answers them
        space = buf.find(b" ", checked)
        token = buf[checked:] if space < 0 else buf[checked:space]
        if token.translate(None, TCHAR) or space == 0:
            raise ProtocolError(400, f"not an HTTP request (it starts with {buf[:8]!r})")
        self._started = space > 0


class ResponseReader(MessageReader):
    """Incremental reader of the HTTP/1.x responses on one connection (client side); failures
    raise :class:`ResponseError`. Interim (1xx) heads come as events of their own, each followed
    by :data:`END`."""

    what = "response"
    error = ResponseError

    _read_head_block = staticmethod(read_response_head)

    def _check_start(self, buf: bytes, checked: int) -> None:
        """Refuse at once an answer that does not start as a status line does (``HTTP/``):
        a framed receiver's ACK, a TLS alert, a banner. Its sender is then told at once what
        it met, rather than when the receiver closes, if it ever does."""
        if checked < 5 and buf[:5] != _STATUS_START[: len(buf[:5])]:
            raise ProtocolError(400, f"not an HTTP response (it starts with {buf[:8]!r})")
