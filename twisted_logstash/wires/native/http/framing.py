"""How a message's body is framed: ``Content-Length``, chunked, or neither.

One rule for both sides, because every leniency here is a smuggling vector (RFC 9112 6.1, 6.3):
``Content-Length`` together with ``Transfer-Encoding``, ``Content-Length`` values that disagree or
are not plain digits, a ``Transfer-Encoding`` other than a single ``chunked`` (an unknown coding
is 501, which we cannot decode), and ``Transfer-Encoding`` in an HTTP/1.0 message are all refused.
"""

from __future__ import annotations

from twisted_logstash.wires.native.http.errors import ProtocolError

__all__ = ["CHUNKED", "UNDECLARED", "body_length"]

CHUNKED = -1
"""The body is chunked."""
UNDECLARED = -2
"""Neither header: a request has no body, a response's body runs until the close."""


def body_length(
    lengths: list[bytes], codings: list[bytes], http10: bool, max_body: int | None, what: str
) -> int:
    """The body's declared size, :data:`CHUNKED` or :data:`UNDECLARED`, from the values of the
    ``Content-Length`` and ``Transfer-Encoding`` fields; ``max_body`` refuses a larger size (413)
    before any of the body is read."""
    if codings:
        if lengths:
            raise ProtocolError(400, "both Content-Length and Transfer-Encoding")
        if http10:
            raise ProtocolError(400, f"Transfer-Encoding in an HTTP/1.0 {what}")
        tokens = [token.strip(b" \t").lower() for value in codings for token in value.split(b",")]
        tokens = [token for token in tokens if token]
        for token in tokens:
            if token != b"chunked":
                raise ProtocolError(501, f"transfer coding {token[:40]!r} is not supported")
        if len(tokens) != 1:
            raise ProtocolError(400, "Transfer-Encoding must be chunked, once")
        return CHUNKED
    if not lengths:
        return UNDECLARED
    if len(lengths) == 1 and lengths[0].isdigit() and len(lengths[0]) <= 18:
        length = int(lengths[0])  # the common case, checked against the limit below
        if max_body is None or length <= max_body:
            return length
    return _content_length(lengths, max_body)


def _content_length(values: list[bytes], max_body: int | None) -> int:
    """One length; repeats (or a comma list) must all agree."""
    found: set[int] = set()
    for value in values:
        for part in value.split(b","):
            part = part.strip(b" \t")
            if not part or not part.isdigit():
                raise ProtocolError(400, f"bad Content-Length {value[:40]!r}")
            if len(part) > 18:
                if max_body is not None:
                    raise ProtocolError(413, "declared body larger than the limit")
                raise ProtocolError(400, f"Content-Length {part[:40]!r} is not credible")
            found.add(int(part))
    if len(found) != 1:
        raise ProtocolError(400, "conflicting Content-Length values")
    length = found.pop()
    if max_body is not None and length > max_body:
        raise ProtocolError(
            413, f"declared body of {length} bytes is larger than the limit of {max_body} bytes"
        )
    return length
