"""Large runs of the output into several of our inputs, in one process, over real loopback
sockets and the real reactor, while inputs die or refuse.

Events carry a unique ``id``; sinks remember the ids they took, so "every event arrived at least
once" is a count of distinct ids. Faults are triggered by what the sinks have seen (a Deferred
that fires at the N-th event), never by time, and every run is bounded by a timeout.

The retriable refusal is made the honest way: the input's sink fails with ``SinkUnavailable``
(what a relay whose output is stopping does), so the real input answers ``503``.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, serverFromString
from zope.interface import implementer

from twisted_logstash.errors import SinkUnavailable
from twisted_logstash.interfaces import IEventSink, ITransmitter
from twisted_logstash.pipeline.output import Output
from twisted_logstash.security.endpoints import server_endpoint_string
from twisted_logstash.tap import output as output_program
from twisted_logstash.transport.hosts import Host
from twisted_logstash.transport.inputservice import InputService
from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter
from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory
from twisted_logstash.wires.native.client import HttpTransmitter
from twisted_logstash.wires.native.server import HttpInputFactory

RUN_TIMEOUT = 120.0
"""Seconds a whole run may take before the test fails (it normally takes a few)."""

TOTAL = 100_000
CHUNK = 1000


class SinkRefused(SinkUnavailable):
    """What a refusing sink fails with (the input answers 503)."""


@implementer(IEventSink)
class CountingSink:
    """Remembers the ids it took; fires ``at(n)`` Deferreds; fails ``refuse(k)`` deliveries."""

    def __init__(self, name: str):
        self.name = name
        self.ids: set[int] = set()
        self.count = 0  # events taken, duplicates included
        self.refused = 0  # deliveries failed on purpose
        self._refuse = 0
        self._at: list[tuple[int, defer.Deferred]] = []

    def deliver(self, events: list[dict]) -> defer.Deferred:
        if self._refuse:
            self._refuse -= 1
            self.refused += 1
            return defer.fail(SinkRefused(f"{self.name} cannot take a batch now"))
        self.ids.update(event["id"] for event in events)
        self.count += len(events)
        if self._at:
            due = [item for item in self._at if self.count >= item[0]]
            for item in due:
                self._at.remove(item)
                # fire outside the input's delivery, as any other event source would
                reactor.callLater(0, item[1].callback, self.count)
        return defer.succeed(None)

    def at(self, count: int) -> defer.Deferred:
        """Fires (in a later reactor turn) once this sink took ``count`` events."""
        d: defer.Deferred = defer.Deferred()
        self._at.append((count, d))
        return d

    def refuse(self, deliveries: int) -> None:
        """Fail the next ``deliveries`` deliveries."""
        self._refuse = deliveries


@implementer(ITransmitter)
class Watching:
    """A transmitter wrapper recording every attempt: to which host, and whether the output's
    balancer had that host in its cool-off when it picked it."""

    def __init__(self, inner):
        self.inner = inner
        self.output: Output | None = None
        self.attempts: Counter = Counter()
        self.to_cooling: Counter = Counter()  # attempts on a host that was cooling off
        self.failures: Counter = Counter()
        self.statuses: defaultdict = defaultdict(Counter)  # host -> status (None: no answer)

    def encode(self, events):
        return self.inner.encode(events)

    def transmit(self, host, payload):
        self.attempts[host] += 1
        if self.output.balancer.is_cooling_off(host):
            self.to_cooling[host] += 1
        d = self.inner.transmit(host, payload)

        def failed(failure):
            self.failures[host] += 1
            self.statuses[host][getattr(failure.value, "status", None)] += 1
            return failure

        return d.addErrback(failed)

    def close(self):
        return self.inner.close()


class Receiver:
    """One of our inputs on 127.0.0.1 with its own counting sink."""

    def __init__(self, name: str, factory_for, endpoint=None):
        self.sink = CountingSink(name)
        self.factory = factory_for(self.sink)
        if endpoint is None:
            endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.service = InputService(endpoint, self.factory, reactor)
        self.host: Host | None = None
        self.killed_at: int | None = None

    @defer.inlineCallbacks
    def start(self):
        self.service.startService()
        port = yield self.service.listening
        self.host = Host("127.0.0.1", port.getHost().port)
        return self

    @defer.inlineCallbacks
    def kill(self):
        """Die: stop listening and drop every connection at once, answers unsent."""
        port, self.service.port = self.service.port, None
        self.service.running = False
        yield port.stopListening()
        self.factory.abort()
        self.killed_at = self.sink.count

    @defer.inlineCallbacks
    def stop(self):
        if self.service.running:
            yield self.service.stopService()


def events(first: int, count: int) -> list[dict]:
    return [{"id": n, "message": f"event {n}"} for n in range(first, first + count)]


def plain(host: Host):
    return TCP4ClientEndpoint(reactor, host.host, host.port, timeout=10)


@defer.inlineCallbacks
def send_all(output: Output, total: int = TOTAL):
    """send() every event in chunks; fire once every send() Deferred fired (all succeeded)."""
    sends = [output.send(events(first, CHUNK)) for first in range(0, total, CHUNK)]
    everything = defer.gatherResults(sends, consumeErrors=True)
    yield everything.addTimeout(RUN_TIMEOUT, reactor)


@defer.inlineCallbacks
def shut(output: Output, receivers):
    if output.running:
        yield output.stopService()
    for receiver in receivers:
        yield receiver.stop()


@pytest.mark.slow
@pytest_twisted.inlineCallbacks
def test_native_wire_100k_events_while_one_input_dies_and_one_refuses():
    """Issue 4 item 7: three inputs; one is killed mid-run, another refuses for a while."""

    def native(sink):
        return HttpInputFactory(sink, reactor)

    dying, refusing, healthy = receivers = [
        Receiver("dying", native),
        Receiver("refusing", native),
        Receiver("healthy", native),
    ]
    for receiver in receivers:
        yield receiver.start()
    watching = Watching(HttpTransmitter(reactor, plain))
    output = Output(
        watching,
        [r.host for r in receivers],
        reactor,
        batch_size=125,
        max_in_flight=8,
        # the default cool-off (60 s) is longer than the run: an isolated host stays isolated
    )
    watching.output = output
    output.startService()
    try:
        killed = dying.sink.at(10_000).addCallback(lambda _: dying.kill())
        killed.addCallback(lambda _: output.stats.acknowledged)
        refused = refusing.sink.at(20_000).addCallback(lambda _: refusing.sink.refuse(4))
        refused.addCallback(lambda _: output.stats.acknowledged)
        yield send_all(output)
        acknowledged_at_kill = yield killed
        acknowledged_at_refusal = yield refused
    finally:
        yield shut(output, receivers)
    # both faults struck mid-run
    assert acknowledged_at_kill < TOTAL // 2
    assert acknowledged_at_refusal < TOTAL * 3 // 4

    arrived = set().union(*(r.sink.ids for r in receivers))
    assert len(arrived) == TOTAL
    assert output.stats.acknowledged >= TOTAL
    assert output.undelivered() == 0
    # the killed input took nothing after it died, and was isolated once it failed: no attempt
    # went to it (or to the refusing one) while it was cooling off, since another host was fine
    assert dying.sink.count == dying.killed_at
    assert watching.failures[dying.host] >= 1
    assert refusing.sink.refused >= 1
    assert watching.failures[refusing.host] >= 1
    assert set(watching.statuses[refusing.host]) == {503}
    assert output.balancer.is_cooling_off(dying.host)
    assert output.balancer.is_cooling_off(refusing.host)
    assert not output.balancer.is_cooling_off(healthy.host)
    assert watching.to_cooling == Counter()
    assert watching.failures[healthy.host] == 0
    # after both failed, the healthy input took the rest
    assert healthy.sink.count >= TOTAL - dying.sink.count - refusing.sink.count


@pytest.mark.slow
@pytest_twisted.inlineCallbacks
def test_framed_wire_100k_events_while_one_of_two_inputs_dies():
    """Issue 6 item 4: two Lumberjack inputs, one killed mid-run: no event is lost."""

    def framed(sink):
        return LumberjackInputFactory(sink, reactor)

    dying, living = receivers = [Receiver("dying", framed), Receiver("living", framed)]
    for receiver in receivers:
        yield receiver.start()
    watching = Watching(LumberjackTransmitter(reactor, plain, ack_timeout=30.0))
    output = Output(watching, [r.host for r in receivers], reactor, batch_size=250)
    watching.output = output
    output.startService()
    try:
        killed = dying.sink.at(20_000).addCallback(lambda _: dying.kill())
        killed.addCallback(lambda _: output.stats.acknowledged)
        yield send_all(output)
        acknowledged_at_kill = yield killed
    finally:
        yield shut(output, receivers)
    assert acknowledged_at_kill < TOTAL // 2

    assert len(dying.sink.ids | living.sink.ids) == TOTAL
    assert output.undelivered() == 0
    assert dying.sink.count == dying.killed_at
    assert watching.failures[dying.host] >= 1
    assert output.balancer.is_cooling_off(dying.host)
    assert watching.to_cooling == Counter()


@pytest_twisted.inlineCallbacks
def test_when_every_host_failed_the_least_recently_failed_is_still_tried():
    """With the default cool-off, two inputs that both refuse for a while are both isolated;
    the output keeps going through the balancer's fallback and everything arrives."""

    def native(sink):
        return HttpInputFactory(sink, reactor)

    receivers = [Receiver("first", native), Receiver("second", native)]
    for receiver in receivers:
        yield receiver.start()
    watching = Watching(HttpTransmitter(reactor, plain))
    output = Output(watching, [r.host for r in receivers], reactor, max_in_flight=4)
    watching.output = output
    output.startService()
    total = 20_000
    try:
        # both start refusing at once: after the first fails, every new attempt goes to the
        # second, which fails too, so both are isolated while events remain
        def refuse_everywhere(_):
            for receiver in receivers:
                receiver.sink.refuse(3)

        receivers[0].sink.at(3_000).addCallback(refuse_everywhere)
        yield send_all(output, total=total)
    finally:
        yield shut(output, receivers)
    assert set().union(*(r.sink.ids for r in receivers)) == set(range(total))
    for receiver in receivers:
        assert receiver.sink.refused >= 1
        assert output.balancer.is_cooling_off(receiver.host)
    # attempts were made on hosts in their cool-off: the fallback kept the output going
    assert sum(watching.to_cooling.values()) > 0


