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
