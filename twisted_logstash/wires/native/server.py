"""The native input: the HTTP exchange the input skeleton (``transport.server``) plugs in.

What a real Logstash ``logstash`` output expects of its downstream (docs/wire-native.md): any path,
``POST`` (or ``PUT``), a gzip/deflate/snappy or plain ndjson body, ``200 ok`` once the events were
handed on, ``401``/``413``/``429``/``500`` otherwise. The body is inflated piece by piece as it
arrives, against the size limit, so that neither a large body nor a zip bomb is ever held whole
beyond ``max_content_length``.

Everything around the wire is the skeleton's: one request per connection is in progress at a time,
and while its events wait for the sink the transport is paused, so a fast or pipelining sender
cannot pile requests up in memory (answers therefore leave in request order); timeouts are deadlines
checked by one sweep per factory. What is here is HTTP only: the request parser's events turned into
batches and answers, credentials, content codings, ndjson, statuses.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.codecs import ndjson
from twisted_logstash.codecs.compression import Decompressor, normalize
from twisted_logstash.codecs.events import Decorations
from twisted_logstash.errors import (
    CodecError,
    ConfigurationError,
    SinkUnavailable,
    TooLargeError,
)
from twisted_logstash.interfaces import IInputConnection, IInputExchange
from twisted_logstash.transport.server import BODY, HEAD, IDLE, Close, InputFactory, InputProtocol
from twisted_logstash.wires.native.http import (
    CONTINUE,
    END,
    MAX_HEAD,
    NEED_DATA,
    RequestError,
    RequestParser,
    error_response,
    ok_response,
    wants_continue,
)

__all__ = ["HttpExchange", "HttpInputFactory", "HttpInputProtocol", "HttpInputSettings"]

log = Logger()

DEFAULT_MAX_CONTENT_LENGTH = 104857600
LINGER = 5.0
"""Seconds a closing connection keeps reading (and dropping) what the client still sends, so that
the client reads our answer instead of a reset."""

_METHODS = frozenset({b"POST", b"PUT"})
_ENCODINGS = {
    b"": "identity",
    b"identity": "identity",
    b"none": "identity",
    b"gzip": "gzip",
    b"x-gzip": "gzip",
    b"deflate": "deflate",
    b"snappy": "snappy",
}

MULTIPLE_CODINGS = (
    "more than one Content-Encoding: stacked content codings are not supported; "
    "send one of gzip, deflate, snappy, identity"
)
"""The ``400`` answer to a request with more than one ``Content-Encoding`` line, or a list of
codings in one. By RFC 9110 (8.4) such a list means codings applied one after the other, even
twice the same one (compressed twice); the input decodes exactly one, so it refuses rather than
read the last one and hand the sink bytes still compressed. The body is read and dropped; the
connection stays usable."""
_MULTIPLE = "multiple"

TLS_ON_PLAIN_PORT = (
    "TLS handshake received on a plain HTTP port (is ssl_enabled false on this input?)"
)
"""The ``400`` answer to a TLS client, so that it fails at once rather than at the header
timeout. The client reads no HTTP (it expects TLS): its handshake fails on these bytes."""

HttpInputProtocol = InputProtocol
"""One connection of the native input: the skeleton's protocol (the name stays for subclasses)."""


@dataclass(frozen=True, slots=True)
class HttpInputSettings:
    """What every connection of one native input shares."""

    max_head_size: int = MAX_HEAD
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    max_pending_requests: int = 200
    auth: bytes | None = None
    """The base64 ``user:password`` token a request's ``Authorization: Basic`` must carry."""

    def authorized(self, value: bytes | None) -> bool:
        if value is None:
            return False
        scheme, _, token = value.partition(b" ")
        good = hmac.compare_digest(token.strip(b" "), self.auth)
        return good and scheme.lower() == b"basic"


