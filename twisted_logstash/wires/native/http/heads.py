"""The head readers: a request line or a status line, the fields, and what they decide.

Both sides share the line rule and the field syntax (:mod:`.lines`), the body framing
(:mod:`.framing`) and the connection decisions (:mod:`.connection`); only the start line, the
``Host`` and ``Expect`` of a request, and the statuses without a body differ. Everything stays
``bytes`` (names lower-cased), so that a request costs no decoding.
"""

from __future__ import annotations

from twisted_logstash.wires.native.http import connection
from twisted_logstash.wires.native.http.errors import ProtocolError
from twisted_logstash.wires.native.http.framing import CHUNKED, UNDECLARED, body_length
from twisted_logstash.wires.native.http.lines import TCHAR, VISIBLE, fields, split_head

__all__ = ["RequestHead", "ResponseHead", "is_http10", "read_request_head", "read_response_head"]

_REQUEST_FIELDS = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"expect", b"host"}
)
_RESPONSE_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"connection"})


class RequestHead:
    """A request line and its headers, and what they decided about the body and the connection."""

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

    def values(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lower case), in the order received."""
        return [value for key, value in self.headers if key == name]

    def __repr__(self) -> str:
        return f"<RequestHead {self.method!r} {self.target!r} {self.version!r}>"


class ResponseHead:
    """A status line and its headers, and what they decided about the body and the connection."""

    __slots__ = (
        "chunked",
        "content_length",
        "headers",
        "keep_alive",
        "reason",
        "status",
        "version",
    )

    def __init__(
        self,
        status: int,
        reason: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        content_length: int | None,
        chunked: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        """``(lower-cased name, value)`` in the order received, repeats kept."""
        self.keep_alive = keep_alive
        """False when the connection must not carry another request."""
        self.content_length = content_length
        """The declared body size; None for a chunked body or one that runs until the close."""
        self.chunked = chunked

    @property
    def interim(self) -> bool:
        """A 1xx (other than 101): the final response to the same request follows."""
        return 100 <= self.status < 200 and self.status != 101

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status} {self.reason!r} {self.version!r}>"


def is_http10(version: bytes) -> bool:
    """Whether ``version`` is HTTP/1.0 (else HTTP/1.1); any other version is refused."""
    if version == b"HTTP/1.1":
        return False
    if version == b"HTTP/1.0":
        return True
    if (
        len(version) == 8
        and version[:5] == b"HTTP/"
        and version[5:6].isdigit()
        and version[6:7] == b"."
        and version[7:8].isdigit()
    ):
        raise ProtocolError(505, f"HTTP version {version.decode('ascii')} is not supported")
    raise ProtocolError(400, f"bad HTTP version {version[:40]!r}")


def read_request_head(block: bytes, max_body: int | None) -> RequestHead:
    """The request line and fields of a head without its blank line."""
    lines = split_head(block, "request")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise ProtocolError(400, f"bad request line {lines[0][:80]!r}")
    method, target, version = parts
    if not method or method.translate(None, TCHAR):
        raise ProtocolError(400, f"bad method {method[:40]!r}")
    if not target or target.translate(None, VISIBLE):
        raise ProtocolError(400, f"bad request target {target[:80]!r}")
    http10 = version != b"HTTP/1.1" and is_http10(version)  # the common case without a call
    headers, framing = fields(lines, _REQUEST_FIELDS)
    lengths: list[bytes] = []
    codings: list[bytes] = []
    connections: list[bytes] = []
    expect_continue = False
    hosts = 0
    for name, value in framing:
        if name == b"content-length":
            lengths.append(value)
        elif name == b"connection":
            connections.append(value)
        elif name == b"host":
            hosts += 1
        elif name == b"transfer-encoding":
            codings.append(value)
        else:
            expect_continue = connection.expects_continue(http10, value)
    if hosts > 1 or (hosts == 0 and not http10):
        raise ProtocolError(400, "an HTTP/1.1 request needs exactly one Host header")
    length = body_length(lengths, codings, http10, max_body, "request")
    keep_alive = connection.keep_alive(http10, connections) if connections else not http10
    chunked = length == CHUNKED
    size = None if chunked else 0 if length == UNDECLARED else length
    return RequestHead(method, target, version, headers, keep_alive, expect_continue, size, chunked)


def read_response_head(block: bytes, max_body: int | None = None) -> ResponseHead:
    """The status line and fields of a head without its blank line.

    1xx, 204 and 304 have no body whatever their fields say (RFC 9112 6.3); after a 101 the
    connection speaks another protocol; a body neither chunked nor of declared length runs until
    the close, which then cannot carry another request.
    """
    lines = split_head(block, "response")
    line = lines[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2:
        raise ProtocolError(400, f"bad status line {line[:80]!r}")
    version, code = parts[0], parts[1]
    http10 = is_http10(version)
    if len(code) != 3 or not code.isdigit() or code[:1] == b"0":
        raise ProtocolError(400, f"bad status code in {line[:80]!r}")
    status = int(code)
    reason = parts[2] if len(parts) == 3 else b""
    headers, framing = fields(lines, _RESPONSE_FIELDS)
    lengths: list[bytes] = []
    codings: list[bytes] = []
    connections: list[bytes] = []
    for name, value in framing:
        if name == b"content-length":
            lengths.append(value)
        elif name == b"connection":
            connections.append(value)
        else:
            codings.append(value)
    length = body_length(lengths, codings, http10, max_body, "response")
    keep_alive = connection.keep_alive(http10, connections)
    if status < 200 or status in (204, 304):
        if status == 101:
            keep_alive = False  # the connection speaks another protocol now
        return ResponseHead(status, reason, version, headers, keep_alive, 0, False)
    if length == CHUNKED:
        return ResponseHead(status, reason, version, headers, keep_alive, None, True)
    if length == UNDECLARED:
        return ResponseHead(status, reason, version, headers, False, None, False)
    return ResponseHead(status, reason, version, headers, keep_alive, length, False)
