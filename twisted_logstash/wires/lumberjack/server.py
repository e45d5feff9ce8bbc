"""The framed input: what Logstash's `beats` input does, as an exchange for the input skeleton.

A thin adapter over the sans-IO `FrameDecoder`: frames are gathered into windows, a complete
window goes to the sink, and the sender gets its ACK only once the sink's Deferred fired (so
nothing unacknowledged is ever lost, and nothing is acknowledged before it is safe). The
connection around it (registry, pausing, deadlines, drain) is `transport.server`'s.

Behaviour, after logstash-input-beats (BeatsParser, BeatsHandler, ConnectionHandler):
- `W 0` is answered with `A 0`; a `W` before the current window is complete hands the
  partial window on as it is.
- The ACK names the seq of the last data frame of the window (senders may number frames
  1..n in each window or keep counting across windows: we echo what they sent).
- One window at a time is with the sink; meanwhile the transport is paused (the sender sees
  TCP back pressure) and `A 0` keep-alives go out every `keepalive_interval` seconds, so that
  the sender does not time out and resend.
- No reads and no writes for `client_inactivity_timeout` seconds closes the connection
  (never while a window is with the sink).
- A protocol error, or a sink failure, closes the connection: the windows not yet ACKed are
  dropped and the sender resends them.

Memory is bounded by bytes, not by counts: what a connection holds (`held()`: input not parsed
yet, inflated bytes not parsed yet, and the decoded events not yet handed to the sink, each
counted as its JSON length plus `EVENT_OVERHEAD`) may not pass `max_window_bytes`; a stream that
would hold more (a `W 10000` whose `C` frames inflate to a gigabyte and never complete it) is a
protocol error, and the connection is closed as soon as it passes, before the rest is inflated.
The byte bound is our own (the count bound, `max_window`, is go-lumber's server default); a
sender whose window is refused gets no ACK and resends it, as after any protocol error.
The input skeleton sums `held()` over its connections for its byte budget.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.codecs.events import Decorations
from twisted_logstash.interfaces import IEventSink, IInputConnection, IInputExchange
from twisted_logstash.transport.server import (
    DEFAULT_MAX_HELD_BYTES,
    IDLE,
    Close,
    InputFactory,
    InputProtocol,
)
from twisted_logstash.wires.lumberjack.decoder import (
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_INFLATED,
    DEFAULT_MAX_WINDOW,
    TLS_ON_PLAIN_PORT,
    FrameDecoder,
)
from twisted_logstash.wires.lumberjack.frames import (
    AckFrame,
    FrameTooLargeError,
    JsonDataFrame,
    JsonDataRun,
    LumberjackProtocolError,
    V1DataFrame,
    WindowSizeFrame,
    encode_ack,
)

__all__ = [
    "DEFAULT_CLIENT_INACTIVITY_TIMEOUT",
    "DEFAULT_KEEPALIVE_INTERVAL",
    "DEFAULT_MAX_WINDOW_BYTES",
    "EVENT_OVERHEAD",
    "WINDOW_OVERHEAD",
    "LumberjackExchange",
    "LumberjackInputFactory",
    "LumberjackInputProtocol",
    "LumberjackInputSettings",
]

DEFAULT_CLIENT_INACTIVITY_TIMEOUT = 60.0  # the beats input's client_inactivity_timeout
DEFAULT_KEEPALIVE_INTERVAL = 5.0  # the beats input's writer-idle keep-alive
DEFAULT_MAX_WINDOW_BYTES = 64 * 1024 * 1024
"""What one connection may hold, in accounted bytes (see `EVENT_OVERHEAD`). A Filebeat window
(2048 events of a few hundred bytes of JSON by default) is counted for a few MiB; a window of
events under the native input's 100 MiB body limit is not refused unless its events are large.
Tighter than `max_inflated` on purpose: it bounds every connection, not one `C` frame."""
EVENT_OVERHEAD = 1024
"""The bytes a decoded event is counted for besides its JSON length: the Python objects of a
dict, its keys and values beyond their JSON text, and the fields the input adds. An estimate,
measured with tracemalloc (decoded and prepared): `{}` costs 192 bytes, a Filebeat-like event
of 265 JSON bytes 1,690, a 10 KB message 10,234. JSON made of empty containers (`[{},{},...]`)
costs up to about 25 times its length: that is beyond what this estimate covers."""
WINDOW_OVERHEAD = 160
"""The bytes a window is counted for besides its events (its object and list): a flood of `W 0`
read while the sink holds a window is held as empty windows until their `A 0` go out."""

log = Logger(namespace="twisted_logstash.wires.lumberjack.server")


class _Window:
    """Events of one window as they arrive, and the seq to acknowledge them with."""

    __slots__ = ("bytes", "count", "events", "last_seq", "version")

    def __init__(self, count: int, version: int):
        self.count = count
        self.version = version
        self.events: list[dict[str, Any]] = []
        self.last_seq = 0
        self.bytes = WINDOW_OVERHEAD  # plus its events' (JSON length plus EVENT_OVERHEAD each)


LumberjackInputProtocol = InputProtocol
"""One sender's connection: the skeleton's protocol (the name stays for subclasses)."""


@dataclass(frozen=True, slots=True)
class LumberjackInputSettings:
    """What every connection of one framed input shares: the decoder's limits, and the bytes a
    connection may hold."""

    max_window: int = DEFAULT_MAX_WINDOW
    max_frame: int = DEFAULT_MAX_FRAME
    max_inflated: int = DEFAULT_MAX_INFLATED
    max_window_bytes: int = DEFAULT_MAX_WINDOW_BYTES


@implementer(IInputExchange)
class LumberjackExchange:
    """One sender's connection without I/O: frames in, windows out, ACKs back."""

    def __init__(self, connection: IInputConnection, settings: LumberjackInputSettings):
        self._connection = connection
        self.decoder = FrameDecoder(settings.max_window, settings.max_frame, settings.max_inflated)
        self.max_window_bytes = settings.max_window_bytes
        self.window: _Window | None = None
        """The window whose frames are arriving."""
        self._ready: deque[_Window] = deque()
        self._decoded = 0  # bytes counted for the events of self.window and self._ready
        self._busy: _Window | None = None
        self._failed = False  # a protocol error or a sink failure: close, read nothing more
        self.error: str | None = None
        """The protocol error that closes the connection, if one does."""
        self._draining = False
        self._lost = False

    # -- IInputExchange ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._failed:
            return
        limit = self.max_window_bytes
        try:
            for frames in self.decoder.decode_runs(data):
                for frame in frames:
                    kind = type(frame)
                    if kind is JsonDataRun:
                        window = self.window
                        events = frame.events
                        if window is not None and len(window.events) + len(events) <= window.count:
                            cost = frame.size + len(events) * EVENT_OVERHEAD
                            if self._decoded + cost <= limit:
                                # the whole run in one go: what the loop below does per event
                                # (none of its checks can fail on the way)
                                if window.events:
                                    window.events += events
                                else:
                                    window.events = events
                                window.last_seq = frame.last_seq
                                window.bytes += cost
                                self._decoded += cost
                                if len(window.events) == window.count:
                                    self._ready.append(window)
                                    self.window = None
                                continue
                        for (_, seq, size), event in zip(frame.heads, events, strict=True):
                            self._data(seq, event, size, limit)
                    elif kind is JsonDataFrame or kind is V1DataFrame:
                        self._data(frame.seq, frame.event, frame.size, limit)
                    else:
                        self._control(frame)
            if self._decoded + self.decoder.held() > self.max_window_bytes:
                self._too_much()
        except LumberjackProtocolError as exc:
            self._fail("protocol error: {reason}", reason=str(exc))

    def held(self) -> int:
        """Bytes held: input not parsed yet, inflated bytes not parsed yet, and the events
        decoded but not yet handed to the sink (JSON length plus `EVENT_OVERHEAD` each)."""
        return self._decoded + self.decoder.held()

    def receive(self, data: bytes) -> list:
        """The `A 0` of empty windows and the next complete window, in order."""
        if data:
            self._connection.set_phase(IDLE)  # a read: the inactivity deadline starts again
            self.feed(data)
        out: list = []
        if self._failed:
            out.append(Close())
            return out
        ready = self._ready
        answers: list[bytes] = []  # one write for them all, not a buffered object per A 0
        while ready:
            window = ready.popleft()
            self._decoded -= window.bytes
            if not window.events:
                answers.append(encode_ack(0, window.version))
                continue
            if answers:
                out.append(b"".join(answers))
                answers = []
            self._busy = window
            out.append(window.events)
            break
        if answers:
            out.append(b"".join(answers))
        return out

    def ack(self, events: list) -> bytes | Close:
        window, self._busy = self._busy, None
        if self._lost:
            log.info(
                "{count} events were delivered after the sender left (it will resend them)",
                count=len(window.events),
            )
            return b""
        self._connection.set_phase(IDLE)  # a write: the inactivity deadline starts again
        data = encode_ack(window.last_seq, window.version)
        if self._failed or self._draining:
            return Close(data)
        return data

    def refuse(self, events: list, reason: Failure) -> Close:
        window, self._busy = self._busy, None
        log.failure(
            "{peer}: the sink failed {count} events; closing so that the sender resends",
            reason,
            peer=self._connection.peer(),
            count=len(window.events),
        )
        self._failed = True
        self._forget()
        return Close()

    def keepalive(self) -> bytes:
        log.debug("{peer}: window still with the sink, keep-alive", peer=self._connection.peer())
        return encode_ack(0, self._busy.version)

    def timed_out(self, phase: str, seconds: float | None) -> bool:
        log.info(
            "{peer}: no reads or writes for {timeout} s, closing",
            peer=self._connection.peer(),
            timeout=seconds,
        )
        return False

    def tls_hello(self) -> Close:
        self._fail("protocol error: {reason}", reason=TLS_ON_PLAIN_PORT)
        return Close()

    def drain(self) -> bool:
        """Take nothing more; the window with the sink (if any) is still ACKed. Windows not yet
        with the sink are dropped unACKed: the sender resends them."""
        self._draining = True
        self._forget()
        return True

    def lost(self) -> None:
        self._lost = True
        self._forget()
        self.decoder.discard()

    # -- windows ----------------------------------------------------------------------

    def _data(self, seq: int, event: dict[str, Any], size: int, limit: int) -> None:
        """One data frame (`size`: its length) into the window whose frames are arriving."""
        window = self.window
        if window is None:
            raise LumberjackProtocolError(f"data frame seq {seq} outside a window")
        events = window.events
        events.append(event)
        window.last_seq = seq
        cost = size + EVENT_OVERHEAD
        window.bytes += cost
        self._decoded += cost
        if self._decoded > limit:  # the bytes not decoded yet are checked in `feed`
            self._too_much()
        if len(events) == window.count:
            self._ready.append(window)
            self.window = None

    def _control(self, frame) -> None:
        """A frame other than a data frame: a window opens, or a protocol error."""
        if isinstance(frame, WindowSizeFrame):
            if self.window is not None:
                log.warn(
                    "{peer}: new window before the current one was complete: handing on "
                    "{got} of {count} events",
                    peer=self._connection.peer(),
                    got=len(self.window.events),
                    count=self.window.count,
                )
                self._ready.append(self.window)
                self.window = None
            window = _Window(frame.count, frame.version)
            self._decoded += WINDOW_OVERHEAD
            if self._decoded > self.max_window_bytes:
                self._too_much()
            if frame.count == 0:
                self._ready.append(window)
            else:
                self.window = window
        elif isinstance(frame, AckFrame):
            raise LumberjackProtocolError("a sender must not send ACK frames")
        else:
            raise LumberjackProtocolError(f"unexpected frame {frame!r}")

    def _fail(self, message: str, **fields: Any) -> None:
        """Stop reading and close; a window already with the sink still gets its ACK."""
        log.warn(
            "{peer}: " + message + "; closing the connection",
            peer=self._connection.peer(),
            **fields,
        )
        self._failed = True
        self.error = fields.get("reason", message)
        self._forget()
        self.decoder.discard()

    def _too_much(self) -> None:
        held = self._decoded + self.decoder.held()
        events = sum(len(w.events) for w in self._ready)
        if self.window is not None:
            events += len(self.window.events)
        raise FrameTooLargeError(
            f"the connection would hold {held} bytes ({events} events not yet delivered, "
            f"the rest undecoded) over max_window_bytes {self.max_window_bytes}"
        )

    def _forget(self) -> None:
        """Drop the windows not yet with the sink (their sender resends them)."""
        self._ready.clear()
        self.window = None
        self._decoded = 0