@implementer(IInputExchange)
class HttpExchange:
    """One connection of the native input without I/O: requests in, batches and answers out."""

    def __init__(self, connection: IInputConnection, settings: HttpInputSettings) -> None:
        self._connection = connection
        self._settings = settings
        self.parser = RequestParser(settings.max_head_size, settings.max_content_length)
        self.parts: list[bytes] = []
        """The body of the request being read (inflated), until it is complete."""
        self._head = None
        self._reject: tuple[int, str] | None = None  # answer for a request whose body is dropped
        self._decoder: Decompressor | None = None
        self._draining = False
        self._lost = False

    # -- IInputExchange ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.parser.feed(data)

    def receive(self, data: bytes) -> list:
        """Pull parser events until it needs bytes, or a request has a batch or closes."""
        parser = self.parser
        if data:
            connection = self._connection
            if connection.phase is IDLE:
                connection.set_phase(HEAD)
            parser.feed(data)
        results: list = []
        while True:
            try:
                event = parser.next_event()
            except RequestError as error:
                results.append(self._refuse(error.status, error.reason))
                return results
            if type(event) is bytes:
                self._body(event)
                continue
            if event is NEED_DATA:
                return results
            result = self._end() if event is END else self._begin(event)
            if result is not None:
                results.append(result)
                if type(result) is not bytes:
                    return results  # a batch for the sink, or a close

    def ack(self, events: list) -> bytes | Close:
        """Write ``200 ok`` and go on with the next request (or close)."""
        if self._lost:
            return b""
        head = self._head
        close = not head.keep_alive or self._draining
        return self._written(ok_response(close, head.version == b"HTTP/1.0"), close)

    def refuse(self, events: list, reason: Failure) -> bytes | Close:
        if reason.check(SinkUnavailable):
            log.info(
                "the sink cannot take a batch now ({why}); answering 503",
                why=str(reason.value),
            )
            if self._lost:
                return b""
            return self._answer_error(503, "the events cannot be taken now; retry later")
        log.failure("the sink failed to take a batch; answering 500", reason)
        if self._lost:
            return b""
        return self._answer_error(500, "the events could not be handed on; retry")

    def keepalive(self) -> bytes:
        return b""  # HTTP has none: the client waits for the answer

    def timed_out(self, phase: str, seconds: float | None) -> bool:
        if phase is IDLE:
            log.debug("closing idle connection from {peer}", peer=self._connection.peer())
            return False
        log.info(
            "dropping connection from {peer}: no complete request {phase} in time",
            peer=self._connection.peer(),
            phase=phase,
        )
        return True

    def tls_hello(self) -> Close:
        log.warn(
            "{peer} sent a TLS handshake to this plain HTTP port (is ssl_enabled false on this"
            " input but not on the output?); answered 400 and closing",
            peer=self._connection.peer(),
        )
        return Close(error_response(400, TLS_ON_PLAIN_PORT, True))

    def drain(self) -> bool:
        """A new request gets ``503``, the one under way ``Connection: close``."""
        self._draining = True
        return not self.parser.in_message

    def lost(self) -> None:
        self._lost = True
        self._decoder = None
        self.parts = []

    # -- the request cycle ------------------------------------------------------------------------

    def _begin(self, head) -> bytes | Close | None:
        self._head = head
        self._connection.set_phase(BODY)
        if self._draining:
            return self._refuse(503, "the input is shutting down")
        settings = self._settings
        if head.method not in _METHODS:
            status, text = 405, "only POST and PUT are accepted"
            if head.method == b"HEAD":  # its answer has no body: close rather than confuse
                return self._refuse(status, text)
        elif settings.auth is not None and not settings.authorized(head.get(b"authorization")):
            status, text = 401, "missing or wrong credentials"
        elif self._connection.input.pending >= settings.max_pending_requests:
            status, text = 429, "too many requests waiting; retry later"
        else:
            encoding = _encoding(head.values(b"content-encoding"))
            if encoding is _MULTIPLE:
                status, text = 400, MULTIPLE_CODINGS
            elif encoding is None:
                status, text = 415, "unsupported Content-Encoding"
            else:
                if encoding != "identity":
                    self._decoder = Decompressor(encoding, settings.max_content_length)
                if wants_continue(head):
                    return CONTINUE  # the client waits for it to send the body
                return None
        if head.expect_continue:
            return self._refuse(status, text)  # the client waits: answer, do not read its body
        self._reject = (status, text)  # read and drop the body, answer, keep the connection
        return None

    def _body(self, data: bytes) -> None:
        if self._reject is not None:
            return
        decoder = self._decoder
        if decoder is None:
            self.parts.append(data)
            return
        try:
            data = decoder.feed(data)
        except Exception as error:
            self._decoding_failed(error)
            return
        if data:
            self.parts.append(data)

    def _end(self) -> list | bytes | Close:
        reject = self._reject
        if reject is None and self._decoder is not None:
            try:
                tail = self._decoder.finish()
            except Exception as error:
                self._decoding_failed(error)
                reject = self._reject
            else:
                if tail:
                    self.parts.append(tail)
        self._decoder = None
        if reject is not None:
            self._reject = None
            self.parts = []
            return self._answer_error(*reject)
        parts = self.parts
        self.parts = []
        if not parts:
            return self.ack(parts)
        events = ndjson.decode(parts[0] if len(parts) == 1 else b"".join(parts))
        if not events:
            return self.ack(events)
        return events

    # -- answers ----------------------------------------------------------------------------------

    def _answer_error(self, status: int, text: str) -> bytes | Close:
        """An error answer after a complete request: the connection stays usable."""
        head = self._head
        close = not head.keep_alive or self._draining
        emit = log.debug if status == 429 else log.info
        emit(
            "answered {status} to {method} {target} from {peer}: {text}",
            status=status,
            method=head.method,
            target=head.target,
            peer=self._connection.peer(),
            text=text,
        )
        http10 = head.version == b"HTTP/1.0"
        return self._written(error_response(status, text, close, http10), close)

    def _written(self, data: bytes, close: bool) -> bytes | Close:
        self._head = None
        if close:
            return Close(data)
        self._connection.set_phase(HEAD if self.parser.buffered else IDLE)
        return data

    def _refuse(self, status: int, text: str) -> Close:
        """Answer and close: the rest of the stream is not going to be read."""
        head = self._head
        log.info(
            "answered {status} and closing the connection from {peer}: {text}",
            status=status,
            peer=self._connection.peer(),
            text=text,
            method=None if head is None else head.method,
        )
        self._decoder = None
        self.parts = []
        return Close(error_response(status, text, True))

    def _decoding_failed(self, error: Exception) -> None:
        self._decoder = None
        self.parts = []
        if isinstance(error, TooLargeError):
            self._reject = (413, f"body inflates to more than {self._settings.max_content_length}")
        elif isinstance(error, CodecError):
            self._reject = (400, f"body does not decompress: {error}")
        else:
            log.failure("decompressor failed", Failure(error))
            self._reject = (400, "body does not decompress")


