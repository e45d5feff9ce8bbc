"""The output's policy: batching, balancing, retrying and dead-lettering, for either wire.

Events come from ``send()`` and from attached sources, wait in a queue, and leave it in batches
of up to ``batch_size`` (or fewer after ``batch_delay``). Each batch is encoded once by the
transmitter and then attempted, host by host as the balancer picks, until a receiver
acknowledges it (the queue forgets it), refuses it for good (it goes to the dead-letter file) or
the service stops (it stays in the queue, unacknowledged). Nothing is reported delivered before
a receiver acknowledged it.

A batch is bounded by bytes too: the transmitter cuts what it encoded into parts of at most
``batch_max_bytes`` of JSON (``encode_within``; an event over it goes alone), so that a batch of
big events never outgrows a receiver's limit and is refused whole. The parts of one batch share
its queue ticket, acknowledged once every part is settled; each part is attempted, retried and,
if refused, dead-lettered on its own, and waits for a slot under ``max_in_flight`` as a batch
does.

Events that do not fit in the queue wait in order in the output itself, and sources are paused
until there is room again; ``send()`` callers see their Deferred fire later, which is their
back-pressure. A resumable source's events travel with their ``ReadPosition``; with a queue that
keeps cursors (``ICursorQueue``) each put stores the position just after its last event, split
with the events when only part of them fits.

A queue that fails to hold or to forget events (a disk queue on a full disk) never costs an
event: a failed put goes back, whole and first, to the events waiting for room (sources stay
paused, later events wait behind it, so no cursor is stored past it) and is tried again with
backoff; a failed ack leaves its batch in flight and is tried again the same way. If the queue
keeps failing for ``queue_retry_timeout`` seconds, or cannot be read at all, the output stops
taking batches and fails ``failed`` with a QueueFailedError that says why: the program stops
with an error, everything not acknowledged still in the queue or in its source.

A receiver answering 401 or 403 refuses our credentials, not a batch: every batch would be
refused the same way. With ``on_refused="stop"`` the output then stops taking batches and fails
``failed`` with ``CredentialsRefused``; the refused batch is not dead-lettered but stays in the
queue, unacknowledged, as everything after it. ``"continue"`` (the default of the library)
dead-letters it as any other refusal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.codecs.bytebound import DEFAULT_BATCH_MAX_BYTES
from twisted_logstash.codecs.events import prepare, timestamp_now, without_metadata
from twisted_logstash.errors import (
    ConfigurationError,
    DeadLettered,
    RetriableError,
    SinkUnavailable,
    TerminalError,
    short_reason,
)
from twisted_logstash.interfaces import (
    ICursorQueue,
    IEventQueue,
    IEventSink,
    ISource,
    ITransmitter,
)
from twisted_logstash.pipeline.backoff import Backoff
from twisted_logstash.pipeline.balancer import Balancer
from twisted_logstash.pipeline.deadletter import DeadLetterFile
from twisted_logstash.pipeline.position import ReadPosition
from twisted_logstash.pipeline.queue import DEFAULT_CAPACITY, MemoryQueue
from twisted_logstash.transport.hosts import Host
from twisted_logstash.transport.inputstats import Timings

# A batch whose delay elapsed within this many seconds of now is due (float time arithmetic).
_EPSILON = 1e-9
_DICT_ONLY = {dict}


class Dropped(DeadLettered):
    """Events a receiver refused for good that could not be written to a dead-letter file
    (none configured, or writing failed). They were logged at error level and are gone."""


class QueueFailedError(RuntimeError):
    """The queue kept failing to hold, acknowledge or hand out events (a full or broken
    disk): the output gave up rather than skip them. Nothing was dropped."""


class CredentialsRefused(QueueFailedError):
    """A receiver refused our credentials (401 or 403): the output stopped taking batches
    (``on_refused="stop"``). Nothing was dead-lettered or dropped for it: the refused batch and
    everything after it are still in the queue or in the source. A QueueFailedError, so that
    whatever handles the output giving up (``failed``) handles this too."""

    def __init__(self, host: Host, status: int, reason: str):
        super().__init__(f"{host} refused our credentials ({status}): {reason}")
        self.host = host
        self.status = status
        self.reason = reason


#: what a receiver answers credentials it does not take
CREDENTIAL_STATUSES = frozenset({401, 403})
ON_REFUSED = ("stop", "continue")


class OutputStopped(SinkUnavailable):
    """The output stopped before these events were acknowledged (they may still be in a disk
    queue, and be sent when it starts again). An input relaying into a stopped output answers
    its sender ``503``: retry later."""


@dataclass
class OutputStats:
    """Counters, in events unless named otherwise, for logs and for the programs' exit status."""

    queued: int = 0  # accepted by send() or from sources
    sent: int = 0  # handed to the transmitter, once per attempt (retries count again)
    acknowledged: int = 0  # acknowledged by a receiver
    dead_lettered: int = 0  # refused for good, written to the dead-letter file
    dropped: int = 0  # refused for good and not written anywhere (see Dropped)
    retries: int = 0  # attempts (batches) that failed retriably and were scheduled again
    batches: int = 0  # batches acknowledged


