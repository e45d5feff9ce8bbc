"""The framed input: what Logstash's `beats` input does, as a Twisted Protocol/Factory.

A thin adapter over the sans-IO `FrameDecoder`: frames are gathered into windows, a complete
window goes to the sink, and the sender gets its ACK only once the sink's Deferred fired (so
nothing unacknowledged is ever lost, and nothing is acknowledged before it is safe).

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
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_logstash.codecs.events import Decorations, prepare, timestamp_now
from twisted_logstash.interfaces import IEventSink
from twisted_logstash.security.failures import describe_peer
from twisted_logstash.wires.lumberjack.decoder import (
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_INFLATED,
    DEFAULT_MAX_WINDOW,
    FrameDecoder,
)
from twisted_logstash.wires.lumberjack.frames import (
    AckFrame,
    LumberjackProtocolError,
    WindowSizeFrame,
    encode_ack,
)

__all__ = [
    "DEFAULT_CLIENT_INACTIVITY_TIMEOUT",
    "DEFAULT_KEEPALIVE_INTERVAL",
    "LumberjackInputFactory",
    "LumberjackInputProtocol",
]

DEFAULT_CLIENT_INACTIVITY_TIMEOUT = 60.0  # the beats input's client_inactivity_timeout
DEFAULT_KEEPALIVE_INTERVAL = 5.0  # the beats input's writer-idle keep-alive

log = Logger(namespace="twisted_logstash.wires.lumberjack.server")


class _Window:
    """Events of one window as they arrive, and the seq to acknowledge them with."""

    __slots__ = ("count", "events", "last_seq", "version")

    def __init__(self, count: int, version: int):
        self.count = count
        self.version = version
        self.events: list[dict[str, Any]] = []
        self.last_seq = 0


class LumberjackInputProtocol(protocol.Protocol):
    """One sender's connection: frames in, windows to the sink, ACKs out."""

    def __init__(self, factory: LumberjackInputFactory):
        self.factory = factory
        self.reactor = factory.reactor
        self.decoder = FrameDecoder(factory.max_window, factory.max_frame, factory.max_inflated)
        self._window: _Window | None = None
        self._ready: deque[_Window] = deque()
        self._busy: _Window | None = None
        self._closing = False
        self._connected = False
        self._paused = False
        self._pumping = False
        self._last_activity = 0.0
        self._idle_timer = None
        self._keepalive_timer = None

    # -- connection -------------------------------------------------------------------

    def connectionMade(self) -> None:
        self._connected = True
        self.factory._connections.add(self)
        if self.factory.draining:
            self._closing = True
            self.transport.loseConnection()
            return
        self._last_activity = self.reactor.seconds()
        self._schedule_idle_check(self.factory.client_inactivity_timeout)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._connected = False
        self._ready.clear()
        self._window = None
        for timer in (self._idle_timer, self._keepalive_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._idle_timer = self._keepalive_timer = None
        self.factory._disconnected(self)

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_activity = self.reactor.seconds()
        try:
            frames = self.decoder.feed(data)
            for frame in frames:
                self._frame(frame)
        except LumberjackProtocolError as exc:
            self._fail("protocol error: {reason}", reason=str(exc))
            return
        self._pump()

    # -- windows ----------------------------------------------------------------------

    def _frame(self, frame) -> None:
        if isinstance(frame, WindowSizeFrame):
            if self._window is not None:
                log.warn(
                    "{peer}: new window before the current one was complete: handing on "
                    "{got} of {count} events",
                    peer=self._peer(),
                    got=len(self._window.events),
                    count=self._window.count,
                )
                self._ready.append(self._window)
                self._window = None
            window = _Window(frame.count, frame.version)
            if frame.count == 0:
                self._ready.append(window)
            else:
                self._window = window
        elif isinstance(frame, AckFrame):
            raise LumberjackProtocolError("a sender must not send ACK frames")
        else:
            window = self._window
            if window is None:
                raise LumberjackProtocolError(f"data frame seq {frame.seq} outside a window")
            window.events.append(frame.event)
            window.last_seq = frame.seq
            if len(window.events) == window.count:
                self._ready.append(window)
                self._window = None

    def _pump(self) -> None:
        """Hand the next complete window to the sink, one at a time, in order.

        A sink that fires at once re-enters here through `_delivered`; the guard turns
        that into the next turn of this loop instead of a recursion per window."""
        if self._pumping:
            return
        self._pumping = True
        try:
            self._pump_windows()
        finally:
            self._pumping = False
        if self._busy is None and not self._closing:
            self._resume()

    def _pump_windows(self) -> None:
        while self._busy is None and self._ready and not self._closing:
            window = self._ready.popleft()
            if not window.events:
                self._write_ack(window.version, 0)
                continue
            self._busy = window
            self._pause()
            self._schedule_keepalive()
            events = prepare(window.events, timestamp_now(self.reactor), self.factory.decorations)
            d = defer.maybeDeferred(self.factory.sink.deliver, events)
            d.addCallbacks(self._delivered, self._not_delivered, (window,), None, (window,))

    def _delivered(self, _: object, window: _Window) -> None:
        self._busy = None
        self._cancel_keepalive()
        if not self._connected:
            log.info(
                "{count} events were delivered after the sender left (it will resend them)",
                count=len(window.events),
            )
            return
        self._write_ack(window.version, window.last_seq)
        if self._closing:
            self.transport.loseConnection()
            return
        self._pump()

    def _not_delivered(self, failure: Failure, window: _Window) -> None:
        self._busy = None
        self._cancel_keepalive()
        log.failure(
            "{peer}: the sink failed {count} events; closing so that the sender resends",
            failure,
            peer=self._peer(),
            count=len(window.events),
        )
        if self._connected:
            self._closing = True
            self._ready.clear()
            self.transport.loseConnection()

    def _fail(self, message: str, **fields: Any) -> None:
        """Stop reading and close; a window already with the sink still gets its ACK."""
        log.warn("{peer}: " + message + "; closing the connection", peer=self._peer(), **fields)
        self._stop()

    def _stop(self) -> None:
        """Take nothing more; close once the window with the sink (if any) is ACKed. Windows
        not yet with the sink are dropped unACKed: the sender resends them."""
        if not self._connected:
            return
        self._closing = True
        self._ready.clear()
        self._window = None
        if self._busy is None:
            self.transport.loseConnection()
        else:
            self._pause()

    # -- writes, timers, flow ---------------------------------------------------------

    def _write_ack(self, version: int, seq: int) -> None:
        self._last_activity = self.reactor.seconds()
        self.transport.write(encode_ack(seq, version))

    def _schedule_keepalive(self) -> None:
        interval = self.factory.keepalive_interval
        if interval:
            self._keepalive_timer = self.reactor.callLater(interval, self._keepalive)

    def _cancel_keepalive(self) -> None:
        if self._keepalive_timer is not None and self._keepalive_timer.active():
            self._keepalive_timer.cancel()
        self._keepalive_timer = None

    def _keepalive(self) -> None:
        self._keepalive_timer = None
        if self._busy is not None and self._connected:
            log.debug("{peer}: window still with the sink, keep-alive", peer=self._peer())
            self._write_ack(self._busy.version, 0)
            self._schedule_keepalive()

    def _schedule_idle_check(self, delay: float) -> None:
        self._idle_timer = self.reactor.callLater(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        if not self._connected:
            return
        timeout = self.factory.client_inactivity_timeout
        idle = self.reactor.seconds() - self._last_activity
        if self._busy is None and idle >= timeout:
            log.info(
                "{peer}: no reads or writes for {timeout} s, closing",
                peer=self._peer(),
                timeout=timeout,
            )
            self._closing = True
            self.transport.loseConnection()
            return
        self._schedule_idle_check(max(timeout - idle, 0.0) or timeout)

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def _resume(self) -> None:
        if self._paused and self._connected:
            self._paused = False
            self.transport.resumeProducing()

    def _peer(self) -> str:
        return describe_peer(self.transport)


class LumberjackInputFactory(protocol.Factory):
    """Accept Lumberjack senders (Beats, Logstash's `lumberjack` output, our transmitter)
    and hand their windows to `sink` (an `IEventSink`)."""

    protocol = LumberjackInputProtocol

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
    ):
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.sink = sink
        self.reactor = reactor
        self.client_inactivity_timeout = client_inactivity_timeout
        self.keepalive_interval = keepalive_interval
        self.max_window = max_window
        self.max_frame = max_frame
        self.max_inflated = max_inflated
        self.decorations = decorations
        self.draining = False
        self._connections: set[LumberjackInputProtocol] = set()
        self._drain_waiters: list[defer.Deferred] = []

    def buildProtocol(self, addr) -> LumberjackInputProtocol:
        return self.protocol(self)

    def drain(self) -> defer.Deferred:
        """Stop taking windows and fire once every connection is closed.

        Idle connections close at once; a window with the sink is finished and ACKed first;
        windows received but not yet with the sink are dropped unACKed (their sender resends
        them). Used by the input service on shutdown."""
        self.draining = True
        for connection in list(self._connections):
            connection._stop()
        if not self._connections:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred(lambda d: self._drain_waiters.remove(d))
        self._drain_waiters.append(d)
        return d

    def abort(self) -> None:
        """Drop every connection at once (after a drain took too long)."""
        for connection in list(self._connections):
            connection.transport.abortConnection()

    def _disconnected(self, connection: LumberjackInputProtocol) -> None:
        self._connections.discard(connection)
        if not self._connections and self._drain_waiters:
            waiters, self._drain_waiters = self._drain_waiters, []
            for d in waiters:
                d.callback(None)