class LumberjackInputFactory(InputFactory):
    """Accept Lumberjack senders (Beats, Logstash's `lumberjack` output, our transmitter)
    and hand their windows to `sink` (an `IEventSink`)."""

    def __init__(
        self,
        sink: IEventSink,
        reactor: IReactorTime | None = None,
        *,
        client_inactivity_timeout: float = DEFAULT_CLIENT_INACTIVITY_TIMEOUT,
        keepalive_interval: float | None = DEFAULT_KEEPALIVE_INTERVAL,
        max_window: int = DEFAULT_MAX_WINDOW,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_inflated: int = DEFAULT_MAX_INFLATED,
        decorations: Decorations | None = None,
        max_connections: int = 1000,
        max_window_bytes: int = DEFAULT_MAX_WINDOW_BYTES,
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
    ):
        self.settings = LumberjackInputSettings(
            max_window, max_frame, max_inflated, max_window_bytes
        )
        self.max_window_bytes = max_window_bytes
        self.client_inactivity_timeout = client_inactivity_timeout
        self.keepalive_interval = keepalive_interval
        self.max_window = max_window
        self.max_frame = max_frame
        self.max_inflated = max_inflated
        super().__init__(
            sink,
            reactor,
            exchange=self.exchange_for,
            decorations=decorations,
            max_connections=max_connections,
            max_held_bytes=max_held_bytes,
            idle_timeout=client_inactivity_timeout,
            keepalive_interval=keepalive_interval or None,
        )

    def exchange_for(self, connection: IInputConnection) -> LumberjackExchange:
        """The exchange of one new connection."""
        return LumberjackExchange(connection, self.settings)
