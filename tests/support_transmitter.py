"""A scriptable ITransmitter for output tests: per host, each attempt succeeds, fails retriably,
fails terminally, or hangs until the test settles it.

    fake = FakeTransmitter(clock)
    fake.always(HOST_A, RETRY)            # every attempt on A fails with RetriableError
    fake.script(HOST_B, HANG, OK)         # first attempt on B hangs, the next succeeds
    fake.attempts[-1].succeed()           # settle a hung attempt

Payloads are real ndjson bytes, so tests can read back which events an attempt carried.
"""

from __future__ import annotations

from collections import deque

from twisted.internet import defer
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from twisted_logstash.codecs import ndjson
from twisted_logstash.codecs.bytebound import cut
from twisted_logstash.errors import RetriableError, TerminalError
from twisted_logstash.interfaces import ITransmitter

OK = "ok"
RETRY = "retry"
TERMINAL = "terminal"
HANG = "hang"
CRASH = "crash"  # a bug in the transmitter: an exception that is no DeliveryError


class Attempt:
    """One call of transmit: where, what, when, and how it ended."""

    def __init__(self, host, payload, time):
        self.host = host
        self.payload = payload
        self.time = time
        self.deferred: defer.Deferred = defer.Deferred()
        self.outcome: str | None = None

    @property
    def events(self) -> list[dict]:
        return ndjson.decode(self.payload)

    @property
    def hung(self) -> bool:
        return not self.deferred.called

    def succeed(self) -> None:
        self.outcome = OK
        self.deferred.callback(None)

    def retry(self, reason: str = "HTTP 503 Service Unavailable", status: int | None = 503):
        self.outcome = RETRY
        self.deferred.errback(RetriableError(reason, self.host, status))

    def refuse(self, reason: str = "HTTP 400 Bad Request", status: int | None = 400):
        self.outcome = TERMINAL
        self.deferred.errback(TerminalError(reason, self.host, status))

    def crash(self) -> None:
        self.outcome = CRASH
        self.deferred.errback(ZeroDivisionError("a bug in the transmitter"))

    def settle(self, outcome: str) -> None:
        {OK: self.succeed, RETRY: self.retry, TERMINAL: self.refuse, CRASH: self.crash}[outcome]()


@implementer(ITransmitter)
class FakeTransmitter:
    def __init__(self, clock=None, default: str = OK):
        self.clock = clock
        self.default = default
        self._defaults: dict = {}
        self._scripts: dict = {}
        self.attempts: list[Attempt] = []
        self.encodes = 0
        self.closed = False
        #: events of every acknowledged attempt, in the order they were acknowledged
        self.delivered: list[dict] = []
        #: when set, encode raises this for any batch holding an event with key "unencodable"
        self.encode_error: Exception | None = None

    def always(self, host, outcome: str) -> None:
        self._defaults[host] = outcome
        self._scripts.pop(host, None)

    def script(self, host, *outcomes: str) -> None:
        self._scripts.setdefault(host, deque()).extend(outcomes)

    def on(self, host) -> list[Attempt]:
        return [a for a in self.attempts if a.host == host]

    def hung(self) -> list[Attempt]:
        return [a for a in self.attempts if a.hung]

    def encode(self, events):
        self.encodes += 1
        if self.encode_error is not None and any("unencodable" in e for e in events):
            raise self.encode_error
        return ndjson.encode(events)

    def encode_within(self, events, max_bytes):
        """As the real transmitters: encoded once, cut into parts of at most ``max_bytes`` of
        JSON (an event over it alone)."""
        self.encodes += 1
        if self.encode_error is not None and any("unencodable" in e for e in events):
            raise self.encode_error
        lines = [ndjson.encode([event]) for event in events]
        parts, start = [], 0
        for count in cut([len(line) - 1 for line in lines], max_bytes):
            parts.append((count, b"".join(lines[start : start + count])))
            start += count
        return parts

    def transmit(self, host, payload):
        now = self.clock.seconds() if self.clock is not None else 0.0
        attempt = Attempt(host, payload, now)
        self.attempts.append(attempt)
        script = self._scripts.get(host)
        outcome = script.popleft() if script else self._defaults.get(host, self.default)
        attempt.deferred.addCallback(self._record, attempt)
        if outcome != HANG:
            attempt.settle(outcome)
        return attempt.deferred

    def _record(self, result, attempt):
        self.delivered.extend(attempt.events)
        return result

    def close(self):
        self.closed = True
        return defer.succeed(None)


class StringEndpoint:
    """A real transmitter's connections on StringTransports, made at once (``connections``
    lists them, first made first)."""

    def __init__(self):
        self.connections = []

    def connect(self, factory):
        connection = factory.buildProtocol(None)
        connection.makeConnection(StringTransport())
        self.connections.append(connection)
        return defer.succeed(connection)
