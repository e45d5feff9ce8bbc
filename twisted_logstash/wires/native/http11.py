"""Sans-IO HTTP/1.1 request parser for the native input (server side).

Bytes in, events out; it never touches a socket or a clock. ``feed(data)`` appends bytes cut
anywhere; ``next_event()`` returns the next event of the stream:

- a :class:`RequestHead` (request line, headers, and the body framing it decided);
- ``bytes``: a piece of the body (de-chunked; never empty);
- :data:`END`: the request is complete; the next call starts on the next (pipelined) request;
- :data:`NEED_DATA`: nothing more can be decided until more bytes are fed.

The caller pulls at its own pace: a server that is still answering one request simply does not
ask for the next, and the bytes of pipelined requests wait in the buffer.

Anything that is not well-formed HTTP/1.1 raises :class:`RequestError` carrying the status to
answer (400, 413, 417, 431, 501, 505); the parser is then dead and the connection must close after
the answer, because the framing of what follows is unknown. Request smuggling is refused rather
than guessed at: ``Content-Length`` together with ``Transfer-Encoding``, differing
``Content-Length`` values, a ``Transfer-Encoding`` that does not end in a single ``chunked``, bare
CR or LF line ends, whitespace before a header colon, and obsolete line folding are all 400.

Per request the cost is a ``find`` for the blank line, one ``split`` of the head, a ``partition``
and a ``lower`` per header and a few C-level ``translate`` checks; body bytes are passed on
without copying when they arrive whole.
"""

from __future__ import annotations

from twisted_logstash.errors import CodecError

__all__ = [
    "END",
    "MAX_CHUNK_LINE",
    "MAX_HEAD",
    "NEED_DATA",
    "RequestError",
    "RequestHead",
    "RequestParser",
]

MAX_HEAD = 64 * 1024
"""Default limit of a request head (request line and headers), and of a chunked body's trailers."""
MAX_CHUNK_LINE = 4096
"""Limit of a chunk-size line, extensions included."""


class RequestError(CodecError):
    """Bytes that are not an acceptable HTTP/1.1 request; ``status`` is the answer to give."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA = _Marker("NEED_DATA")
"""Event: feed more bytes."""
END = _Marker("END")
"""Event: the current request (head and body) is complete."""


class RequestHead:
    """A request line and its headers, and what they decided about the body and the connection.

    Everything stays ``bytes`` (names lower-cased), so that a request costs no decoding.
    """

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "target",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool,
        content_length: int | None,
        chunked: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        """``(lower-cased name, value)`` in the order received, repeats kept."""
        self.keep_alive = keep_alive
        """False when the connection must close after the answer (``close``, or HTTP/1.0)."""
        self.expect_continue = expect_continue
        """The client waits for ``100 Continue`` before it sends the body."""
        self.content_length = content_length
        """The declared body size; None for a chunked body (0 when no body was framed)."""
        self.chunked = chunked

    def get(self, name: bytes) -> bytes | None:
        """The last value of header ``name`` (lower case), or None."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"<RequestHead {self.method!r} {self.target!r} {self.version!r}>"


_TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HEX = b"0123456789abcdefABCDEF"
_VISIBLE = bytes(range(0x21, 0x7F))
# bytes a head may hold: visible ASCII, SP, HTAB, obs-text (0x80-0xFF), and the CRLFs
_HEAD_BYTES = bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)) + b"\t\r\n"
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"expect", b"host"})

# parser states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _DONE, _ERROR = range(8)