def _encoding(values: list[bytes]) -> str | None:
    """The content coding named by the ``Content-Encoding`` lines, None if unsupported,
    ``_MULTIPLE`` if they name more than one (see :data:`MULTIPLE_CODINGS`)."""
    if not values:
        return "identity"
    if len(values) > 1 or b"," in values[0]:
        return _MULTIPLE
    value = values[0]
    found = _ENCODINGS.get(value.lower())
    if found is not None:
        return found
    try:
        return normalize(value.decode("latin-1").strip())
    except (ConfigurationError, ValueError):
        return None


class HttpInputFactory(InputFactory):
    """The native input: accepts Logstash ``logstash`` output requests, hands events to ``sink``.

    ``sink`` provides ``IEventSink``; a request is answered ``200`` only after the Deferred of
    ``sink.deliver`` fired, ``500`` if it failed. Timeouts are in seconds (None disables one):
    ``header_timeout`` from a request's first byte to the end of its head, ``body_timeout`` from
    there to the end of its body, ``idle_timeout`` for a connection between requests.
    """

    def __init__(
        self,
        sink,
        reactor=None,
        *,
        username: str | None = None,
        password: str | None = None,
        decorations: Decorations | None = None,
        max_pending_requests: int = 200,
        max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH,
        max_connections: int = 1000,
        header_timeout: float | None = 30.0,
        body_timeout: float | None = 60.0,
        idle_timeout: float | None = 60.0,
        max_head_size: int = MAX_HEAD,
    ) -> None:
        if (username is None) != (password is None):
            raise ConfigurationError("username and password must be given together")
        auth = None
        if username is not None:
            auth = base64.b64encode(f"{username}:{password}".encode())
        self.settings = HttpInputSettings(
            max_head_size=max_head_size,
            max_content_length=max_content_length,
            max_pending_requests=max_pending_requests,
            auth=auth,
        )
        self.max_pending_requests = max_pending_requests
        self.max_content_length = max_content_length
        self.max_head_size = max_head_size
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout
        super().__init__(
            sink,
            reactor,
            exchange=self.exchange_for,
            decorations=decorations,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            linger=LINGER,
            busy_answer=error_response(503, "too many connections; retry later", True),
            send_at_once=True,
        )

    def exchange_for(self, connection: IInputConnection) -> HttpExchange:
        """The exchange of one new connection."""
        return HttpExchange(connection, self.settings)
