"""The seams between the parts: a receiver hands events to a sink, an output
hands encoded batches to a transmitter. Each side can be swapped and tested
alone."""

from zope.interface import Attribute, Interface


class IEventSink(Interface):
    """Where a receiver puts the events it decoded."""

    def deliver(events):
        """Take a list of event dicts.

        Return a Deferred that fires once the events are safely handed on
        (written, flushed, queued downstream). The receiver acknowledges the
        sender only after it fired; a failure makes the receiver tell the
        sender to retry (5xx on the native wire, no ACK on the framed wire).
        """


class ITransmitter(Interface):
    """One wire's way of sending one batch to one host."""

    def encode(events):
        """Encode a list of event dicts once, into a payload object that
        C{transmit} may send any number of times, to any host."""

    def encode_within(events, max_bytes):
        """Encode C{events} once, as C{encode} does, cut into consecutive parts of at most
        C{max_bytes} of JSON each (an event over it alone): a list of C{(count, payload)}, in
        order, the counts adding up to C{len(events)}; one part when all fit, the usual case.
        (An output given a transmitter without it bounds its batches by count only.)"""

    def transmit(host, payload):
        """One attempt to deliver C{payload} to C{host} (a L{Host}).

        Return a Deferred that fires with None once the receiver
        acknowledged every event, or fails with L{RetriableError} or
        L{TerminalError}.
        """

    def close():
        """Drop pooled connections; return a Deferred that fires when done."""


class IEventQueue(Interface):
    """What an output holds between its sources and its transmitter.

    Events are held from C{put} until C{ack}: a batch handed out by C{get}
    stays held (and counted) while it is sent and retried. C{capacity} is
    advice, not a wall: C{put} never refuses for lack of room; the output
    reads C{room()} and pauses its sources instead, because refusing would
    only drop events a source already read.
    """

    capacity = Attribute(
        "How many held events make the queue full: the bound on how far the "
        "sources may run ahead of the receivers."
    )
    durable = Attribute(
        "True if what the queue holds outlives the process (a disk queue): "
        "events left unacknowledged at a stop are then kept for the next run, "
        "not lost, and the output says so."
    )
    full = Attribute("True while C{pending()} is at or over C{capacity}.")

    def put(events):
        """Append events, in order after every earlier put; return a Deferred
        that fires once they are held (for a disk queue: committed), or fails
        with nothing of them held."""

    def get(limit):
        """Return C{(ticket, events)} for up to C{limit} events not handed
        out yet, oldest first, or None when there are none. They stay held
        until C{ticket} is acknowledged."""

    def ack(ticket):
        """The events of C{ticket} were acknowledged (or dead-lettered):
        forget them for good. Each ticket is acknowledged once; an unknown
        or repeated ticket raises KeyError."""

    def pending():
        """How many events are held, handed out or not."""

    def available():
        """How many events C{get} would hand out now (held, not handed out)."""

    def room():
        """How many more events fit before the queue is full; never below 0."""

    def close():
        """Release what the queue holds open (a database, a lock); return a
        Deferred that fires when done. Events not acknowledged are lost with
        a memory queue and kept by a durable one; the queue is not used
        afterwards."""


class ICursorQueue(IEventQueue):
    """A queue that also keeps its sources' read positions ("cursors").

    A cursor is stored in the same transaction as the events read before it,
    so the stored position is always just after the last event the queue
    holds from that source: a source restarted there neither skips nor
    re-reads an event. Only a queue whose puts are atomic can offer this.
    """

    def put(events, cursor=None):
        """As L{IEventQueue.put}; C{cursor}, a C{(source_key, position)}
        pair, is stored with the events, both or neither. A put of no
        events may move a cursor alone."""

    def cursor(source_key):
        """The position last stored for C{source_key} (an int), or None if
        none was ever stored."""


class ISource(Interface):
    """A producer of events for an output (stdin, a file, tcp, a generator)."""

    done = Attribute("A Deferred that fires when a finite source ended.")
    finite = Attribute(
        "False for a source that never ends by itself (tcp, an endless "
        "generator): stopping it is then a clean stop, not an early one."
    )

    def start(consumer):
        """Begin producing into C{consumer}, called as C{consumer(events,
        position)} with each list of event dicts read, in order.

        C{position} is None unless the source is an L{IResumableSource}; then
        it is a L{twisted_logstash.pipeline.position.ReadPosition} with one
        offset per event, which an output with an L{ICursorQueue} stores
        with those events. The source is also an IPushProducer: the output
        pauses it when its queue is full."""


