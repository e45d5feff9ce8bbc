"""Sans-IO HTTP/1.1 response parser for the native transmitter.

Bytes in, one `Response` out. It never touches a socket or a clock, so that every framing
(Content-Length, chunked, until-close, interim 1xx) is tested on bytes alone and a response split
at any byte boundary parses the same as one delivered whole. The client sends one request at a
time on a connection, so a parser handles exactly one response (after any 1xx interim ones).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_logstash.errors import CodecError

MAX_HEAD = 64 * 1024
KEEP_BODY = 4096
_MAX_CHUNK_LINE = 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class ResponseError(CodecError):
    """Bytes from the server that are not a well-formed HTTP/1.x response."""


class IncompleteResponse(ResponseError):
    """The connection ended before a full response arrived."""


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response: only what a transmitter needs to judge the outcome."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    """The first `keep_body` bytes of the (de-chunked) body; enough to explain an error."""
    body_length: int
    keep_alive: bool
    """False when the connection must not carry another request."""

    def header(self, name: str) -> str | None:
        """The last value of header `name` (case-insensitive), or None."""
        name = name.lower()
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found


class _Head:
    """What the status line and header block decided."""

    __slots__ = ("headers", "keep_alive", "length", "mode", "reason", "status")

    def __init__(self, status, reason, headers, keep_alive, mode, length):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.keep_alive = keep_alive
        self.mode = mode
        self.length = length


# parser states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _CLOSE, _DONE = range(8)


class ResponseParser:
    """Incremental parser for one HTTP/1.x response.

    `feed(data)` returns the `Response` once it is complete, else None; `connection_lost()` returns
    it when the body ran until the close, else raises `IncompleteResponse`. Bytes after the
    response are kept in `leftover` (a server that sends them is not to be trusted with reuse).
    """

    def __init__(self, max_head: int = MAX_HEAD, keep_body: int = KEEP_BODY) -> None:
        self._max_head = max_head
        self._keep_body = keep_body
        self._buffer = b""
        self._state = _HEAD
        self._head: _Head | None = None
        self._body: list[bytes] = []
        self._kept = 0
        self._body_length = 0
        self._remaining = 0
        self._response: Response | None = None
        self.received = 0
        """How many bytes were fed, interim responses included."""
        self.leftover = b""

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> Response | None:
        """Consume `data`; return the response when it completed with this call."""
        self.received += len(data)
        if self._state == _DONE:
            self.leftover += data
            return None
        self._buffer = self._buffer + data if self._buffer else data
        while self._buffer and self._state != _DONE:
            if not self._step():
                break
        if self._state == _DONE:
            self.leftover, self._buffer = self._buffer, b""
            return self._response
        return None

    def connection_lost(self) -> Response:
        """The server closed: the response if it is complete now, else IncompleteResponse."""
        if self._state == _CLOSE:
            self._finish(keep_alive=False)
        if self._state != _DONE:
            raise IncompleteResponse(self._describe_incomplete())
        assert self._response is not None
        return self._response

    # -- states ---------------------------------------------------------------------------------

    def _step(self) -> bool:
        """Advance by one unit of work; False when more bytes are needed."""
        state = self._state
        if state == _HEAD:
            return self._read_head()
        if state == _LENGTH:
            return self._read_length()
        if state == _CHUNK_SIZE:
            return self._read_chunk_size()
        if state == _CHUNK_DATA:
            return self._read_chunk_data()
        if state == _CHUNK_END:
            return self._read_chunk_end()
        if state == _TRAILERS:
            return self._read_trailers()
        self._take_body(len(self._buffer))  # _CLOSE
        return False

    def _read_head(self) -> bool:
        buffer = self._buffer
        end, size = _find_blank_line(buffer)
        if end < 0:
            if len(buffer) > self._max_head:
                raise ResponseError(f"response head larger than {self._max_head} bytes")
            return False
        if end > self._max_head:
            raise ResponseError(f"response head larger than {self._max_head} bytes")
        head = _parse_head(buffer[:end])
        self._buffer = buffer[end + size :]
        if 100 <= head.status < 200 and head.status != 101:
            return True  # interim (100 Continue, 102, 103): the real response follows
        self._head = head
        if head.mode == _LENGTH:
            self._remaining = head.length
            self._state = _LENGTH
            if head.length == 0:
                self._finish(head.keep_alive)
        elif head.mode == _CHUNK_SIZE:
            self._state = _CHUNK_SIZE
        elif head.mode == _CLOSE:
            self._state = _CLOSE
        else:
            self._finish(head.keep_alive)
        return True

    def _read_length(self) -> bool:
        self._take_body(min(self._remaining, len(self._buffer)))
        if self._remaining == 0:
            assert self._head is not None
            self._finish(self._head.keep_alive)
        return True

    def _read_chunk_size(self) -> bool:
        line = self._take_line()
        if line is None:
            return False
        text = line.split(b";", 1)[0].strip()
        if not text or not _is_hex(text):
            raise ResponseError(f"bad chunk size line {bytes(line[:40])!r}")
        size = int(text, 16)
        if size == 0:
            self._state = _TRAILERS
        else:
            self._remaining = size
            self._state = _CHUNK_DATA
        return True

    def _read_chunk_data(self) -> bool:
        self._take_body(min(self._remaining, len(self._buffer)))
        if self._remaining == 0:
            self._state = _CHUNK_END
        return True

    def _read_chunk_end(self) -> bool:
        line = self._take_line()
        if line is None:
            return False
        if line:
            raise ResponseError("chunk data longer than its declared size")
        self._state = _CHUNK_SIZE
        return True

    def _read_trailers(self) -> bool:
        line = self._take_line()
        if line is None:
            return False
        if not line:
            assert self._head is not None
            self._finish(self._head.keep_alive)
        return True

    # -- helpers --------------------------------------------------------------------------------

    def _take_line(self) -> bytes | None:
        """One line without its CRLF (or bare LF), or None if it is not all here yet."""
        buffer = self._buffer
        end = buffer.find(b"\n", 0, _MAX_CHUNK_LINE + 1)
        if end < 0:
            if len(buffer) > _MAX_CHUNK_LINE:
                raise ResponseError("chunk size or trailer line too long")
            return None
        self._buffer = buffer[end + 1 :]
        return buffer[:end].rstrip(b"\r")

    def _take_body(self, count: int) -> None:
        """Move `count` bytes of the buffer into the body, keeping only its start."""
        if count <= 0:
            return
        chunk = self._buffer[:count]
        self._buffer = self._buffer[count:]
        self._body_length += count
        if self._state != _CLOSE:
            self._remaining -= count
        room = self._keep_body - self._kept
        if room > 0:
            kept = chunk[:room]
            self._body.append(kept)
            self._kept += len(kept)

    def _finish(self, keep_alive: bool) -> None:
        head = self._head
        assert head is not None
        self._response = Response(
            status=head.status,
            reason=head.reason,
            headers=head.headers,
            body=b"".join(self._body),
            body_length=self._body_length,
            keep_alive=keep_alive,
        )
        self._state = _DONE

    def _describe_incomplete(self) -> str:
        if self.received == 0:
            return "connection closed before any response byte"
        if self._state == _HEAD:
            return f"connection closed inside the response head ({self.received} bytes received)"
        return (
            f"connection closed inside the response body ({self._body_length} body bytes received)"
        )


def _find_blank_line(buffer: bytes) -> tuple[int, int]:
    """Offset of the blank line ending the head, and the size of the line end there."""
    crlf = buffer.find(b"\r\n\r\n")
    lf = buffer.find(b"\n\n", 0, crlf if crlf >= 0 else len(buffer))
    if lf >= 0:
        return lf, 2
    if crlf >= 0:
        return crlf, 4
    return -1, 0


def _is_hex(text: bytes) -> bool:
    return all(c in b"0123456789abcdefABCDEF" for c in text)


def _parse_head(block: bytes) -> _Head:
    """Status line and headers; decide the body framing and whether the connection persists."""
    lines = block.split(b"\n")
    status_line = lines[0].rstrip(b"\r")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ResponseError(f"bad status line {status_line[:80]!r}")
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise ResponseError(f"bad status code in {status_line[:80]!r}")
    status = int(code)
    reason = parts[2].decode("latin-1") if len(parts) == 3 else ""
    headers = tuple(_parse_header(line.rstrip(b"\r")) for line in lines[1:])
    http10 = parts[0] == b"HTTP/1.0"
    return _frame(status, reason, headers, http10)


def _parse_header(line: bytes) -> tuple[str, str]:
    name, sep, value = line.partition(b":")
    if not sep or not name or name != name.strip() or b" " in name or b"\t" in name:
        raise ResponseError(f"bad header line {line[:80]!r}")
    return name.decode("latin-1").lower(), value.strip().decode("latin-1")


def _frame(status: int, reason: str, headers: tuple[tuple[str, str], ...], http10: bool) -> _Head:
    lengths = {value for name, value in headers if name == "content-length"}
    codings = [value for name, value in headers if name == "transfer-encoding"]
    tokens = {
        token.strip().lower()
        for name, value in headers
        if name == "connection"
        for token in value.split(",")
    }
    keep_alive = "close" not in tokens and (not http10 or "keep-alive" in tokens)
    if status == 101:
        return _Head(status, reason, headers, False, _DONE, 0)
    if status in _NO_BODY_STATUSES:
        return _Head(status, reason, headers, keep_alive, _DONE, 0)
    if codings:
        if lengths:
            raise ResponseError("response has both Content-Length and Transfer-Encoding")
        last = codings[-1].split(",")[-1].strip().lower()
        if last == "chunked":
            return _Head(status, reason, headers, keep_alive, _CHUNK_SIZE, 0)
        return _Head(status, reason, headers, False, _CLOSE, 0)
    if lengths:
        length = _parse_length(lengths)
        return _Head(status, reason, headers, keep_alive, _LENGTH, length)
    return _Head(status, reason, headers, False, _CLOSE, 0)


def _parse_length(values: set[str]) -> int:
    """One Content-Length (repeats must agree, a comma list of equal values counts as one)."""
    found = {part.strip() for value in values for part in value.split(",")}
    if len(found) != 1:
        raise ResponseError(f"conflicting Content-Length values {sorted(found)}")
    text = found.pop()
    if not text.isascii() or not text.isdigit():
        raise ResponseError(f"bad Content-Length {text[:40]!r}")
    return int(text)
