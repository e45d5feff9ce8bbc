"""The transmitter's view of one response: the events of a :class:`ResponseReader` gathered into
the one :class:`Response` a batch is judged by.

The client sends one request at a time on a connection, so a parser handles exactly one response
(after any 1xx interim ones). Only the start of the body is kept, enough to explain an error,
however long the body is.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted_logstash.wires.native.http.errors import IncompleteResponse
from twisted_logstash.wires.native.http.heads import ResponseHead
from twisted_logstash.wires.native.http.readers import END, MAX_HEAD, NEED_DATA, ResponseReader

__all__ = ["KEEP_BODY", "Response", "ResponseParser"]

KEEP_BODY = 4096


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


class ResponseParser:
    """One HTTP/1.x response, fed in pieces.

    `feed(data)` returns the `Response` once it is complete, else None; `connection_lost()` returns
    it when the body ran until the close, else raises `IncompleteResponse`. Bytes after the
    response are kept in `leftover` (a server that sends them is not to be trusted with reuse).
    Malformed bytes raise `ResponseError`.
    """

    def __init__(self, max_head: int = MAX_HEAD, keep_body: int = KEEP_BODY) -> None:
        self._reader = ResponseReader(max_head)
        self._keep_body = keep_body
        self._head: ResponseHead | None = None
        self._body: list[bytes] = []
        self._kept = 0
        self._body_length = 0
        self._response: Response | None = None
        self.received = 0
        """How many bytes were fed, interim responses included."""
        self.leftover = b""

    @property
    def done(self) -> bool:
        return self._response is not None

    def feed(self, data: bytes) -> Response | None:
        """Consume `data`; return the response when it completed with this call."""
        self.received += len(data)
        if self._response is not None:
            self.leftover += data
            return None
        self._reader.feed(data)
        return self._pull()

    def connection_lost(self) -> Response:
        """The server closed: the response if it is complete now, else IncompleteResponse."""
        if self._response is None:
            self._reader.end_of_stream()
            if self._pull() is None:
                raise IncompleteResponse(self._describe_incomplete())
        assert self._response is not None
        return self._response

    def _pull(self) -> Response | None:
        reader = self._reader
        while True:
            event = reader.next_event()
            if type(event) is bytes:
                self._body_length += len(event)
                room = self._keep_body - self._kept
                if room > 0:
                    kept = event[:room]
                    self._body.append(kept)
                    self._kept += len(kept)
            elif event is NEED_DATA:
                return None
            elif event is END:
                if self._head is not None:
                    self.leftover = reader.take_buffered()
                    return self._finish(self._head)
            elif not event.interim:  # an interim head (100 Continue, 102, 103) is passed over
                self._head = event

    def _finish(self, head: ResponseHead) -> Response:
        self._response = Response(
            status=head.status,
            reason=head.reason.decode("latin-1"),
            headers=tuple(
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers
            ),
            body=b"".join(self._body),
            body_length=self._body_length,
            keep_alive=head.keep_alive,
        )
        return self._response

    def _describe_incomplete(self) -> str:
        if self.received == 0:
            return "connection closed before any response byte"
        if self._head is None:
            return f"connection closed inside the response head ({self.received} bytes received)"
        return (
            f"connection closed inside the response body ({self._body_length} body bytes received)"
        )
