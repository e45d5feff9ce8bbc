"""The native input: the HTTP exchange the input skeleton (``transport.server``) plugs in.

What a real Logstash ``logstash`` output expects of its downstream (docs/wire-native.md): any path,
``POST`` (or ``PUT``), a gzip/deflate/snappy or plain ndjson body, ``200 ok`` once the events were
handed on, ``401``/``413``/``429``/``500`` otherwise.

A body is inflated and decoded as it arrives, a step (:data:`STEP`) at a time, so that it is never
held whole: what a connection holds is accounted in bytes (``held``) against the input's budget
(``max_held_bytes``, the skeleton's): bytes received and not parsed, compressed bytes not inflated
yet, inflated bytes not decoded yet, and decoded events, estimated (:func:`event_bytes`) until the
sink settled them. A body whose events pass ``max_batch_bytes`` goes to the sink in several
batches, one at a time, and is answered once the last one settled: ``200`` if every one was taken.
When the input is over its budget the connection stops (reads nothing, inflates nothing) until
there is room, and a new request is answered ``429``. A request whose batch waited on the sink for
``sink_timeout`` seconds is answered ``429`` and its connection closed, so that its sender moves
on; the sink may still take those events later (logged): the sender sends them again, so they may
arrive twice (at least once, never lost silently).

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
from twisted_logstash.transport.server import (
    BODY,
    DEFAULT_MAX_HELD_BYTES,
    HEAD,
    IDLE,
    Close,
    InputFactory,
    InputProtocol,
)
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
DEFAULT_SINK_TIMEOUT = 10.0
"""Seconds a request's events may wait on the sink before it is answered 429 (as Logstash's
``http`` input does after 10 s)."""
STEP = 64 * 1024
"""Bytes inflated at most at a time; inflated bytes are decoded once this many are held. Small,
because events cost many times their JSON (``{}`` lines: 24 times, :func:`event_bytes`), and a
usual request (125 events of a few hundred bytes) is under it: decoded once, at its end."""
EVENT_OVERHEAD = 200
BYTE_FACTOR = 8


def event_bytes(json_bytes: int, events: int) -> int:
    """The memory decoded events are counted for: :data:`BYTE_FACTOR` bytes per byte of JSON and
    :data:`EVENT_OVERHEAD` per event, the smallest event (``{}``) included.

    Measured with CPython 3.11 and orjson (tracemalloc): a log event of 134 bytes of JSON takes
    602 bytes (estimated 1,272), ``{}`` 72 per 3 bytes (224), ``{"a":1}`` 192 per 8 bytes (264).
    Lines made of small nested containers take more per byte than estimated: 24 for ``[{},{}..]``
    inside an event, up to 37 for deeply nested one-key objects (4.6 times the estimate); a
    budget therefore holds up to that factor more memory against such bodies.
    """
    return json_bytes * BYTE_FACTOR + events * EVENT_OVERHEAD


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
    "TLS handshake received on a plain HTTP port (is TLS off on this input while the sender"
    " uses it?)"
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
    max_batch_bytes: int = 16 * 1024 * 1024
    """Events of one body handed to the sink at once at most (as :func:`event_bytes` counts)."""
    sink_timeout: float | None = DEFAULT_SINK_TIMEOUT
    auth: bytes | None = None
    """The base64 ``user:password`` token a request's ``Authorization: Basic`` must carry."""

    def authorized(self, value: bytes | None) -> bool:
        if value is None:
            return False
        scheme, _, token = value.partition(b" ")
        good = hmac.compare_digest(token.strip(b" "), self.auth)
        return good and scheme.lower() == b"basic"


_WAIT = object()  # a step stopped: the input is over its budget