class IResumableSource(ISource):
    """A source that can read on where a previous run stopped (a file).

    It hands a position along with its events (see L{ISource.start}), so
    that nobody has to work out afterwards how far it had read.
    """

    key = Attribute(
        "The name its position is stored under in a cursor queue (for a file: "
        "'file:' and its absolute path), the key of every position it hands out."
    )

    def resume_at(offset):
        """Before C{start}: read on from C{offset}, a position it handed out
        in an earlier run, instead of from the beginning. Return the offset
        it will read from: C{offset}, or 0 if it cannot go there (a file now
        shorter than C{offset} was replaced: it is read from its start)."""


# -- the transmitter skeleton (transport/pool.py, transport/attempt.py) ---------------------------
# Both wires send through one per-host pool and one attempt; a wire supplies only its exchange.


class IExchange(Interface):
    """One wire's conversation on one pooled connection, one attempt at a time.

    The pool makes one per connection (so that it may keep state across attempts, such as a
    frame decoder); the attempt settles through the L{IAttempt} methods it is handed.
    """

    def begin(transport, attempt):
        """Write the bytes of C{attempt} (its C{payload}, to its C{host}) on C{transport}."""

    def receive(data, attempt):
        """Bytes of the answer to C{attempt}: settle it once they do (C{succeed}, C{fail},
        C{drop}), or keep it alive (C{extend})."""

    def lost(reason, attempt):
        """The connection ended (C{reason}, a Failure) before C{attempt} was settled: settle
        it now. (A stale reused connection was already retried by the attempt.)"""

    def idle(data):
        """Bytes that arrived with no attempt in flight: True when harmless (a keep-alive),
        False to drop the connection."""


class IWire(Interface):
    """What a transmitter supplies to the pool and the attempt: its exchange and its words."""

    protocol = Attribute(
        "The wire's name as C{--protocol} says it (C{http}, C{lumberjack}), for the hints of"
        " C{transport/diagnosis.py}; None: no hints."
    )

    def exchange(host):
        """A new L{IExchange} for a new connection to C{host}."""

    def timed_out(attempt, exchange):
        """The reason an attempt fails with when its deadline passes; C{exchange} is the
        connection's exchange, or None while the attempt waited for or opened a connection."""


class IAttempt(Interface):
    """One attempt to deliver one payload to one host, as an L{IExchange} settles it."""

    host = Attribute("The L{Host} the attempt sends to.")
    payload = Attribute("What the wire's C{encode} made of the batch.")
    connection = Attribute(
        "The pooled connection carrying it (its C{reusable} flag is the exchange's to clear)."
    )
    result = Attribute("A Deferred firing None on success or failing with a DeliveryError.")
    deadline = Attribute(
        "Reactor seconds at which the attempt's whole C{timeout} (from its start) ends."
    )
    overdue = Attribute(
        "True once the attempt timed out at C{deadline} (False when a nearer C{extend} passed)."
    )

    def succeed():
        """The answer acknowledged the payload; the connection goes back to the pool if it is
        still C{reusable}."""

    def fail(problem):
        """The answer refused the payload (C{problem}, a DeliveryError); the connection goes
        back to the pool if it is still C{reusable}."""

    def drop(problem):
        """The connection cannot be trusted (a protocol error): abort it and fail."""

    def diagnosed(reason, answer=None, closed=False, silent=False, error=None):
        """C{reason} with what is probably wrong added (C{transport/diagnosis.py}), for a failure
        on a fresh connection: C{answer} the first bytes the receiver answered, C{closed} it
        closed before any, C{silent} it said nothing in time, C{error} the connection's failure."""

    def extend(seconds):
        """The peer is working on it: time out C{seconds} from now, but never after
        C{deadline} (a peer that only says it is working cannot hold the attempt forever)."""


class IConnectionPool(Interface):
    """The connections to one host: a cap, a first-come waiting line, idle ones to reuse."""

    closing = Attribute("True once close() was called: no new attempts.")

    def take_idle():
        """An idle connection to reuse, or None."""

    def acquire():
        """A Deferred firing with C{(connection, reused)} once there is one for the caller
        (a new one, or one handed back); cancelling it leaves the line or the connect."""

    def release(connection):
        """Take a connection back after its attempt: keep it idle, hand it to the first
        waiting caller, or close it when it may not carry another attempt."""

    def close():
        """Close every connection cleanly, aborting what has not closed after the grace;
        fail the waiting callers. Return a Deferred firing when done."""

        """Begin producing into C{consumer}, a callable taking a list of
        event dicts. The source is also an IPushProducer: the output pauses
        it when its queue is full."""


