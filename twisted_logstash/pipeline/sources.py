"""Where the output's events come from: stdin, a file, a tcp port, or a generator.

Every source is an ``ISource`` and an ``IPushProducer``: it hands lists of events to the consumer
given to ``start`` and stops handing them while paused (the output pauses it when its queue is
full), so memory stays bounded however fast the source could go. The file source is also an
``IResumableSource``: with each list it hands the ``ReadPosition`` just after each event's line,
so that a disk queue stores exactly how far the events it holds reach (``resume.py``).

Lines (stdin, file, tcp) are ndjson as users write it: a line holding a JSON object is that
event; any other non-blank line (not JSON, a scalar, an array) becomes ``{"message": LINE}`` with
the line's text, without its ``\\n`` (or ``\\r\\n``); blank lines are skipped. A dead-letter
record is unwrapped to the event it holds, so a dead-letter file is replayed as it is.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_logstash.codecs import jsonpolicy
from twisted_logstash.codecs.ndjson import DEFAULT_MAX_LINE_LENGTH, LineSplitter
from twisted_logstash.errors import ConfigurationError, TooLargeError
from twisted_logstash.interfaces import IResumableSource, ISource
from twisted_logstash.pipeline.deadletter import unwrap
from twisted_logstash.pipeline.position import ReadPosition

__all__ = [
    "FileSource",
    "GeneratorSource",
    "LineEvents",
    "StdinSource",
    "TcpSource",
    "decode_line",
    "file_key",
    "source_from_string",
]

SPECS = "stdin, file:PATH, tcp:PORT, generator:COUNT"

_DEEP_LINE = 2 * jsonpolicy.MAX_DEPTH  # a shorter line cannot nest deeper than the policy writes


def file_key(path: str) -> str:
    """The name a file's read position is stored under: ``file:`` and its absolute path."""
    return "file:" + os.path.abspath(path)


def decode_line(line: bytes) -> dict | None:
    """The event of one source line (without its ``\\n``), or None for a blank line.

    Read by the JSON policy (:func:`jsonpolicy.loads`): an integer beyond 64 bits keeps its
    exact value; an event (a dead-letter record's own event) nested deeper than the policy
    writes is taken as a line of text, as anything else that is not an object."""
    try:
        if len(line) <= _DEEP_LINE:
            try:
                parsed = jsonpolicy.read(line)
            except RecursionError:
                parsed = jsonpolicy.loads(line, check_depth=False)
        else:
            parsed = jsonpolicy.loads(line, check_depth=False)
    except ValueError:  # not JSON, as the policy's reader raises it
        if not line.strip():
            return None
    else:
        if type(parsed) is dict:
            event = unwrap(parsed)
            if not jsonpolicy.too_deep(event, line):
                return event
    if line.endswith(b"\r"):
        line = line[:-1]
    return {"message": line.decode("utf-8", "replace")}


class LineEvents(LineSplitter):
    """Incremental: feed bytes cut anywhere, get the events of the lines they complete.

    A line longer than ``max_line_length`` raises TooLargeError as soon as that is known.
    """

    def feed(self, data: bytes) -> list[dict]:
        out = []
        append = out.append
        for line in self.lines(data):
            event = decode_line(line)
            if event is not None:
                append(event)
        return out

    def feed_from(self, data: bytes, start: int) -> tuple[list[dict], list[int]]:
        """As ``feed``, with the offset just after the line of each event, counting from
        ``start``, the offset where the first line ``data`` completes began (a line holds one
        event at most)."""
        out = []
        ends = []
        append, end = out.append, ends.append
        position = start
        for line in self.lines(data):
            position += len(line) + 1
            event = decode_line(line)
            if event is not None:
                append(event)
                end(position)
        return out, ends

    def finish(self) -> list[dict]:
        """The event of a last line that had no ``\\n``."""
        event = decode_line(self.rest())  # None for no line, as for a blank one
        return [] if event is None else [event]


Consumer = Callable[[list[dict], ReadPosition | None], None]
"""What ``ISource.start`` takes: called with each list of events read and its position."""


