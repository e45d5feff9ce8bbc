"""The bytes each side writes: the transmitter's request, and the input's answers.

The request, for host ``10.0.0.5:9800``, gzip, with a username (``\\r\\n`` after every line)::

    POST / HTTP/1.1
    Host: 10.0.0.5:9800
    Content-Type: application/x-ndjson
    Content-Encoding: gzip
    Authorization: Basic dXNlcjpwYXNz
    Content-Length: 1234

    <1234 bytes of gzip>

This is the header set Logstash's ``logstash`` output sends (logstash-integration-logstash:
``Content-Type: application/x-ndjson`` and ``Content-Encoding: gzip`` set by the plugin, the
request line, ``Host`` with the port and ``Content-Length`` added by its Apache HttpClient, and a
preemptive ``Authorization: Basic`` because its http_client mixin configures ``eager`` auth).
What that client adds and we leave out on purpose:
- ``Connection: Keep-Alive``: HTTP/1.1 connections persist unless one side says ``close``.
- ``Accept-Encoding: gzip,deflate``: we do not decompress response bodies, so we must not invite
  compressed ones.
- ``User-Agent: Manticore ...``: not ours to claim; receivers do not look at it.
The body differs in form, not in meaning: Logstash's output serializes the batch as ONE JSON array
(no newline); we send ndjson, one object per line, each ending in ``\\n``. The receiving
``logstash`` input decodes with ``json_lines``, which yields one event per array element or per
line alike, and our ndjson keeps each line small.
``Content-Encoding`` names the body's compression (``gzip``, ``deflate`` or ``snappy``) and is
absent for ``identity``. IPv6 hosts are bracketed in ``Host`` (``[::1]:9800``). Credentials are
encoded as UTF-8 before base64 (RFC 7617).

Everything up to ``Content-Length`` is the same for every request to one host, so it is built once
per host; per request only the length line is formatted.

The input's answers are few and fixed, so they are built once: ``200 ok`` in the three forms the
connection decides (:func:`ok_response`), ``100 Continue``, and a short ``text/plain`` error
(:func:`error_response`).
"""

from __future__ import annotations

import base64

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.native.http.connection import connection_header

__all__ = [
    "CONTENT_TYPE",
    "CONTINUE",
    "OK",
    "OK_CLOSE",
    "OK_KEEP_ALIVE",
    "REASONS",
    "RequestEncoder",
    "basic_authorization",
    "error_response",
    "ok_response",
]

CONTENT_TYPE = b"application/x-ndjson"


def basic_authorization(username: str, password: str) -> bytes:
    """The value of a Basic ``Authorization`` header (RFC 7617, UTF-8 credentials)."""
    if ":" in username:
        raise ConfigurationError("username: a Basic auth user name cannot contain ':'")
    return b"Basic " + base64.b64encode(f"{username}:{password}".encode())


class RequestEncoder:
    """Builds the request bytes for one encoding and one set of credentials, any host.

    `head(host, length)` returns the request head; the body follows it unchanged, so a transport
    can take both with one ``writeSequence((head, body))`` and no copy of the body is made here.
    """

    __slots__ = ("_heads", "_middle")

    def __init__(
        self,
        encoding: str = "gzip",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        middle = b"Content-Type: " + CONTENT_TYPE + b"\r\n"
        if encoding != "identity":
            middle += b"Content-Encoding: " + encoding.encode("ascii") + b"\r\n"
        if username is not None:
            if password is None:
                raise ConfigurationError("username is set but password is not")
            middle += b"Authorization: " + basic_authorization(username, password) + b"\r\n"
        elif password is not None:
            raise ConfigurationError("password is set but username is not")
        self._middle = middle
        self._heads: dict[Host, bytes] = {}

    def prefix(self, host: Host) -> bytes:
        """Every header line before Content-Length, built once per host."""
        prefix = self._heads.get(host)
        if prefix is None:
            authority = str(host).encode("ascii")
            prefix = b"POST / HTTP/1.1\r\nHost: " + authority + b"\r\n" + self._middle
            self._heads[host] = prefix
        return prefix

    def head(self, host: Host, length: int) -> bytes:
        """The whole request head for a body of `length` bytes, blank line included."""
        return self.prefix(host) + b"Content-Length: %d\r\n\r\n" % length


# -- the input's answers -----------------------------------------------------------------------

_OK_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nAccept: application/x-ndjson\r\n"
    b"Content-Length: 2\r\n"
)
OK = _OK_HEAD + connection_header(False, False) + b"\r\nok"
"""``200 ok`` to an HTTP/1.1 request, the connection kept."""
OK_KEEP_ALIVE = _OK_HEAD + connection_header(False, True) + b"\r\nok"
"""``200 ok`` to an HTTP/1.0 request, the connection kept (it says so, or the client closes)."""
OK_CLOSE = _OK_HEAD + connection_header(True, False) + b"\r\nok"
"""``200 ok``, then the server closes."""
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    417: "Expectation Failed",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
"""The reason phrase of each status the input answers (``Error`` for any other)."""
_EXTRA_HEADERS = {
    401: b'WWW-Authenticate: Basic realm="Logstash HTTP Input"\r\n',
    405: b"Allow: POST, PUT\r\n",
}


def ok_response(close: bool, http10: bool) -> bytes:
    """``200 ok``; ``close`` when the server closes after it, ``http10`` for an HTTP/1.0 request."""
    if close:
        return OK_CLOSE
    return OK_KEEP_ALIVE if http10 else OK


def error_response(status: int, text: str, close: bool, keep_alive_header: bool = False) -> bytes:
    """A short ``text/plain`` answer; ``close`` adds ``Connection: close``, else
    ``keep_alive_header`` (for an HTTP/1.0 request) adds ``Connection: keep-alive``."""
    body = text.encode("utf-8", "replace") + b"\n"
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
        % (
            status,
            REASONS.get(status, "Error").encode("ascii"),
            len(body),
        )
    )
    head += _EXTRA_HEADERS.get(status, b"")
    head += connection_header(close, keep_alive_header)
    return head + b"\r\n" + body
