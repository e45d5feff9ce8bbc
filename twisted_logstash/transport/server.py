"""The input skeleton both wires plug into: connections, batches, deadlines, stopping.

What an input does around its wire is the same on both wires, so it is written once here: the
registry of connections and its cap, one batch at a time per connection with the transport paused
while the sink holds it, one re-entry guard for a sink that fires at once, the deadlines (one sweep
per factory on the injected reactor, so that a request costs no timer object), a TLS handshake on a
plain port told apart at once, drain and abort on stop. A wire supplies only its exchange
(``IInputExchange``): bytes in, batches and bytes out, the way go-lumber's server takes a reader and
a writer per protocol version.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol, task
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.codecs.events import Decorations, Enrichment, prepare, timestamp_now
from twisted_logstash.interfaces import IInput, IInputConnection, IInputExchange, IInputRegistry
from twisted_logstash.security.failures import describe_peer, describe_tls_peer, peer_address
from twisted_logstash.transport.eager import at_socket, send_now, write_now
from twisted_logstash.transport.inputstats import InputStats, refusal_of

__all__ = [
    "BODY",
    "DEFAULT_MAX_HELD_BYTES",
    "HEAD",
    "IDLE",
    "LINGER",
    "WAITING",
    "Close",
    "InputFactory",
    "InputProtocol",
]

log = Logger()

# connection phases, each with its own deadline
IDLE, HEAD, BODY, WAITING, LINGER = "idle", "head", "body", "waiting", "linger"

# why a connection does not read: any one of them pauses the transport, the last one gone resumes it
_SINK = 1  # the sink holds the connection's batch
_BUDGET = 2  # the input holds more bytes than its budget
_WRITES = 4  # the transport holds more unsent answers than it buffers (the peer does not read)

TURN = 0.05
"""Seconds a connection works through batches the sink settles at once before it gives the
reactor back for a turn (a 105 MB body of ``{}`` lines is 35 million events)."""

DEFAULT_MAX_HELD_BYTES = 256 * 1024 * 1024
"""Bytes an input holds at most (``max_held_bytes``), over all its connections, as its exchanges
account them (``IInputExchange.held``): 256 MiB, a quarter of Logstash's default 1 GiB heap."""


def _nothing() -> int:
    return 0


def _nothing_to_add(events: list) -> None:
    """The enricher of a connection with nothing to record (a UNIX socket's peer)."""


class Close:
    """A result of an exchange: write ``answer``, read no more, close."""

    __slots__ = ("answer",)

    def __init__(self, answer: bytes = b"") -> None:
        self.answer = answer

    def __repr__(self) -> str:
        return f"Close({self.answer!r})"