class _Waiter:
    """One ``send()`` call: fires when all its events are settled, leaving ``waiters`` (the
    output's set of calls not answered yet) as it fires."""

    __slots__ = ("deferred", "error", "on_hold", "remaining", "waiters")

    def __init__(self, count: int, waiters: set, on_hold: bool = False):
        self.deferred: defer.Deferred = defer.Deferred()
        self.remaining = count
        self.error: Exception | None = None
        self.waiters = waiters
        #: fires once a durable queue holds the events (``hold``), not once receivers have them
        self.on_hold = on_hold
        waiters.add(self)

    def settle(self, count: int, error: Exception | None, held: bool = False) -> None:
        if self.deferred.called:  # cancelled by its caller, or a hold that fired already
            self.waiters.discard(self)
            return
        if held != self.on_hold:
            return
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= count
        if self.remaining <= 0:
            self.waiters.discard(self)
            if self.error is None:
                self.deferred.callback(None)
            else:
                self.deferred.errback(self.error)

    def abandon(self, error: Exception) -> None:
        self.waiters.discard(self)
        if not self.deferred.called:
            self.deferred.errback(error)


class _Batch:
    """Events handed out by the queue under one ticket, encoded once, attempted until settled.

    A batch cut by bytes is several: each holds a ``_Share`` of the ticket instead."""

    __slots__ = (
        "ack_since",
        "attempt",
        "backoff",
        "events",
        "payload",
        "pieces",
        "retry_call",
        "sent_at",
        "ticket",
    )

    def __init__(self, ticket, events: list[dict], pieces: list):
        self.ticket = ticket
        self.events = events
        self.pieces = pieces  # [(waiter or None, count)] in queue order
        self.backoff: Backoff | None = None  # made at the first failure (most batches have none)
        self.payload = None
        self.attempt: defer.Deferred | None = None
        self.retry_call: IDelayedCall | None = None
        self.ack_since: float | None = None  # when acknowledging it in the queue began failing
        self.sent_at = 0.0  # when its last attempt began


class _Share:
    """The queue ticket of a batch cut into ``parts``: acknowledged once all are settled."""

    __slots__ = ("parts", "ticket")

    def __init__(self, ticket, parts: int):
        self.ticket = ticket
        self.parts = parts