class RequestParser:
    """Incremental parser for a stream of HTTP/1.x requests on one connection.

    ``max_head`` bounds the head (431 beyond it). ``max_body``, when set, refuses a declared
    ``Content-Length`` above it at once, and a chunked body as soon as its chunk sizes add up to
    more (413), before the body is read.
    """

    def __init__(self, max_head: int = MAX_HEAD, max_body: int | None = None) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self._buffer = b""
        self._state = _HEAD
        self._scanned = 0  # how far the head was already searched for its end
        self._remaining = 0
        self._body_total = 0
        self._trailer_bytes = 0
        self._error: RequestError | None = None

    @property
    def buffered(self) -> int:
        """How many received bytes wait to be parsed."""
        return len(self._buffer)

    @property
    def in_message(self) -> bool:
        """True between the first byte of a request and its :data:`END`."""
        return self._state != _HEAD or bool(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append received bytes (any amount, cut anywhere)."""
        if data and self._error is None:
            self._buffer = self._buffer + data if self._buffer else bytes(data)

    def next_event(self):
        """The next :class:`RequestHead`, body ``bytes``, :data:`END` or :data:`NEED_DATA`."""
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
                else:  # _DONE
                    self._state = _HEAD
                    return END
                if event is not None:
                    return event
        except RequestError as error:
            self._fail(error)
            raise

    # -- head -------------------------------------------------------------------------------------

    def _read_head(self):
        buf = self._buffer
        if buf[:1] in (b"\r", b"\n"):
            # RFC 9112 2.2: empty lines before a request line are ignored (some clients send a
            # CRLF after a body)
            buf = self._buffer = buf.lstrip(b"\r\n")
            self._scanned = 0
        if not buf:
            return NEED_DATA
        start = self._scanned - 3 if self._scanned > 3 else 0
        end = buf.find(b"\r\n\r\n", start, self.max_head + 4)
        if end < 0:
            if buf.find(b"\n\n", start) >= 0 or buf.find(b"\r\r", start) >= 0:
                raise RequestError(400, "bare CR or LF in the request head")
            # too large once it cannot end within the limit: all beyond it must be the start of
            # the CRLF CRLF that ends the head, waiting for its rest
            over = len(buf) - self.max_head
            if over > 0 and not any(buf.endswith(b"\r\n\r\n"[:k]) for k in range(over, 4)):
                raise RequestError(431, f"request head larger than {self.max_head} bytes")
            self._scanned = len(buf)
            return NEED_DATA
        self._scanned = 0
        self._buffer = buf[end + 4 :]
        head = _parse_head(buf[:end], self.max_body)
        length = head.content_length
        if head.chunked:
            self._state = _CHUNK_SIZE
            self._body_total = 0
            self._trailer_bytes = 0
        elif length:
            self._state = _LENGTH
            self._remaining = length
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

    def _read_chunk_size(self):
        line = self._take_line(MAX_CHUNK_LINE, "chunk size line")
        if line is None:
            return NEED_DATA
        size_text = line.partition(b";")[0].rstrip(b" \t")
        if not size_text or size_text.translate(None, _HEX) or len(size_text) > 16:
            raise RequestError(400, f"bad chunk size line {line[:40]!r}")
        size = int(size_text, 16)
        if self.max_body is not None:
            self._body_total += size
            if self._body_total > self.max_body:
                raise RequestError(
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
                raise RequestError(400, "chunk data longer than its declared size")
            return NEED_DATA
        if buf[:2] != b"\r\n":
            raise RequestError(400, "chunk data longer than its declared size")
        self._buffer = buf[2:]
        self._state = _CHUNK_SIZE
        return None

    def _read_trailer(self):
        line = self._take_line(self.max_head, "trailer line")
        if line is None:
            return NEED_DATA
        if not line:
            self._state = _DONE
            return None
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > self.max_head:
            raise RequestError(431, f"trailers larger than {self.max_head} bytes")
        if line.translate(None, _HEAD_BYTES):
            raise RequestError(400, "control character in a trailer")
        _split_field(line)
        return None

    def _take_line(self, limit: int, what: str) -> bytes | None:
        """One CRLF-terminated line without its CRLF, or None until it is all here."""
        buf = self._buffer
        end = buf.find(b"\r\n", 0, limit + 2)
        if end < 0:
            if b"\n" in buf[: limit + 2]:
                raise RequestError(400, f"bare LF in a {what}")
            if len(buf) > limit and buf[limit:] != b"\r":  # a CR at the limit may end the line
                raise RequestError(400, f"{what} longer than {limit} bytes")
            return None
        line = buf[:end]
        if b"\r" in line or b"\n" in line:
            raise RequestError(400, f"bare CR or LF in a {what}")
        self._buffer = buf[end + 2 :]
        return line

    def _fail(self, error: RequestError) -> None:
        self._error = error
        self._state = _ERROR
        self._buffer = b""


def _parse_head(block: bytes, max_body: int | None) -> RequestHead:
    """Request line and headers of a head without its final blank line."""
    lines = block.split(b"\r\n")
    breaks = len(lines) - 1
    if block.count(b"\n") != breaks or block.count(b"\r") != breaks:
        raise RequestError(400, "bare CR or LF in the request head")
    if block.translate(None, _HEAD_BYTES):
        raise RequestError(400, "control character in the request head")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise RequestError(400, f"bad request line {lines[0][:80]!r}")
    method, target, version = parts
    if not method or method.translate(None, _TCHAR):
        raise RequestError(400, f"bad method {method[:40]!r}")
    if not target or target.translate(None, _VISIBLE):
        raise RequestError(400, f"bad request target {target[:80]!r}")
    if version == b"HTTP/1.1":
        http10 = False
    elif version == b"HTTP/1.0":
        http10 = True
    elif (
        len(version) == 8
        and version[:5] == b"HTTP/"
        and version[5:6].isdigit()
        and version[6:7] == b"."
        and version[7:8].isdigit()
    ):
        raise RequestError(505, f"HTTP version {version.decode('ascii')} is not supported")
    else:
        raise RequestError(400, f"bad HTTP version {version[:40]!r}")

    headers: list[tuple[bytes, bytes]] = []
    framing: list[tuple[bytes, bytes]] = []
    names: list[bytes] = []
    append = headers.append
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name:
            raise RequestError(400, f"bad header line {line[:80]!r}")
        names.append(name)
        field = (name.lower(), value.strip(b" \t"))
        append(field)
        if field[0] in _FRAMING:
            framing.append(field)
    # every name is a token: this also refuses obsolete line folding (a line starting with SP or
    # HTAB) and whitespace before the colon, both classic smuggling vectors; one check for all
    if names and b":".join(names).translate(None, _TCHAR) != b":" * (len(names) - 1):
        bad = next(name for name in names if name.translate(None, _TCHAR))
        raise RequestError(400, f"bad header name {bad[:80]!r}")
    return _frame(method, target, version, headers, framing, http10, max_body)


def _split_field(line: bytes) -> tuple[bytes, bytes]:
    """A trailer line as ``(lower-cased name, value)``."""
    name, sep, value = line.partition(b":")
    if not sep or not name or name.translate(None, _TCHAR):
        raise RequestError(400, f"bad header line {line[:80]!r}")
    return name.lower(), value.strip(b" \t")


def _frame(method, target, version, headers, framing, http10, max_body) -> RequestHead:
    """Decide the body framing and the connection's fate from the few headers that matter."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    keep_alive = not http10
    close = False
    expect_continue = False
    hosts = 0
    for name, value in framing:
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.append(value)
        elif name == b"connection":
            value = value.lower()
            if value == b"keep-alive":  # what most clients send
                keep_alive = True
                continue
            for token in value.split(b","):
                token = token.strip(b" \t")
                if token == b"close":
                    close = True
                elif token == b"keep-alive" and http10:
                    keep_alive = True
        elif name == b"expect":
            if value.lower() != b"100-continue":
                raise RequestError(417, f"unsupported expectation {value[:40]!r}")
            # RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored
            expect_continue = not http10
        else:  # host
            hosts += 1
    if close:
        keep_alive = False
    if hosts > 1 or (hosts == 0 and not http10):
        raise RequestError(400, "an HTTP/1.1 request needs exactly one Host header")
    if codings:
        if lengths:
            raise RequestError(400, "both Content-Length and Transfer-Encoding")
        if http10:
            raise RequestError(400, "Transfer-Encoding in an HTTP/1.0 request")
        tokens = [token.strip(b" \t").lower() for value in codings for token in value.split(b",")]
        tokens = [token for token in tokens if token]
        for token in tokens:
            if token != b"chunked":
                raise RequestError(501, f"transfer coding {token[:40]!r} is not supported")
        if len(tokens) != 1:
            raise RequestError(400, "Transfer-Encoding must be chunked, once")
        return RequestHead(
            method, target, version, headers, keep_alive, expect_continue, None, True
        )
    if not lengths:
        length = 0
    elif len(lengths) == 1 and lengths[0].isdigit() and len(lengths[0]) <= 18:
        length = int(lengths[0])  # the common case, checked against the limit below
        if max_body is not None and length > max_body:
            length = _content_length(lengths, max_body)
    else:
        length = _content_length(lengths, max_body)
    return RequestHead(method, target, version, headers, keep_alive, expect_continue, length, False)


def _content_length(values: list[bytes], max_body: int | None) -> int:
    """One length; repeats (or a comma list) must all agree."""
    found: set[int] = set()
    for value in values:
        for part in value.split(b","):
            part = part.strip(b" \t")
            if not part or not part.isdigit():
                raise RequestError(400, f"bad Content-Length {value[:40]!r}")
            if len(part) > 18:
                if max_body is not None:
                    raise RequestError(413, "declared body larger than the limit")
                raise RequestError(400, f"Content-Length {part[:40]!r} is not credible")
            found.add(int(part))
    if len(found) != 1:
        raise RequestError(400, "conflicting Content-Length values")
    length = found.pop()
    if max_body is not None and length > max_body:
        raise RequestError(
            413, f"declared body of {length} bytes is larger than the limit of {max_body} bytes"
        )
    return length
