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

    def transmit(host, payload):
        """One attempt to deliver C{payload} to C{host} (a L{Host}).

        Return a Deferred that fires with None once the receiver
        acknowledged every event, or fails with L{RetriableError} or
        L{TerminalError}.
        """

    def close():
        """Drop pooled connections; return a Deferred that fires when done."""


class IEventQueue(Interface):
    """What an output holds between its source and its transmitter."""

    def put(events):
        """Append events; return a Deferred firing once they are held (for a
        disk queue: on disk)."""

    def get(limit):
        """Return C{(ticket, events)} for up to C{limit} events not handed
        out yet, or None when there are none."""

    def ack(ticket):
        """The events of C{ticket} were acknowledged (or dead-lettered):
        forget them for good."""

    def pending():
        """How many events are held, handed out or not."""


class ISource(Interface):
    """A producer of events for an output (stdin, a file, tcp, a generator)."""

    done = Attribute("A Deferred that fires when a finite source ended.")

    def start(consumer):
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
        """A batch has been with the sink for a while: bytes that keep the peer waiting."""

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
