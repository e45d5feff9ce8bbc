"""Whether a connection carries another message, and when a client waits for ``100 Continue``.

The decisions both sides take from ``Connection``, ``Expect`` and the HTTP version, in one place:
HTTP/1.1 persists unless either side says ``close``; HTTP/1.0 closes unless it says
``keep-alive`` (RFC 9112 9.3). A ``100-continue`` expectation in an HTTP/1.0 request is ignored
(RFC 9110 10.1.1), any other expectation is refused (417).
"""

from __future__ import annotations

from twisted_logstash.wires.native.http.errors import ProtocolError

__all__ = ["connection_header", "expects_continue", "keep_alive", "wants_continue"]


def keep_alive(http10: bool, values: list[bytes]) -> bool:
    """Whether the connection persists after this message, from its ``Connection`` values."""
    keep = not http10
    for value in values:
        value = value.lower()
        if value == b"keep-alive":  # what most clients send
            keep = True
            continue
        for token in value.split(b","):
            token = token.strip(b" \t")
            if token == b"close":
                return False
            if token == b"keep-alive":
                keep = True
    return keep


def expects_continue(http10: bool, value: bytes) -> bool:
    """Whether the client waits for ``100 Continue`` before it sends the body, from one value of
    the request's ``Expect``."""
    if value.lower() != b"100-continue":
        raise ProtocolError(417, f"unsupported expectation {value[:40]!r}")
    return not http10


def wants_continue(head) -> bool:
    """Whether a server that accepts the request answers ``100 Continue`` now: the client waits
    for it and a body is framed (an empty body is not waited for)."""
    return head.expect_continue and (head.chunked or bool(head.content_length))


def connection_header(close: bool, http10: bool) -> bytes:
    """The ``Connection`` line of an answer: ``close`` when the server closes after it,
    ``keep-alive`` to an HTTP/1.0 client it keeps (which would close otherwise), else none."""
    if close:
        return b"Connection: close\r\n"
    if http10:
        return b"Connection: keep-alive\r\n"
    return b""