@implementer(IInputExchange)
class HttpExchange:
    """One connection of the native input without I/O: requests in, batches and answers out."""

    def __init__(self, connection: IInputConnection, settings: HttpInputSettings) -> None:
        self._connection = connection
        self._settings = settings
        self.parser = RequestParser(settings.max_head_size, settings.max_content_length)
        self.parts: list[bytes] = []
        """Inflated bytes of the request being read, not decoded yet."""
        self._inflated = 0  # their length
        self._searched = 0  # how many of the parts are known to hold no newline
        self._events: list = []  # decoded, not handed to the sink yet
        self._cost = 0  # their event_bytes
        self._with_sink = 0  # the event_bytes of the batch the sink holds
        self._partial = False  # that batch is not the request's last
        self._late = False  # the request was answered 429 while its batch was with the sink
        self._backlog = False  # a step stopped (a batch, or no room): receive goes on with it
        self._ended = False  # the body is complete; its end waits for the backlog
        self._head = None
        self._reject: tuple[int, str] | None = None  # answer for a request whose body is dropped
        self._decoder: Decompressor | None = None
        self._draining = False
        self._lost = False

    # -- IInputExchange ---------------------------------------------------------------------------

    def held(self) -> int:
        """Bytes received and not parsed, kept compressed, inflated and not decoded, and decoded
        events (estimated) until the sink settled them."""
        held = self.parser.buffered + self._inflated + self._cost + self._with_sink
        decoder = self._decoder
        return held if decoder is None else held + decoder.held

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
        elif not self._backlog and not parser.in_message:
            return []  # asked to go on (a batch settled) with nothing received: nothing to do
        results: list = []
        if self._backlog:
            result = self._step()
            if result is None and self._ended:
                result = self._end()
            if result is _WAIT:
                return results
            if result is not None:
                results.append(result)
                if type(result) is not bytes:
                    return results
        while True:
            try:
                event = parser.next_event()
            except RequestError as error:
                results.append(self._refuse(error.status, error.reason))
                return results
            if type(event) is bytes:
                result = self._body(event)
                if result is None:
                    continue
                if result is not _WAIT:
                    results.append(result)
                return results
            if event is NEED_DATA:
                return results
            result = self._end() if event is END else self._begin(event)
            if result is _WAIT:
                return results
            if result is not None:
                results.append(result)
                if type(result) is not bytes:
                    return results  # a batch for the sink, or a close

    def ack(self, events: list) -> bytes | Close:
        """Write ``200 ok`` and go on with the next request (or close); after a part of a body,
        go on reading it."""
        self._with_sink = 0
        if self._late:
            self._late = False
            log.info(
                "the sink took {count} events from {peer} after they were answered 429; their"
                " sender sends them again, so they may arrive twice",
                count=len(events),
                peer=self._connection.peer(),
            )
            return b""
        if self._lost:
            return b""
        if self._partial:
            self._partial = False
            self._connection.set_phase(BODY)
            return b""
        head = self._head
        close = not head.keep_alive or self._draining
        return self._written(ok_response(close, head.version == b"HTTP/1.0"), close)

    def refuse(self, events: list, reason: Failure) -> bytes | Close:
        self._with_sink = 0
        partial, self._partial = self._partial, False
        late, self._late = self._late, False
        if reason.check(SinkUnavailable):
            log.info(
                "the sink cannot take a batch now ({why}); answering 503",
                why=str(reason.value),
            )
            status, text = 503, "the events cannot be taken now; retry later"
        else:
            log.failure("the sink failed to take a batch; answering 500", reason)
            status, text = 500, "the events could not be handed on; retry"
        if self._lost or late:
            return b""
        if partial:  # the rest of the body is read and dropped, then answered
            self._drop()
            self._reject = (status, text)
            self._connection.set_phase(BODY)
            return b""
        return self._answer_error(status, text)

    def keepalive(self) -> Close:
        """The batch waited ``sink_timeout`` on the sink: answer 429 now, and close."""
        self._late = True
        log.warn(
            "the sink has held a batch from {peer} for {seconds} s; answered 429 so that its"
            " sender moves on",
            peer=self._connection.peer(),
            seconds=self._settings.sink_timeout,
        )
        return Close(error_response(429, "the events waited too long for the sink; retry", True))

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
            "{peer} sent a TLS handshake to this plain HTTP port (is TLS off on this input but"
            " not on the sender?); answered 400 and closing",
            peer=self._connection.peer(),
        )
        return Close(error_response(400, TLS_ON_PLAIN_PORT, True))

    def drain(self) -> bool:
        """A new request gets ``503``, the one under way ``Connection: close``."""
        self._draining = True
        return not self.parser.in_message and self._head is None

    def lost(self) -> None:
        self._lost = True
        self._drop()
        self._backlog = False

    # -- the request cycle ------------------------------------------------------------------------

    def _begin(self, head) -> bytes | Close | None:
        self._head = head
        connection = self._connection
        connection.set_phase(BODY)
        if self._draining:
            return self._refuse(503, "the input is shutting down")
        settings = self._settings
        the_input = connection.input
        if head.method not in _METHODS:
            status, text = 405, "only POST and PUT are accepted"
            if head.method == b"HEAD":  # its answer has no body: close rather than confuse
                return self._refuse(status, text)
        elif settings.auth is not None and not settings.authorized(head.get(b"authorization")):
            status, text = 401, "missing or wrong credentials"
        elif the_input.pending >= settings.max_pending_requests:
            status, text = 429, "too many requests waiting; retry later"
        elif (
            the_input.held > the_input.max_held_bytes
            and the_input.held - connection.held > the_input.max_held_bytes  # others hold it
        ):
            status, text = 429, "the input holds too much; retry later"
        else:
            encoding = _encoding(head.headers)
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

    def _body(self, data: bytes):
        """Take a piece of body; a batch when a step of it filled one, ``_WAIT`` when the
        input is over its budget, else None."""
        if self._reject is not None:
            return None
        decoder = self._decoder
        if decoder is None:
            self.parts.append(data)
            self._inflated += len(data)
        else:
            try:
                data = decoder.feed(data, STEP)
            except Exception as error:
                self._decoding_failed(error)
                return None
            if data:
                self.parts.append(data)
                self._inflated += len(data)
            if decoder.more:
                return self._step()
        if self._inflated >= STEP:
            return self._step()
        return None

    def _step(self):
        """Inflate what the decoder kept and decode whole lines, a step at a time: a batch once
        the events pass ``max_batch_bytes``, or the input is crowded (they then wait with the
        sink rather than here); ``_WAIT`` when the input is crowded and nothing can be handed
        on; None once done."""
        connection = self._connection
        crowded = connection.input.crowded
        limit = self._settings.max_batch_bytes
        self._backlog = False
        while self._reject is None:
            if self._events and (self._cost >= limit or crowded(connection)):
                self._backlog = True
                return self._batch(partial=True)
            decoder = self._decoder
            more = decoder is not None and decoder.more
            if self._inflated < STEP and not more:
                return None
            if crowded(connection):  # checked before the events of a step are made
                self._backlog = True
                return _WAIT
            if self._inflated >= STEP:
                decoded = len(self._events)
                self._decode_lines()
                if len(self._events) > decoded:
                    continue  # new events: a batch yet?
            if not more:
                return None  # one long line so far: more body bytes are needed
            try:
                data = decoder.feed(b"", STEP)
            except Exception as error:
                self._decoding_failed(error)
                return None
            if data:
                self.parts.append(data)
                self._inflated += len(data)
        return None

    def _decode_lines(self) -> None:
        """Decode the whole lines of what was inflated; the last, unfinished line stays."""
        parts = self.parts
        for index in range(len(parts) - 1, self._searched - 1, -1):
            if parts[index].rfind(b"\n") >= 0:
                break
        else:
            self._searched = len(parts)  # one long line so far: no need to look at them again
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        self.parts = [rest] if rest else []
        self._inflated = len(rest)
        self._searched = 0
        events = ndjson.decode(data[:cut])
        if events:
            self._events += events
            self._cost += event_bytes(cut, len(events))

    def _batch(self, partial: bool) -> list:
        events, self._events = self._events, []
        self._with_sink, self._cost = self._cost, 0
        self._partial = partial
        return events

    def _end(self) -> list | bytes | Close:
        reject = self._reject
        decoder = self._decoder
        if reject is None and (self._inflated >= STEP or (decoder is not None and decoder.more)):
            result = self._step()
            if result is not None:
                self._ended = True
                return result  # a batch, or no room: the end comes later
            reject = self._reject
        self._ended = False
        if reject is None and decoder is not None:
            try:
                tail = decoder.finish()
            except Exception as error:
                self._decoding_failed(error)
                reject = self._reject
            else:
                if tail:
                    self.parts.append(tail)
                    self._inflated += len(tail)
        self._decoder = None
        if reject is not None:
            self._reject = None
            self._drop()
            return self._answer_error(*reject)
        parts = self.parts
        events = self._events
        if parts:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            self.parts = []
            self._inflated = 0
            self._searched = 0
            decoded = ndjson.decode(data)
            if decoded:
                cost = len(data) * BYTE_FACTOR + len(decoded) * EVENT_OVERHEAD  # event_bytes
                if events:
                    events += decoded
                    cost += self._cost
                else:
                    events = decoded
                self._events = []
                self._cost = 0
                self._with_sink = cost
                self._partial = False
                return events
        if not events:
            return self.ack(events)
        return self._batch(partial=False)

    def _drop(self) -> None:
        """Forget the body being read."""
        self._decoder = None
        self.parts = []
        self._inflated = 0
        self._searched = 0
        self._events = []
        self._cost = 0

    # -- answers ----------------------------------------------------------------------------------

    def _answer_error(self, status: int, text: str) -> bytes | Close:
        """An error answer after a complete request: the connection stays usable."""
        head = self._head
        close = not head.keep_alive or self._draining
        emit = log.debug if status == 429 else log.info
        emit(
            "answered {status} to {method} {target} from {peer}: {text}",
            status=status,
            method=head.method.decode("latin-1"),
            target=head.target.decode("latin-1"),
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
        self._drop()
        self._backlog = False
        return Close(error_response(status, text, True))

    def _decoding_failed(self, error: Exception) -> None:
        self._drop()
        if isinstance(error, TooLargeError):
            self._reject = (413, f"body inflates to more than {self._settings.max_content_length}")
        elif isinstance(error, CodecError):
            self._reject = (400, f"body does not decompress: {error}")
        else:
            log.failure("decompressor failed", Failure(error))
            self._reject = (400, "body does not decompress")


def _encoding(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The content coding named by the ``Content-Encoding`` lines of a request's ``headers``,
    None if unsupported, ``_MULTIPLE`` if they name more than one (see
    :data:`MULTIPLE_CODINGS`)."""
    value = None
    for name, text in headers:
        if name == b"content-encoding":
            if value is not None:
                return _MULTIPLE
            value = text
    if value is None:
        return "identity"
    found = _ENCODINGS.get(value)  # the usual spelling (``gzip``), as received
    if found is not None:
        return found
    if b"," in value:
        return _MULTIPLE
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
    there to the end of its body, ``idle_timeout`` for a connection between requests,
    ``sink_timeout`` for a batch with the sink before its request is answered ``429``.
    ``max_held_bytes`` is the input's memory budget (see ``InputFactory``); a body's events go to
    the sink in batches of at most a sixteenth of it.
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
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
        sink_timeout: float | None = DEFAULT_SINK_TIMEOUT,
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
            max_batch_bytes=max(STEP, max_held_bytes // 16),
            sink_timeout=sink_timeout,
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
            max_held_bytes=max_held_bytes,
            idle_timeout=idle_timeout,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            keepalive_interval=sink_timeout,  # the waiting deadline: keepalive answers 429
            linger=LINGER,
            busy_answer=error_response(503, "too many connections; retry later", True),
            send_at_once=True,
        )

    def exchange_for(self, connection: IInputConnection) -> HttpExchange:
        """The exchange of one new connection."""
        return HttpExchange(connection, self.settings)