@pytest_twisted.inlineCallbacks
def test_output_to_input_over_mutual_tls_with_basic_auth(certs, tmp_path):
    """A few thousand events with the programs' own flag handling on both sides."""
    from twisted_logstash.tap import input as input_program

    password = tmp_path / "password"
    password.write_text("mtls-secret\n")
    options = input_program.Options()
    options.parseOptions(
        [
            "--host=127.0.0.1",
            "--port=0",
            f"--ssl-certificate={certs / 'server.crt'}",
            f"--ssl-key={certs / 'server.pkcs8.key'}",
            f"--ssl-certificate-authorities={certs / 'ca.crt'}",
            "--ssl-client-authentication=required",
            "--username=shipper",
            f"--password-file={password}",
            "--sink=null",
        ]
    )
    settings, explicit, _ = input_program.settings_from(options, environ={})
    service, warnings = input_program.build(settings, explicit, reactor)
    assert warnings == []
    description = server_endpoint_string(settings, "127.0.0.1", 0)
    assert description.startswith("logstash-tls:")

    def secured(sink):
        service.factory.sink = sink
        return service.factory

    receiver = Receiver("mtls", secured, serverFromString(reactor, description))
    yield receiver.start()

    options = output_program.Options()
    options.parseOptions(
        [
            f"--hosts=127.0.0.1:{receiver.host.port}",
            f"--ssl-certificate-authorities={certs / 'ca.crt'}",
            f"--ssl-certificate={certs / 'client.crt'}",
            f"--ssl-key={certs / 'client.pkcs8.key'}",
            "--username=shipper",
            f"--password-file={password}",
        ]
    )
    settings, explicit, _ = output_program.settings_from(options, environ={})
    output = Output(
        output_program.make_transmitter(settings, reactor),
        settings["hosts"],
        reactor,
        max_in_flight=4,
    )
    output.startService()
    try:
        yield send_all(output, total=5000)
    finally:
        yield shut(output, [receiver])
    assert receiver.sink.ids == set(range(5000))
    assert output.stats.retries == 0
