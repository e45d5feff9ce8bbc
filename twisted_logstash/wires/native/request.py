"""Sans-IO encoding of the native wire's request: one POST of a compressed ndjson batch.

The bytes, for host ``10.0.0.5:9800``, gzip, with a username (``\\r\\n`` after every line)::

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
"""

from __future__ import annotations

import base64

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.transport.hosts import Host

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