@implementer(IEventSink)
class Output(service.Service):
    """Sends events to receivers over one wire's transmitter; see the module docstring.

    It is also an IEventSink (``deliver`` is ``send``), so an input can relay into it: the
    input acknowledges its sender only once this output's receivers acknowledged.
    """

    log = Logger()

    def __init__(
        self,
        transmitter: ITransmitter,
        hosts: Iterable[Host],
        reactor: IReactorTime | None = None,
        *,
        batch_size: int = 125,
        batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES,
        batch_delay: float = 0.05,
        max_in_flight: int = 4,
        queue: IEventQueue | None = None,
        dead_letter: DeadLetterFile | None = None,
        cooloff: float = 60.0,
        backoff: Callable[[], Backoff] = Backoff,
        stamp: bool = False,
        close_queue: bool = False,
        queue_retry_timeout: float = 300.0,
        on_refused: str = "continue",
    ):
        if reactor is None:
            from twisted.internet import reactor
        if batch_size < 1:
            raise ConfigurationError(f"batch size must be at least 1, not {batch_size}")
        if batch_max_bytes < 1:
            raise ConfigurationError(f"batch max bytes must be at least 1, not {batch_max_bytes}")
        if batch_delay < 0:
            raise ConfigurationError(f"batch delay must not be negative, not {batch_delay}")
        if max_in_flight < 1:
            raise ConfigurationError(f"max in flight must be at least 1, not {max_in_flight}")
        if on_refused not in ON_REFUSED:
            raise ConfigurationError(f"on_refused takes stop or continue, not {on_refused!r}")
        self.on_refused = on_refused
        hosts = list(hosts)
        if not hosts:
            raise ConfigurationError("hosts: at least one host is required")
        self.transmitter = transmitter
        self.reactor = reactor
        self.batch_size = batch_size
        self.batch_max_bytes = batch_max_bytes
        self.batch_delay = batch_delay
        self.max_in_flight = max_in_flight
        self.stamp = stamp
        self.close_queue = close_queue  # stopService closes the queue (the library's output)
        self.queue = queue if queue is not None else MemoryQueue(DEFAULT_CAPACITY)
        self._keeps_cursors = ICursorQueue.providedBy(self.queue)
        self.dead_letter = dead_letter
        self.balancer = Balancer(hosts, reactor, cooloff)
        self._new_backoff = backoff
        self.stats = OutputStats()
        self.round_trips = Timings()
        """Seconds from an attempt's start to its acknowledgement, per acknowledged batch."""
        self.queue_retry_timeout = queue_retry_timeout
        # Fails with QueueFailedError if the output gives up on its queue, CredentialsRefused if
        # a receiver refused our credentials (see the module docstring); never fires otherwise.
        self.failed: defer.Deferred = defer.Deferred()
        self._gave_up: QueueFailedError | None = None
        self._feeding = False
        self._put_retry: IDelayedCall | None = None
        self._put_since: float | None = None  # when puts began failing
        self._put_backoff = backoff()

        self._sources: list[ISource] = []
        self._started: set[int] = set()  # id() of sources started (a source starts only once)
        self._sources_paused = False
        self._stopped = False
        # Events not yet put in the queue (it was full): [events, waiter, position], in arrival
        # order; position is the ReadPosition of a resumable source's events, else None.
        self._overflow: deque[list] = deque()
        self._overflow_count = 0
        # The events in the queue not handed out yet, as [waiter or None, count] in queue order,
        # so a batch knows which send() calls its events belong to without touching the events.
        held = self.queue.pending()
        self._segments: deque[list] = deque([[None, held]] if held else [])
        self._available = held
        self._putting = 0
        self._waiting_since: float | None = reactor.seconds() if held else None
        self._timer: IDelayedCall | None = None
        self._outstanding: list[_Batch] = []  # handed out, not settled
        self._parts: deque[_Batch] = deque()  # parts of a cut batch waiting for a slot
        self._waiters: set[_Waiter] = set()
        self._drains: list[defer.Deferred] = []
        self._pumping = False
        self._repump = False

    # -- public API ------------------------------------------------------------------------

    def send(self, events: Iterable[dict], *, _on_hold: bool = False) -> defer.Deferred:
        """Queue ``events``; the Deferred fires with None once a receiver acknowledged every one
        of them, or fails with DeadLettered (or Dropped) if any was refused for good, or with
        OutputStopped if the service stopped first; it fails at once with TypeError, nothing
        queued, if an event is not a dict."""
        if self._stopped:
            return defer.fail(OutputStopped("the output is stopped"))
        events = list(events)
        if not events:
            return defer.succeed(None)
        if set(map(type, events)) != _DICT_ONLY:  # one C pass; a subclass of dict is looked at
            for event in events:
                if not isinstance(event, dict):
                    # Refused alone, before it can share a batch: a framed receiver drops the
                    # connection over a J frame that is not an object (the batch would retry
                    # forever).
                    kind = type(event).__name__
                    return defer.fail(
                        TypeError(f"an event must be a dict (a JSON object), not {kind}")
                    )
        waiter = _Waiter(len(events), self._waiters, _on_hold)
        self._accept(events, waiter, None)
        return waiter.deferred

    def deliver(self, events: list[dict]) -> defer.Deferred:
        """IEventSink: the same as ``send``."""
        return self.send(events)

    def hold(self, events: Iterable[dict]) -> defer.Deferred:
        """As ``send``, but with a durable queue (``queue.durable``: a disk queue) the Deferred
        fires as soon as the queue holds the events, as Logstash's persistent queue
        acknowledges its inputs: they survive a crash from then on, and are delivered (or
        dead-lettered) later. With a memory queue it is ``send``."""
        if not self.queue.durable:
            return self.send(events)
        return self.send(events, _on_hold=True)

    def attach(self, source: ISource) -> None:
        """Take events from ``source`` (started now if running, else at startService), pausing
        it while the queue is full."""
        self._sources.append(source)
        if self.running:
            self._start_source(source)

    def drain(self) -> defer.Deferred:
        """A Deferred that fires once nothing is queued, waiting or in flight."""
        if self._idle():
            return defer.succeed(None)
        d = defer.Deferred()
        self._drains.append(d)
        return d

    @property
    def in_flight(self) -> int:
        """Batches handed out and not settled (being attempted or waiting for a retry)."""
        return len(self._outstanding)

    def pending(self) -> int:
        """Events not acknowledged yet: in the queue, or waiting for room in it."""
        return self.queue.pending() + self._overflow_count

    def abort_attempts(self) -> int:
        """Cancel every attempt in flight, for a stop that cannot wait for a slow receiver:
        each fails at once and its batch stays in the queue, unacknowledged (a durable queue
        sends it again on the next start). Returns how many attempts were cancelled."""
        attempts = [b.attempt for b in self._outstanding if b.attempt is not None]
        for attempt in attempts:
            attempt.cancel()
        return len(attempts)

    def undelivered(self) -> int:
        """Events neither acknowledged nor dead-lettered: what a stopped output leaves behind
        (lost with a memory queue; kept by a durable one). The same as ``pending()``."""
        return self.pending()

    # -- service ---------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopped = False
        for source in self._sources:
            self._start_source(source)
        for batch in list(self._outstanding):
            # Batches parked by a previous stop: attempt them again.
            if batch.attempt is None and batch.retry_call is None:
                self._attempt(batch)
        self._pump()

    def stopService(self) -> defer.Deferred:
        """Stop sources and new batches, wait for attempts in flight to end, close the
        transmitter. Fires with the number of events left unacknowledged (still in the queue or
        waiting for it); with a memory queue they are lost when the process exits."""
        super().stopService()
        self._stopped = True
        for source in self._sources:
            source.stopProducing()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._put_retry is not None and self._put_retry.active():
            self._put_retry.cancel()
        self._put_retry = None
        for batch in self._outstanding:
            if batch.retry_call is not None and batch.retry_call.active():
                batch.retry_call.cancel()
            batch.retry_call = None
        attempts = [b.attempt for b in self._outstanding if b.attempt is not None]
        d = defer.DeferredList([self._when_settled(a) for a in attempts])
        d.addCallback(lambda _: self.transmitter.close())
        d.addErrback(self._log_close_failure)
        d.addCallback(lambda _: self._stopped_now())
        if self.close_queue:
            d.addCallback(lambda left: self.queue.close().addCallback(lambda _: left))
        return d

    # -- accepting events --------------------------------------------------------------------

    def _start_source(self, source: ISource) -> None:
        if id(source) in self._started:
            return
        self._started.add(id(source))
        source.start(self._consume)
        if self._sources_paused:
            source.pauseProducing()

    def _consume(self, events: list[dict], position: ReadPosition | None = None) -> None:
        """The consumer handed to sources (see ``ISource.start``)."""
        if not events:
            return
        if position is not None and len(position.ends) != len(events):
            raise ValueError(
                f"a source handed {len(events)} events with a position for {len(position.ends)}"
            )
        self._accept(events, None, position)

    def _accept(
        self, events: list[dict], waiter: _Waiter | None, position: ReadPosition | None
    ) -> None:
        # @metadata never leaves the process: not on either wire, not in the dead-letter file
        events = without_metadata(events)
        if self.stamp:
            # As a Logstash event does, every event on the wire then carries @timestamp and
            # @version: events that lack them get the time they were accepted and "1".
            prepare(events, timestamp_now(self.reactor))
        self.stats.queued += len(events)
        self._overflow.append([events, waiter, position])
        self._overflow_count += len(events)
        self._feed()
        self._flow()

    def _feed(self) -> None:
        """Move waiting events into the queue while it has room, in arrival order, one put at
        a time (a failed put must be retried before anything after it is put)."""
        if self._feeding:
            return
        self._feeding = True
        try:
            self._feed_now()
        finally:
            self._feeding = False

    def _feed_now(self) -> None:
        overflow = self._overflow
        while overflow and not self._putting and self._put_retry is None and not self._gave_up:
            room = self.queue.room()
            if room <= 0:
                return
            entry = overflow[0]
            events, waiter, position = entry
            if len(events) <= room:
                overflow.popleft()
                part = events
            else:
                part, entry[0] = events[:room], events[room:]
                if position is not None:
                    position, entry[2] = position.split(room)
            self._overflow_count -= len(part)
            self._put(part, waiter, position)

    def _put(
        self, events: list[dict], waiter: _Waiter | None, position: ReadPosition | None
    ) -> None:
        count = len(events)
        segments = self._segments
        if waiter is None and segments and segments[-1][0] is None:
            segment = segments[-1]
            segment[1] += count
        else:
            segment = [waiter, count]
            segments.append(segment)
        self._putting += count
        try:
            if position is not None and self._keeps_cursors:
                # the source's position after these events, committed with them
                d = self.queue.put(events, cursor=position.cursor())
            else:
                d = self.queue.put(events)
        except Exception:
            d = defer.fail()
        if d.called and not d.paused and d.result is None:
            # Held already (a memory queue): what addCallbacks would run now, without it.
            self._held(None, count, waiter)
            return
        d.addCallbacks(
            self._held,
            self._put_failed,
            (count, waiter),
            None,
            (segment, waiter, count, events, position),
        )

    def _held(self, _, count: int, waiter: _Waiter | None = None) -> None:
        if waiter is not None and waiter.on_hold:
            waiter.settle(count, None, held=True)
        self._putting -= count
        self._available += count
        if self._waiting_since is None:
            self._waiting_since = self.reactor.seconds()
        if self._put_since is not None:
            self.log.info("the queue holds events again")
            self._put_since = None
            self._put_backoff.reset()
        if not self._feeding:  # a put that completed later than it was made
            self._feed()
            self._flow()
        self._pump()

    def _put_failed(
        self,
        failure: Failure,
        segment: list,
        waiter: _Waiter | None,
        count: int,
        events: list[dict],
        position: ReadPosition | None,
    ):
        """The queue could not hold these events (a full disk): nothing of them is held, so
        they go back first in line, and are put again after a backoff."""
        self._putting -= count
        segment[1] -= count
        if segment[1] <= 0 and segment in self._segments:
            self._segments.remove(segment)
        self._overflow.appendleft([events, waiter, position])
        self._overflow_count += count
        since = self._failing_since(self._put_since, f"hold {count} events", failure.value, failure)
        if since is None:
            return
        self._put_since = since
        delay = self._put_backoff.next()
        self.log.error(
            "the queue failed to hold {count} events ({reason}); nothing is skipped: the source "
            "waits and the put is retried in {delay} s",
            count=count,
            reason=str(failure.value),
            delay=round(delay, 3),
        )
        self._put_retry = self.reactor.callLater(delay, self._retry_put)
        self._flow()

    def _retry_put(self) -> None:
        self._put_retry = None
        if self._stopped:
            return
        self._feed()
        self._flow()
        self._pump()

    def _flow(self) -> None:
        """Pause sources while events wait for room in the queue; resume them once there is."""
        full = bool(self._overflow) or self.queue.room() <= 0
        if full and not self._sources_paused:
            self._sources_paused = True
            for source in self._sources:
                source.pauseProducing()
        elif not full and self._sources_paused and not self._stopped:
            self._sources_paused = False
            for source in self._sources:
                source.resumeProducing()

    # -- batching ------------------------------------------------------------------------

    def _pump(self) -> None:
        """Take every batch that is due, re-entrantly safe (attempts may settle at once)."""
        if self._pumping:
            self._repump = True
            return
        self._pumping = True
        try:
            self._repump = True
            while self._repump:
                self._repump = False
                self._take_batches()
        finally:
            self._pumping = False
        self._arm_timer()

    def _can_take(self) -> bool:
        return (
            self.running
            and not self._stopped
            and self._gave_up is None
            and (self._available > 0 or bool(self._parts))
            and len(self._outstanding) < self.max_in_flight
        )

    def _take_batches(self) -> None:
        while self._can_take():
            if self._parts:
                batch = self._parts.popleft()
                self._outstanding.append(batch)
                self._attempt(batch)
                continue
            now = self.reactor.seconds()
            if (
                self._available < self.batch_size
                and now - self._waiting_since + _EPSILON < self.batch_delay
            ):
                return
            try:
                got = self.queue.get(min(self.batch_size, self._available))
            except Exception as e:
                self._give_up(f"the queue could not be read ({e})", Failure())
                return
            if got is None:
                self.log.error(
                    "the queue handed out nothing while {count} events were expected",
                    count=self._available,
                )
                self._available = 0
                self._waiting_since = None
                return
            ticket, events = got
            self._available -= len(events)
            self._waiting_since = now if self._available > 0 else None
            try:
                parts = self._encode(events)
            except Exception as e:
                batch = _Batch(ticket, events, self._pieces(len(events)))
                self._outstanding.append(batch)
                self.log.failure("cannot encode a batch of {count} events", count=len(events))
                self._refused(batch, TerminalError(f"cannot encode the batch: {e}"))
                continue
            if len(parts) == 1:
                batch = _Batch(ticket, events, self._pieces(len(events)))
                batch.payload = parts[0][1]
                self._outstanding.append(batch)
                self._attempt(batch)
            else:
                self._cut(ticket, events, parts)

    def _encode(self, events: list[dict]) -> list:
        """``[(count, payload)]``: the batch encoded once, cut by bytes if the transmitter can
        (one written before ``encode_within`` gets batches bounded by count only)."""
        within = getattr(self.transmitter, "encode_within", None)
        if within is None:
            return [(len(events), self.transmitter.encode(events))]
        return within(events, self.batch_max_bytes)

    def _cut(self, ticket, events: list[dict], parts: list) -> None:
        """A batch over ``batch_max_bytes``: its parts wait for slots, sharing its ticket."""
        share = _Share(ticket, len(parts))
        self.log.info(
            "a batch of {count} events is over {limit} bytes: sending it in {parts} parts",
            count=len(events),
            limit=self.batch_max_bytes,
            parts=len(parts),
        )
        start = 0
        for count, payload in parts:
            part = _Batch(share, events[start : start + count], self._pieces(count))
            part.payload = payload
            start += count
            self._parts.append(part)

    def _pieces(self, count: int) -> list:
        """Which send() calls the next ``count`` events handed out belong to."""
        pieces = []
        segments = self._segments
        while count > 0 and segments:
            segment = segments[0]
            if segment[1] <= count:
                segments.popleft()
                pieces.append((segment[0], segment[1]))
                count -= segment[1]
            else:
                segment[1] -= count
                pieces.append((segment[0], count))
                count = 0
        return pieces

    def _arm_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            return
        self._timer = None
        if self._can_take():
            delay = self._waiting_since + self.batch_delay - self.reactor.seconds()
            self._timer = self.reactor.callLater(max(0.0, delay), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    # -- attempts ------------------------------------------------------------------------

    def _attempt(self, batch: _Batch) -> None:
        batch.retry_call = None
        host = self.balancer.pick()
        self.stats.sent += len(batch.events)
        batch.sent_at = self.reactor.seconds()
        try:
            d = self.transmitter.transmit(host, batch.payload)
        except Exception:
            d = defer.fail()
        batch.attempt = d
        d.addCallbacks(self._delivered, self._failed, (batch, host), None, (batch, host))

    def _delivered(self, _, batch: _Batch, host: Host) -> None:
        batch.attempt = None
        self.balancer.succeeded(host)
        self.round_trips.observe(self.reactor.seconds() - batch.sent_at)
        self._forget(batch, None, self._ticket(batch))

    def _forget(self, batch: _Batch, outcome: DeadLettered | None, ticket) -> None:
        """Acknowledge the batch in the queue, then settle it. A failed ack (a full disk)
        leaves the batch in flight and is retried with backoff; past ``queue_retry_timeout``
        the output gives up (the batch stays in the queue, sent again by the next run).
        ``ticket``: what to acknowledge (None: a part of a cut batch whose other parts are not
        settled yet)."""
        batch.retry_call = None
        try:
            if ticket is not None:
                self.queue.ack(ticket)
        except Exception as e:
            since = self._failing_since(
                batch.ack_since, f"acknowledge {len(batch.events)} delivered events", e, Failure()
            )
            if since is None:
                return
            batch.ack_since = since
            if self._stopped:
                self.log.warn(
                    "the queue failed to acknowledge {count} events while stopping ({reason}); "
                    "they stay in the queue and are sent again by the next run",
                    count=len(batch.events),
                    reason=str(e),
                )
                self._after_settle()
                return
            delay = self._backoff(batch).next()
            self.log.error(
                "the queue failed to acknowledge {count} delivered events ({reason}); "
                "retrying in {delay} s",
                count=len(batch.events),
                reason=str(e),
                delay=round(delay, 3),
            )
            batch.retry_call = self.reactor.callLater(delay, self._forget, batch, outcome, ticket)
            return
        if outcome is None:
            self.stats.acknowledged += len(batch.events)
            self.stats.batches += 1
        elif type(outcome) is Dropped:
            self.stats.dropped += len(batch.events)
        else:
            self.stats.dead_lettered += len(batch.events)
        self._settle(batch, outcome)

    def _backoff(self, batch: _Batch) -> Backoff:
        """The batch's own backoff, made at its first failure."""
        if batch.backoff is None:
            batch.backoff = self._new_backoff()
        return batch.backoff

    def _failing_since(
        self, since: float | None, what: str, reason: object, failure: Failure
    ) -> float | None:
        """When the queue began failing to ``what`` (``since``, or now if it just did); None
        once that is ``queue_retry_timeout`` ago, after giving up."""
        now = self.reactor.seconds()
        if since is None:
            since = now
        waited = now - since
        if waited >= self.queue_retry_timeout:
            self._give_up(
                f"the queue could not {what} for {round(waited, 1)} s ({reason}); "
                "is the disk full?",
                failure,
            )
            return None
        return since

    def _give_up(self, reason: str, failure: Failure | None = None) -> None:
        """The queue keeps failing: stop taking and putting events, and fail ``failed``."""
        if self._gave_up is not None:
            return
        error = QueueFailedError(reason)
        self._gave_up = error
        if self._put_retry is not None and self._put_retry.active():
            self._put_retry.cancel()
        self._put_retry = None
        self.log.critical(
            "giving up on the queue: {reason}; nothing was dropped, what is not acknowledged "
            "stays in the queue or in the source",
            reason=reason,
            log_failure=failure,
        )
        self.failed.errback(error)

    def _failed(self, failure: Failure, batch: _Batch, host: Host) -> None:
        batch.attempt = None
        error = failure.value
        if isinstance(error, TerminalError):
            if error.status in CREDENTIAL_STATUSES:
                self.balancer.failed(host, error)  # this host's credentials: the others may take
            else:
                self.balancer.refused(host, error)  # the batch's fault: the host stays in turn
            if error.host is None:
                error.host = host
            if self.on_refused == "stop" and error.status in CREDENTIAL_STATUSES:
                self._credentials_refused(batch, error)
                return
            self._refused(batch, error)
            return
        self.balancer.failed(host, error)
        if isinstance(self._gave_up, CredentialsRefused):
            self._after_settle()  # parked: it stays in the queue, as the refused batch does
            return
        if not isinstance(error, (RetriableError, defer.CancelledError)):
            self.log.failure("unexpected failure sending to {host}", failure, host=str(host))
        # the reason without a hint of transport/diagnosis.py: the attempt logged that once
        # per host and cause, and these lines come once per batch and retry
        reason = short_reason(error)
        if self._stopped:
            self.log.warn(
                "sending {count} events to {host} failed while stopping ({reason}); "
                "they stay in the queue",
                count=len(batch.events),
                host=str(host),
                reason=reason,
            )
            self._after_settle()
            return
        delay = self._backoff(batch).next()
        self.stats.retries += 1
        self.log.warn(
            "sending {count} events to {host} failed ({reason}); retrying in {delay} s",
            count=len(batch.events),
            host=str(host),
            reason=reason,
            delay=round(delay, 3),
        )
        batch.retry_call = self.reactor.callLater(delay, self._attempt, batch)

    def _credentials_refused(self, batch: _Batch, error: TerminalError) -> None:
        """401/403 with ``on_refused="stop"``: the batch stays in the queue, unacknowledged and
        in flight (parked, as after a stop), and the output takes no more batches."""
        if self._gave_up is None:
            refused = CredentialsRefused(error.host, error.status, error.reason)
            self._gave_up = refused
            if self._put_retry is not None and self._put_retry.active():
                self._put_retry.cancel()
            self._put_retry = None
            self.failed.errback(refused)
        self._after_settle()

    def _refused(self, batch: _Batch, error: TerminalError) -> None:
        """A terminal refusal: dead-letter the batch (or say loudly that it is dropped)."""
        events = batch.events
        count = len(events)
        outcome: DeadLettered
        if self.dead_letter is not None:
            try:
                self.dead_letter.write(events, error.reason, error.host, error.status)
            except Exception:
                self.log.failure(
                    "DROPPED {count} events refused by {host} ({reason}): "
                    "writing them to the dead-letter file {path} failed",
                    count=count,
                    host=str(error.host),
                    reason=error.reason,
                    path=self.dead_letter.path,
                )
                outcome = Dropped(f"{error.reason}; the dead-letter file could not be written")
            else:
                outcome = DeadLettered(
                    f"{error.reason} (host {error.host}, status {error.status}); "
                    f"written to {self.dead_letter.path}"
                )
        else:
            self.log.error(
                "DROPPED {count} events refused by {host} ({reason}, status {status}): "
                "no dead-letter file is configured",
                count=count,
                host=str(error.host),
                reason=error.reason,
                status=error.status,
            )
            outcome = Dropped(f"{error.reason} (host {error.host}, status {error.status})")
        self._forget(batch, outcome, self._ticket(batch))

    def _ticket(self, batch: _Batch):
        """The queue ticket to acknowledge now that ``batch`` is settled (called once per
        batch): its own, or for a part of a cut batch, the shared one once every part is
        settled (None before)."""
        ticket = batch.ticket
        if type(ticket) is _Share:
            ticket.parts -= 1
            if ticket.parts:
                return None
            ticket = ticket.ticket
        return ticket

    def _settle(self, batch: _Batch, error: Exception | None) -> None:
        """The batch is done for good: tell its send() callers and make room."""
        self._outstanding.remove(batch)
        for waiter, count in batch.pieces:
            if waiter is not None:
                waiter.settle(count, error)
        self._after_settle()

    def _after_settle(self) -> None:
        self._feed()
        self._flow()
        self._pump()
        self._check_idle()

    # -- draining and stopping -------------------------------------------------------------

    def _idle(self) -> bool:
        return (
            not self._outstanding
            and not self._overflow
            and self._putting == 0
            and self.queue.pending() == 0
        )

    def _check_idle(self) -> None:
        if self._drains and self._idle():
            drains, self._drains = self._drains, []
            for d in drains:
                d.callback(None)

    def _when_settled(self, attempt: defer.Deferred) -> defer.Deferred:
        """A Deferred that fires once ``attempt`` (an attempt in flight) has been handled."""
        d = defer.Deferred()
        attempt.addBoth(lambda result: (d.callback(None), result)[1])
        return d

    def _log_close_failure(self, failure: Failure) -> None:
        self.log.failure("closing the transmitter failed", failure)

    def _stopped_now(self) -> int:
        left = self.pending()
        error = OutputStopped(f"the output stopped with {left} events unacknowledged")
        for waiter in list(self._waiters):
            waiter.abandon(error)
        drains, self._drains = self._drains, []
        for d in drains:
            d.errback(error)
        self.log.debug("output stopped: {stats}", stats=self.stats)
        if left:
            if self.queue.durable:
                self.log.warn(
                    "stopped with {count} events not acknowledged; they stay in the queue",
                    count=left,
                )
            else:
                self.log.error(
                    "stopped with {count} events not acknowledged; they are lost", count=left
                )
        return left
