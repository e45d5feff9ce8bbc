"""What the codec raises when bytes break HTTP/1.1's rules, one class per side.

The readers are shared, so every rule raises :class:`ProtocolError` with the status a server
answers for it; each side's parser hands it on as its own class (:class:`RequestError` from the
request reader, :class:`ResponseError` from the response reader), so that a caller catches what
its side means and the rule, its status and its words stay one.
"""

from __future__ import annotations

from twisted_logstash.errors import CodecError

__all__ = ["IncompleteResponse", "ProtocolError", "RequestError", "ResponseError"]


class ProtocolError(CodecError):
    """Bytes that are not acceptable HTTP/1.1; ``status`` is what a server answers for them
    (400, 413, 417, 431, 501, 505)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestError(ProtocolError):
    """Bytes from a client that are not an acceptable HTTP/1.1 request; ``status`` is the answer
    to give."""


class ResponseError(ProtocolError):
    """Bytes from a server that are not a well-formed HTTP/1.x response."""


class IncompleteResponse(ResponseError):
    """The connection ended before a full response arrived."""

    def __init__(self, reason: str) -> None:
        super().__init__(400, reason)