@implementer(IInputConnection, IPushProducer)
class InputProtocol(protocol.Protocol):
    """One connection of an input: the transport, the sink and the clock around an exchange.

    It is also the producer of its transport's writes (``registerProducer``): when the peer does
    not read its answers and they pile up past the transport's buffer (64 KiB on TCP), the
    transport pauses it, and it reads no more until they drained.
    """

    def __init__(self, factory: InputFactory) -> None:
        self.factory = factory
        self.input = factory
        self.exchange: IInputExchange = factory.exchange(self)
        # an exchange without ``held`` holds nothing the budget knows of
        self._held_of = getattr(self.exchange, "held", _nothing)
        self.phase = IDLE
        self.deadline: float | None = None
        self.holding: list | None = None  # the batch with the sink
        self.closing = False  # nothing more is read
        self.lost = False
        self.held = 0  # bytes the exchange held when last asked (the factory's sum counts them)
        self._pauses = 0  # _SINK | _BUDGET | _WRITES
        self._sync = False  # inside sink.deliver's callbacks being attached
        self._running = False  # inside _run
        self._again = False  # _run was asked to go on while running
        self._start: bytes | None = b"" if factory.sniff_tls else None  # until TLS is ruled out
        self._enrich: Callable[[list], None] | None = None  # the connection's, once known
        self._since = 0.0  # when the sink got the batch it holds
        self._unsent: list[bytes] | None = None  # answers sent at the end of this reactor turn
        self._on_socket: bool | None = None  # whether answers go to a socket (known at the first)

    # -- Twisted ----------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.factory.connected(self)
        self.transport.registerProducer(self, True)
        if self.factory.draining:
            self.closing = True
            self.transport.loseConnection()
            return
        self.set_phase(IDLE)

    def dataReceived(self, data: bytes) -> None:
        self.factory.stats.bytes_in += len(data)
        if self.closing:
            return  # lingering: what the peer still sends is dropped
        if self._start is not None and self._tls_client(data):
            return
        if self.holding is not None:
            self.exchange.feed(data)  # one batch at a time: the rest waits
            self.account()
            return
        self._run(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.lost = True
        self.closing = True
        self.deadline = None
        self._unsent = None
        self.factory.forget_answers(self)
        self.exchange.lost()
        self.account()
        self.factory.disconnected(self)

    # -- IPushProducer: the transport's write buffer ----------------------------------------------

    def pauseProducing(self) -> None:
        """The peer does not read its answers fast enough: read nothing more for now."""
        self._pause(_WRITES)

    def resumeProducing(self) -> None:
        """The answers drained: read, and go on with what is held."""
        if self._pauses & _WRITES:
            self._unpause(_WRITES)
            self._continue()

    def stopProducing(self) -> None:
        """The transport is gone (``connectionLost`` follows)."""

    # -- IInputConnection -------------------------------------------------------------------------

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        timeout = self.factory.timeouts[phase]
        self.deadline = None if timeout is None else self.factory.reactor.seconds() + timeout

    def peer(self) -> str:
        return describe_peer(self.transport)

    def drain(self) -> None:
        if self.closing:
            return
        idle = self.exchange.drain()
        if idle and self.holding is None:
            self.closing = True
            self.deadline = None
            self.send_answers()
            self.transport.loseConnection()

    def abort(self) -> None:
        self._unsent = None
        self.transport.abortConnection()

    def expire(self) -> None:
        phase = self.phase
        self.deadline = None
        self.send_answers()
        if phase is WAITING:
            answer = self.exchange.keepalive()
            if type(answer) is Close:  # waited long enough: answered now, the batch stays held
                self._close(answer.answer)
                return
            self.transport.write(answer)
            self.factory.stats.bytes_out += len(answer)
            self.set_phase(WAITING)
            return
        abort = self.exchange.timed_out(phase, self.factory.timeouts[phase])
        self.closing = True
        if abort or self._pauses & _WRITES:  # a close would wait for answers nobody reads
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    # -- the budget of held bytes ----------------------------------------------------------------

    def account(self) -> int:
        """Ask the exchange what it holds now, and tell the factory; pause reading when the input
        holds more than its budget (resumed once it drained). The input's total."""
        held = 0 if self.lost else self._held_of()
        factory = self.factory
        total = factory.held = factory.held + held - self.held
        self.held = held
        if total > factory.max_held_bytes:
            if held and not self.closing and not self._pauses & _BUDGET:
                self._pause(_BUDGET)
                factory.wait_for_room(self)
        elif factory.waiting:
            factory.room_made()
        return total

    def _pause(self, reason: int) -> None:
        if self.closing:
            return  # closing: whatever comes is read and dropped
        if not self._pauses and not self.lost:
            self.transport.pauseProducing()
        self._pauses |= reason

    def _unpause(self, reason: int) -> None:
        if not self._pauses & reason:
            return
        self._pauses &= ~reason
        if not self._pauses and not self.lost:
            self.transport.resumeProducing()

    def room(self) -> None:
        """The input has room again (the factory calls it on a connection it paused)."""
        self._unpause(_BUDGET)
        self._continue()

    def _continue(self) -> None:
        """Go on with what the exchange holds, unless something else still stops it."""
        if not (self.closing or self.lost or self._pauses) and self.holding is None:
            self._run(b"")

    # -- batches ----------------------------------------------------------------------------------

    def _run(self, data: bytes) -> None:
        """Act on what the exchange makes of ``data``, and of what it holds after each batch the
        sink settled at once (a loop, not a recursion per batch, nor one per resumption)."""
        if self._running:  # called back from inside (a write that drained, a sink that fired)
            self._again = True
            return
        self._running = True
        exchange = self.exchange
        settled = 0  # batches settled at once in this loop
        try:
            results = exchange.receive(data)
            while True:
                self._again = False
                events = self._act(results) if results else None
                if events is not None:
                    self._deliver(events)
                if self.holding is not None or self.closing or self._pauses:
                    break  # the sink holds it, or reading waits: a callback goes on
                if events is None and not self._again:
                    break  # the exchange needs bytes
                # batches the sink settled at once (a large body, pipelined requests): give the
                # reactor back now and then, so that other connections are served meanwhile
                settled += 1
                if settled & 15 == 1:  # the clock is read every 16 batches
                    now = self.factory.reactor.seconds()
                    if settled == 1:
                        start = now
                    elif now - start >= TURN:
                        self.factory.reactor.callLater(0, self._continue)
                        break
                results = exchange.receive(b"")
        finally:
            self._running = False
        self.account()

    def _act(self, results: list) -> list | None:
        """Write what is to be written; the batch to deliver, if the results end with one."""
        transport = self.transport
        written = False
        for result in results:
            kind = type(result)
            if kind is bytes:
                if self._unsent is not None:
                    self.send_answers()  # an answer kept for the turn's end goes first
                transport.write(result)
                written = True
                self._answered(result, False)
            elif kind is Close:
                self._close(result.answer)
                return None
            else:
                if written and self.factory.send_at_once:
                    send_now(transport)
                return result
        if written and self.factory.send_at_once:
            send_now(transport)  # the peer may wait for it (100 Continue, an answer)
        return None

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        factory = self.factory
        factory.batch_taken()
        stats = factory.stats
        stats.events_received += len(events)
        stats.batches += 1
        self.holding = events
        self.phase = WAITING
        timeout = factory.timeouts[WAITING]
        self._since = now = factory.reactor.seconds()
        self.deadline = None if timeout is None else now + timeout
        if factory.enrichment:  # before the decorations, which may refer to it (Logstash's order)
            enrich = self._enrich
            if enrich is None:
                enrich = self._enrich = self._enricher(factory.enrichment)
            enrich(events)
        prepare(events, factory.now, factory.decorations)  # the clock read only if needed
        try:
            d = factory.sink.deliver(events)
        except Exception:
            d = defer.fail()
        self._sync = True
        if (
            type(d) is defer.Deferred
            and d.called
            and not d.paused
            and not d._runningCallbacks
            and not isinstance(d.result, Failure)
        ):
            # taken at once (a memory queue): its result is final, no callback chain to run
            self._delivered(d.result)
        else:
            d.addCallbacks(self._delivered, self._undelivered)
        self._sync = False
        if self.holding is not None:
            self._pause(_SINK)

    def _enricher(self, enrichment: Enrichment) -> Callable[[list], None]:
        """What this connection adds to its events' ``@metadata``, worked out once, at its
        first batch (the TLS handshake is done by then)."""
        transport = self.transport
        tls = describe_tls_peer(transport) if enrichment.ssl_peer_metadata else None
        return enrichment.applier(peer_address(transport), tls) or _nothing_to_add

    def _delivered(self, _result: object) -> None:
        events, self.holding = self.holding, None
        factory = self.factory
        factory.batch_settled()
        stats = factory.stats
        stats.events_acknowledged += len(events)
        stats.sink.observe(factory.reactor.seconds() - self._since)
        self._settled(self.exchange.ack(events))

    def _undelivered(self, failure: Failure) -> None:
        events, self.holding = self.holding, None
        factory = self.factory
        factory.batch_settled()
        stats = factory.stats
        stats.events_refused += len(events)
        stats.sink.observe(factory.reactor.seconds() - self._since)
        answer = self.exchange.refuse(events, failure)
        if type(answer) is bytes:  # a Close is counted as it closes
            self._answered(answer, False)
        self._settled(answer)

    def _answered(self, answer: bytes, closing: bool) -> None:
        """Count an answer that is not an acknowledgement (an error status, a close)."""
        key = refusal_of(answer, closing)
        if key is not None:
            self.factory.stats.refusal(key)

    def _settled(self, answer: bytes | Close) -> None:
        """Write the answer to a batch; go on with the next one (or close)."""
        if self.lost:
            return
        if type(answer) is Close:
            self._close(answer.answer)
            return
        if self.phase is WAITING:
            self.set_phase(IDLE)  # unless the exchange said which phase comes next
        transport = self.transport
        if answer:
            self.factory.stats.bytes_out += len(answer)
            if not self.factory.send_at_once:
                transport.write(answer)
            elif self._on_socket or (self._on_socket is None and self._learn_socket()):
                self._answer_soon(answer)
            else:
                write_now(transport, answer)
        if self._pauses:
            self._unpause(_SINK)
        if self.closing:
            self.account()  # answered before (the sink was too slow): nothing more is read
        elif not self._sync:
            self._run(b"")

    def _learn_socket(self) -> bool:
        """Whether this connection's writes reach a socket, looked up once (``write_now`` walks
        the transport's wrappers again for each write, and falls back to ``write`` should the
        connection close meanwhile)."""
        self._on_socket = at_socket(self.transport)
        return self._on_socket

    def _answer_soon(self, answer: bytes) -> None:
        """Send ``answer`` once the reactor is done with what this turn read (every connection
        it found ready), as Twisted's own ``write`` (and its TLS layer's gathering of small
        writes) would, but without watching the socket for writing: a sender with several
        connections in one process (a Beat, our own output, the bench's load generator) is
        woken once for the answers of a turn instead of once per answer, which on loopback
        costs the input more than the ``send`` itself (docs/benchmarks.md). Any other write or
        close of the connection sends it first (``send_answers``). Only for a socket: another
        transport (a test's, a wrapper's) gets the answer at once."""
        unsent = self._unsent
        if unsent is None:
            self._unsent = [answer]
            self.factory.answer_soon(self)
        else:
            unsent.append(answer)

    def send_answers(self) -> None:
        """Hand the answers kept for the end of the turn to the kernel now."""
        unsent = self._unsent
        if unsent is None:
            return
        self._unsent = None
        if not self.lost:
            write_now(self.transport, unsent[0] if len(unsent) == 1 else b"".join(unsent))

    # -- closing ----------------------------------------------------------------------------------

    def _close(self, answer: bytes) -> None:
        """Write ``answer`` and close; with a linger time, half-close and read (and drop) what
        the peer still sends meanwhile, so that it reads the answer instead of a reset."""
        self.closing = True
        transport = self.transport
        self.send_answers()
        self._answered(answer, True)
        if answer:
            self.factory.stats.bytes_out += len(answer)
            if self.factory.send_at_once:
                write_now(transport, answer)
            else:
                transport.write(answer)
        if self.factory.timeouts[LINGER] is None:
            self.deadline = None
            # Twisted's TLS layer sends close_notify (and closes) only once no producer is
            # registered: without this, a TLS connection we close stayed open until its peer
            # or a deadline ended it (a wrong-protocol sender waited for its timeout).
            transport.unregisterProducer()
            transport.loseConnection()
            return
        self.set_phase(LINGER)
        if self._pauses:
            self._pauses = 0
            transport.resumeProducing()
        lose_write = getattr(transport, "loseWriteConnection", None)
        if lose_write is not None:
            lose_write()
        else:
            transport.loseConnection()

    def _tls_client(self, data: bytes) -> bool:
        """Whether the connection opened with a TLS handshake (then answered here)."""
        start = self._start + data[: 3 - len(self._start)]
        hello = tls_handshake(start)
        if hello is None:
            self._start = start  # too few bytes to tell (the exchange holds them meanwhile)
            return False
        self._start = None
        if hello:
            self._close(self.exchange.tls_hello().answer)
        return hello


def tls_handshake(start: bytes) -> bool | None:
    """Whether a connection's first bytes are a TLS handshake record (``16 03 0x``, SSL 3.0 to
    TLS 1.3 all start so); None while too few bytes arrived to tell."""
    for index, allowed in enumerate((b"\x16", b"\x03", b"\x00\x01\x02\x03\x04")):
        if len(start) <= index:
            return None
        if start[index] not in allowed:
            return False
    return True


class _Refusal(protocol.Protocol):
    """What a connection over ``max_connections`` gets: the wire's answer, and a close."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def connectionMade(self) -> None:
        if self.answer:
            self.transport.write(self.answer)
        self.transport.loseConnection()


@implementer(IInput, IInputRegistry)
class InputFactory(protocol.Factory):
    """An input: accepts connections of one wire and hands their batches to ``sink``.

    ``exchange`` builds one connection's ``IInputExchange`` from its ``IInputConnection``.
    ``sink`` provides ``IEventSink``; a batch is acknowledged only after the Deferred of
    ``sink.deliver`` fired. Timeouts are in seconds (None disables one): ``idle_timeout`` between
    batches, ``header_timeout`` and ``body_timeout`` for the phases of the same names,
    ``keepalive_interval`` between the exchange's keep-alives while the sink holds a batch,
    ``linger`` for a closing connection to read (and drop) what the peer still sends (None:
    close at once). Over ``max_connections``, a connection gets ``busy_answer`` and is closed.
    ``max_held_bytes`` is the input's budget: the sum of what its exchanges hold
    (``IInputExchange.held``); a connection that takes the sum past it stops reading until the sum
    is back under it (an exchange may also stop working on what it holds: ``crowded``).
    ``send_at_once`` hands answers to the kernel at once (``send_now``); ``sniff_tls`` answers a
    TLS handshake on this plain port at once (``exchange.tls_hello``). ``enrichment`` (an
    attribute too, None or empty: nothing) is what each event gets in ``@metadata`` about its
    sender, worked out once per connection (``codecs.events.Enrichment``).
    """

    protocol = InputProtocol
    noisy = False

    def __init__(
        self,
        sink,
        reactor=None,
        *,
        exchange: Callable[[IInputConnection], IInputExchange],
        decorations: Decorations | None = None,
        max_connections: int = 1000,
        max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
        idle_timeout: float | None = None,
        header_timeout: float | None = None,
        body_timeout: float | None = None,
        keepalive_interval: float | None = None,
        linger: float | None = None,
        busy_answer: bytes = b"",
        send_at_once: bool = False,
        sniff_tls: bool = True,
        enrichment: Enrichment | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.sink = sink
        self.reactor = reactor
        self.exchange = exchange
        self.decorations = decorations
        self.enrichment = enrichment
        self.max_connections = max_connections
        self.max_held_bytes = max_held_bytes
        self.held = 0
        """Bytes the exchanges of every connection hold, as last asked."""
        self.waiting: deque[InputProtocol] = deque()  # paused by the budget, first come first
        self._making_room = False
        self.busy_answer = busy_answer
        self.send_at_once = send_at_once
        self._unsent: list[InputProtocol] = []  # connections with answers for the turn's end
        self._answers_call = None  # the callLater that sends them
        self.sniff_tls = sniff_tls
        self.timeouts = {
            IDLE: idle_timeout,
            HEAD: header_timeout,
            BODY: body_timeout,
            WAITING: keepalive_interval,
            LINGER: linger,
        }
        self.draining = False
        self.stats = InputStats()
        """What this input counted (``transport.inputstats``)."""
        self._connections: set[InputProtocol] = set()
        self._pending = 0
        self._drain_waiters: list[defer.Deferred] = []
        self._sweeper: task.LoopingCall | None = None
        timeouts = [t for t in self.timeouts.values() if t]
        self._sweep_interval = min(1.0, min(timeouts) / 4) if timeouts else None

    def answer_soon(self, connection: InputProtocol) -> None:
        """Send ``connection``'s kept answers at the end of this reactor turn (a ``callLater(0)``,
        which Twisted runs before it waits for the network again), with those of every other
        connection answered in the same turn."""
        unsent = self._unsent
        unsent.append(connection)
        if len(unsent) == 1:
            self._answers_call = self.reactor.callLater(0, self._send_answers)

    def _send_answers(self) -> None:
        unsent, self._unsent = self._unsent, []
        self._answers_call = None
        for connection in unsent:
            connection.send_answers()

    def forget_answers(self, connection: InputProtocol) -> None:
        """``connection`` is gone: no timer waits for it alone."""
        unsent = self._unsent
        if connection in unsent:
            unsent.remove(connection)
            if not unsent and self._answers_call is not None:
                self._answers_call.cancel()
                self._answers_call = None

    def now(self) -> str:
        """The time of receipt for an event that carries none (``@timestamp``)."""
        return timestamp_now(self.reactor)

    @property
    def pending(self) -> int:
        """Batches the sink holds and has not settled yet."""
        return self._pending

    @property
    def connections(self) -> int:
        return len(self._connections)

    def buildProtocol(self, addr):
        if len(self._connections) >= self.max_connections:
            self.stats.connections_refused += 1
            log.warn(
                "refusing a connection from {addr}: {count} connections already open",
                addr=addr,
                count=len(self._connections),
            )
            return _Refusal(self.busy_answer)
        return self.protocol(self)

    # -- IInput -----------------------------------------------------------------------------------

    def drain(self) -> defer.Deferred:
        """Stop taking batches and fire once every connection closed and the sink settled every
        batch it holds.

        Idle connections close at once; a batch under way is answered and its connection then
        closed (the exchange says how); a new connection is closed at once.
        """
        self.draining = True
        for connection in list(self._connections):
            connection.drain()
        if self._drained():
            return defer.succeed(None)
        d = defer.Deferred(lambda d: self._drain_waiters.remove(d))
        self._drain_waiters.append(d)
        return d

    def abort(self) -> None:
        """Drop every connection at once (after a drain took too long)."""
        for connection in list(self._connections):
            connection.abort()

    # -- IInputRegistry: bookkeeping for the connections -----------------------------------------

    def connected(self, connection: InputProtocol) -> None:
        """``connection`` was made: count it, and sweep its deadlines."""
        self._connections.add(connection)
        self.stats.connections_total += 1
        self.stats.connections_open = len(self._connections)
        if self._sweeper is None and self._sweep_interval is not None:
            self._sweeper = task.LoopingCall(self._sweep)
            self._sweeper.clock = self.reactor
            self._sweeper.start(self._sweep_interval, now=False)

    def disconnected(self, connection: InputProtocol) -> None:
        """``connection`` is gone."""
        self._connections.discard(connection)
        self.stats.connections_open = len(self._connections)
        if not self._connections and self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        self._check_drained()

    def batch_taken(self) -> None:
        """A connection handed a batch to the sink."""
        self._pending += 1

    def batch_settled(self) -> None:
        """The sink settled a batch (took it or failed it)."""
        self._pending -= 1
        if self.draining:
            self._check_drained()

    # -- the budget of held bytes ----------------------------------------------------------------

    def crowded(self, connection: InputProtocol) -> bool:
        """Whether ``connection``'s exchange should hold no more for now: the input holds more
        than its budget and others hold part of it (a connection alone always goes on, so that it
        can finish). The connection then reads no more until there is room; its exchange is asked
        to go on (``receive(b"")``) then."""
        total = connection.account()
        if total <= self.max_held_bytes or total == connection.held:
            return False
        if not connection._pauses & _BUDGET:
            connection._pause(_BUDGET)
            self.wait_for_room(connection)
        return True

    def wait_for_room(self, connection: InputProtocol) -> None:
        """``connection`` stopped for the budget: it goes on once there is room."""
        self.waiting.append(connection)

    def room_made(self) -> None:
        """The input holds less than its budget: the connections it paused go on, first paused
        first, for as long as there is room."""
        if self._making_room:
            return  # the loop below goes on
        self._making_room = True
        try:
            waiting = self.waiting
            while waiting and self.held <= self.max_held_bytes:
                connection = waiting.popleft()
                if not connection.lost:
                    connection.room()
        finally:
            self._making_room = False

    def _drained(self) -> bool:
        return not self._connections and self._pending == 0

    def _check_drained(self) -> None:
        if self.draining and self._drained():
            waiters, self._drain_waiters = self._drain_waiters, []
            for d in waiters:
                d.callback(None)

    def _sweep(self) -> None:
        now = self.reactor.seconds()
        for connection in list(self._connections):
            deadline = connection.deadline
            if deadline is not None and now >= deadline:
                connection.expire()