# -- the input skeleton and the wires' exchanges (transport/server.py) ---------------------------


class IInputExchange(Interface):
    """One connection's wire protocol on an input, without I/O: bytes in, results out.

    The skeleton (``transport.server.InputProtocol``) owns the transport, the clock, the sink
    and the connection's life; an exchange owns only what its wire says. ``receive`` and
    ``ack``/``refuse`` return results, each one of:

    - ``bytes``: write them;
    - a ``list`` of event dicts: a batch to hand to the sink (always the last result); the
      skeleton asks for nothing more until it called ``ack`` or ``refuse`` with it;
    - a ``Close`` (``transport.server.Close``): write its ``answer`` and close (the last result).

    An exchange says which deadline applies through its connection's ``set_phase``; once a batch
    is settled the connection is ``idle`` unless the exchange set another phase in ``ack`` or
    ``refuse``.
    """

    def held():
        """The bytes this connection holds now, as the input's budget (C{max_held_bytes})
        counts them: buffered input not parsed yet, inflated data, decoded events not settled
        by the sink yet (estimated, cheaply), answers not written yet. Asked after every
        C{receive}, C{feed} and settled batch: keep it cheap."""

    def feed(data):
        """Hold C{data} (bytes): a batch is with the sink, nothing may be decided yet."""

    def receive(data):
        """Take C{data} (bytes, maybe empty: go on with what is held); return a list of results
        that ends at the first batch or ``Close``."""

    def ack(events):
        """The sink took C{events}: return the answer (bytes, maybe empty, or a ``Close``)."""

    def refuse(events, reason):
        """The sink failed C{events} (C{reason}, a Failure): return the answer (bytes, maybe
        empty, or a ``Close``). Also called after the peer left, for the log line."""

    def keepalive():
        """A batch has been with the sink for a while: bytes that keep the peer waiting, or a
        ``Close`` that answers the peer now (it waited long enough); the batch then stays with
        the sink, and its late ``ack``/``refuse`` writes nothing."""

    def timed_out(phase, seconds):
        """The deadline of C{phase} passed (C{seconds} after it began): log why the connection
        closes; return True to abort it, False to close it politely."""

    def tls_hello():
        """The connection opened with a TLS handshake on this plain port: the ``Close`` that
        answers it."""

    def drain():
        """The input is stopping: from now on finish what is under way, then close. Return
        True when nothing is under way (the connection may close at once if no batch is held)."""

    def lost():
        """The connection is gone: drop what is held."""


class IInputConnection(Interface):
    """What an exchange may ask of its connection, and the factory of the connection."""

    input = Attribute("The IInput this connection belongs to.")
    phase = Attribute(
        "The deadline phase: 'idle', 'head', 'body' (set by the exchange), 'waiting' (a batch"
        " is with the sink), 'linger' (answered, closing)."
    )
    deadline = Attribute("reactor seconds at which the phase times out, or None.")
    held = Attribute("The bytes its exchange held when last asked (C{held}).")

    def set_phase(phase):
        """Enter C{phase} ('idle', 'head' or 'body') now: its deadline starts again."""

    def peer():
        """The far end, for a log line."""

    def drain():
        """The input is stopping: close now if nothing is under way, else once it is done."""

    def abort():
        """Drop the connection at once."""

    def expire():
        """Its deadline passed: act on it (close, or keep the peer waiting)."""


class IInput(Interface):
    """An input factory, as ``InputService`` stops it."""

    connections = Attribute("How many connections are open.")
    pending = Attribute("How many batches the sink holds and has not settled yet.")
    draining = Attribute("True once ``drain`` was called.")
    held = Attribute("Bytes its connections' exchanges hold, as they last said (``held``).")
    max_held_bytes = Attribute(
        "Its budget: over it, a connection that holds bytes reads no more until it drained."
    )

    def drain():
        """Stop taking batches; return a Deferred that fires once every connection closed and
        the sink settled every batch it holds."""

    def abort():
        """Drop every connection at once (a drain took too long)."""


class IInputRegistry(Interface):
    """What an input's connections tell their factory (its count of connections and batches)."""

    def connected(connection):
        """C{connection} (an IInputConnection) was made."""

    def disconnected(connection):
        """C{connection} is gone."""

    def batch_taken():
        """A connection handed a batch to the sink."""

    def batch_settled():
        """The sink settled a batch (took it or failed it)."""

    def crowded(connection):
        """Whether C{connection}'s exchange should hold no more for now (the input is over its
        budget, and others hold part of it); if so the connection reads no more, and its
        exchange is asked to go on (C{receive(b"")}) once there is room."""