@implementer(ISource, IPushProducer)
class _Source:
    """What every source shares: the consumer, the pause state, the ``done`` Deferred.

    ``done`` fires with None when a finite source reached its end, or fails if reading failed;
    stopping a source early does not fire it (the program is then stopping anyway).
    """

    log = Logger()
    finite = True

    def __init__(self, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.done: defer.Deferred = defer.Deferred()
        self.events = 0  # events handed to the consumer so far
        self.paused = False
        self.stopped = False
        self._consumer: Consumer | None = None

    def start(self, consumer: Consumer) -> None:
        if self._consumer is not None:
            raise RuntimeError(f"{self!r} was already started")
        self._consumer = consumer
        self._begin()

    def pauseProducing(self) -> None:
        self.paused = True
        self._paused()

    def resumeProducing(self) -> None:
        if self.stopped:
            return
        self.paused = False
        self._resumed()

    def stopProducing(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._stop()

    @property
    def ended(self) -> bool:
        return self.done.called

    def _emit(self, events: list[dict], position: ReadPosition | None = None) -> None:
        if events:
            self.events += len(events)
            self._consumer(events, position)

    def _end(self) -> None:
        if not self.done.called:
            self.done.callback(None)

    def _fail(self, error: Exception) -> None:
        self.log.error("{source} failed: {error}", source=repr(self), error=str(error))
        if not self.done.called:
            self.done.errback(error)

    def _begin(self) -> None:
        raise NotImplementedError

    def _paused(self) -> None:
        pass

    def _resumed(self) -> None:
        pass

    def _stop(self) -> None:
        pass


class _Ticking(_Source):
    """A source that produces one slice per reactor iteration (callLater(0)) while running, so
    the reactor serves I/O in between and a pause takes effect after the current slice."""

    _call = None

    def _begin(self) -> None:
        self._schedule()

    def _schedule(self) -> None:
        if self._call is None and not (self.paused or self.stopped or self.ended):
            self._call = self.reactor.callLater(0, self._run)

    def _run(self) -> None:
        self._call = None
        if self.paused or self.stopped or self.ended:
            return
        self._tick()
        self._schedule()

    def _resumed(self) -> None:
        if self._consumer is not None:
            self._schedule()

    def _stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self) -> None:
        raise NotImplementedError


@implementer(IResumableSource)
class FileSource(_Ticking):
    """An ndjson file, read in chunks of ``chunk_size`` bytes from ``offset`` to its end.

    ``offset`` is always the position just after the last line handed to the consumer. Each
    list of events goes with the ``ReadPosition`` after each of its lines, so that a queue
    that takes only part of a list still stores where exactly its part ends; a program that
    keeps those positions with the events resumes there (``resume_at``).
    """

    def __init__(
        self,
        path: str,
        reactor=None,
        *,
        offset: int = 0,
        chunk_size: int = 65536,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    ):
        super().__init__(reactor)
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.path = path
        self.key = file_key(path)
        self.chunk_size = chunk_size
        self.offset = offset
        self._decoder = LineEvents(max_line_length)
        self._read = offset
        self._file = None
        with open(path, "rb"):
            pass  # fail now, at configuration, if the file cannot be read

    def resume_at(self, offset: int) -> int:
        """Read on from ``offset`` (a position this file's events were stored with) instead of
        from where the source was built to start; only before ``start``. A file now shorter
        than ``offset`` was replaced or truncated: it is read from its start. Returns the
        offset the source will read from."""
        if self._consumer is not None:
            raise RuntimeError(f"{self!r} was already started")
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = 0
        if offset > size:
            self.log.warn(
                "{path} is shorter ({size} bytes) than the position stored for it ({offset}); "
                "it was replaced or truncated, reading it from the start",
                path=self.path,
                size=size,
                offset=offset,
            )
            offset = 0
        elif offset:
            self.log.info(
                "resuming {path} at byte {offset} (stored with the queued events)",
                path=self.path,
                offset=offset,
            )
        self.offset = self._read = offset
        return offset

    def _begin(self) -> None:
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - read across reactor iterations
            self._file.seek(self.offset)
        except OSError as e:
            self._fail(e)
            return
        super()._begin()

    def __repr__(self) -> str:
        return f"FileSource({self.path!r})"

    def _tick(self) -> None:
        try:
            data = self._file.read(self.chunk_size)
            if data:
                self._read += len(data)
                events, ends = self._decoder.feed_from(data, self.offset)
                self.offset = self._read - self._decoder.buffered
            else:
                events = self._decoder.finish()
                ends = [self._read]  # the last line had no newline: it ends with the file
                self.offset = self._read
        except (OSError, TooLargeError) as e:
            self._close()
            self._fail(e)
            return
        if events:
            self._emit(events, ReadPosition(self.key, ends))
        if not data:
            self._close()
            self._end()

    def _stop(self) -> None:
        super()._stop()
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class GeneratorSource(_Ticking):
    """Synthetic events like Logstash's ``generator`` input: ``{"message": "Hello world!",
    "sequence": N, "host": {"name": HOSTNAME}}`` with N from 0; ``count`` 0 means endless."""

    def __init__(
        self,
        count: int,
        reactor=None,
        *,
        slice_size: int = 500,
        message: str = "Hello world!",
        host_name: str | None = None,
    ):
        super().__init__(reactor)
        if count < 0:
            raise ValueError("a generator count must not be negative")
        if slice_size < 1:
            raise ValueError("slice_size must be at least 1")
        self.count = count
        self.finite = count > 0
        self.slice_size = slice_size
        self.message = message
        self.host_name = host_name or socket.gethostname()
        self.sequence = 0

    def __repr__(self) -> str:
        return f"GeneratorSource({self.count})"

    def _tick(self) -> None:
        start = self.sequence
        stop = start + self.slice_size
        if self.count:
            stop = min(stop, self.count)
        message, name = self.message, self.host_name
        events = [
            {"message": message, "sequence": n, "host": {"name": name}} for n in range(start, stop)
        ]
        self.sequence = stop
        self._emit(events)
        if self.count and self.sequence >= self.count:
            self._end()


class _LinesProtocol(protocol.Protocol):
    """Lines from one byte stream (a tcp connection, stdin) into a source."""

    def __init__(self, source: _Source, max_line_length: int):
        self.source = source
        self.decoder = LineEvents(max_line_length)

    def dataReceived(self, data: bytes) -> None:
        try:
            events = self.decoder.feed(data)
        except TooLargeError as e:
            self.tooLong(e)
            return
        self.source._emit(events)

    def tooLong(self, error: TooLargeError) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Emit a last line that had no newline."""
        self.source._emit(self.decoder.finish())


class _TcpLines(_LinesProtocol):
    def connectionMade(self) -> None:
        self.source._connections.add(self)
        if self.source.paused:
            self.transport.pauseProducing()

    def tooLong(self, error: TooLargeError) -> None:
        self.source.log.error(
            "tcp source: closing the connection from {peer}: {error}",
            peer=str(self.transport.getPeer()),
            error=str(error),
        )
        self.transport.abortConnection()

    def connectionLost(self, reason) -> None:
        self.source._connections.discard(self)
        self.flush()


class _TcpFactory(protocol.Factory):
    noisy = False  # no "Starting factory" line: the source logs where it reads

    def __init__(self, source: TcpSource):
        self.source = source

    def buildProtocol(self, addr):
        proto = _TcpLines(self.source, self.source.max_line_length)
        proto.factory = self
        return proto


class TcpSource(_Source):
    """A listening tcp port taking ndjson lines from any number of connections.

    There is no acknowledgement on this plain stream: a client learns nothing of delivery.
    Pausing the source pauses reading from every connection (tcp's own flow control then holds
    the clients back). It never ends by itself, so ``done`` does not fire.
    """

    finite = False

    def __init__(
        self,
        port: int,
        interface: str = "127.0.0.1",
        reactor=None,
        *,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    ):
        super().__init__(reactor)
        self.port = port
        self.interface = interface
        self.max_line_length = max_line_length
        self.listening_port = None
        #: fires once the port stopped listening (after stopProducing)
        self.stopped_listening: defer.Deferred | None = None
        self._connections: set[_TcpLines] = set()

    def __repr__(self) -> str:
        return f"TcpSource({self.port}, {self.interface!r})"

    def buildFactory(self) -> protocol.Factory:
        return _TcpFactory(self)

    def _begin(self) -> None:
        self.listening_port = self.reactor.listenTCP(
            self.port, self.buildFactory(), interface=self.interface
        )
        address = self.listening_port.getHost()
        # Twisted's own "starting on" line is a debug line (logs.py): this one says where
        self.log.info(
            "reading ndjson lines on tcp {host}:{port}", host=address.host, port=address.port
        )

    def _paused(self) -> None:
        for connection in self._connections:
            connection.transport.pauseProducing()

    def _resumed(self) -> None:
        for connection in self._connections:
            connection.transport.resumeProducing()

    def _stop(self) -> None:
        if self.listening_port is not None:
            self.stopped_listening = defer.maybeDeferred(self.listening_port.stopListening)
        for connection in list(self._connections):
            connection.transport.loseConnection()


@implementer(IHalfCloseableProtocol)
class _StdinLines(_LinesProtocol):
    def tooLong(self, error: TooLargeError) -> None:
        self.transport.loseConnection()
        self.source._fail(error)

    def readConnectionLost(self) -> None:
        self.flush()
        self.source._end()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason) -> None:
        pass


class StdinSource(_Source):
    """ndjson lines from standard input (or any readable file descriptor) until EOF.

    Uses Twisted's StandardIO; its output side is /dev/null so that fd 1 (where ``twistd -n``
    logs) is never touched or made non-blocking.
    """

    def __init__(
        self, reactor=None, *, fd: int = 0, max_line_length: int = DEFAULT_MAX_LINE_LENGTH
    ):
        super().__init__(reactor)
        self.fd = fd
        self.max_line_length = max_line_length
        self._stdio = None

    def __repr__(self) -> str:
        return f"StdinSource(fd={self.fd})"

    def _begin(self) -> None:
        from twisted.internet import stdio

        devnull = os.open(os.devnull, os.O_WRONLY)
        self.done.addBoth(self._close_output)
        proto = _StdinLines(self, self.max_line_length)
        self._stdio = stdio.StandardIO(proto, stdin=self.fd, stdout=devnull, reactor=self.reactor)

    def _paused(self) -> None:
        if self._stdio is not None:
            self._stdio.pauseProducing()

    def _resumed(self) -> None:
        if self._stdio is not None:
            self._stdio.resumeProducing()

    def _stop(self) -> None:
        if self._stdio is not None:
            self._stdio.loseConnection()

    def _close_output(self, result):
        # StandardIO's writer owns the /dev/null fd; losing the connection closes it.
        self._stdio.loseConnection()
        return result


def source_from_string(spec: str, reactor=None) -> _Source:
    """The source a ``--source`` value names; ConfigurationError names the accepted forms."""
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "stdin" and not sep:
        return StdinSource(reactor)
    if kind == "file" and arg:
        try:
            return FileSource(arg, reactor)
        except OSError as e:
            raise ConfigurationError(f"--source {spec!r}: cannot read {arg!r}: {e.strerror}")
    if kind == "tcp" and arg:
        port = _number(spec, arg)
        if port > 65535:
            raise ConfigurationError(f"--source {spec!r}: port must be from 0 to 65535")
        return TcpSource(port, reactor=reactor)
    if kind == "generator" and arg:
        return GeneratorSource(_number(spec, arg), reactor)
    raise ConfigurationError(f"--source {spec!r}: expected one of {SPECS}")


def _number(spec: str, text: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ConfigurationError(f"--source {spec!r}: {text!r} is not a whole number")
    return int(text)
