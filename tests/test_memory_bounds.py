"""The structural memory bounds, in process and on a Clock (bench/memory.py measures the RSS).

What bounds memory is a count, not a size: the native input holds at most
``max_pending_requests`` batches (each at most ``max_content_length`` inflated) and answers 429
beyond; a connection over ``max_connections`` costs a 503; a client that trickles its head is
dropped by the header timeout; the output holds at most its queue's capacity (plus the one slice
a source was producing when it was paused), however long every receiver is down.
"""

from __future__ import annotations

import gzip
import json

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from twisted_logstash.errors import RetriableError
from twisted_logstash.interfaces import IEventSink, ITransmitter
from twisted_logstash.pipeline.backoff import Backoff
from twisted_logstash.pipeline.output import Output
from twisted_logstash.pipeline.queue import MemoryQueue
from twisted_logstash.pipeline.sources import GeneratorSource
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.native.http import ResponseParser
from twisted_logstash.wires.native.server import HttpInputFactory

BATCH = [{"message": f"event {n}", "n": n} for n in range(125)]
BODY = gzip.compress(json.dumps(BATCH).encode(), 1)
REQUEST = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1:9800\r\nContent-Encoding: gzip\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY
)


@implementer(IEventSink)
class HeldSink:
    def __init__(self) -> None:
        self.held: list[defer.Deferred] = []
        self.events = 0

    def deliver(self, events):
        self.events += len(events)
        d = defer.Deferred()
        self.held.append(d)
        return d

    def release(self) -> None:
        held, self.held = self.held, []
        for d in held:
            d.callback(None)


def connect(factory, n: int):
    addr = IPv4Address("TCP", "127.0.0.1", 30000 + n)
    proto = factory.buildProtocol(addr)
    transport = StringTransport(peerAddress=addr, lenient=True)
    proto.makeConnection(transport)
    return proto, transport


def statuses(transport: StringTransport) -> list[int]:
    out, found = transport.value(), []
    while out:
        parser = ResponseParser()
        response = parser.feed(out)
        assert response is not None, out
        found.append(response.status)
        out = parser.leftover
    return found


def test_input_holds_at_most_max_pending_requests_batches_and_answers_429_beyond():
    sink = HeldSink()
    factory = HttpInputFactory(sink, Clock(), max_pending_requests=20)
    connections = [connect(factory, n) for n in range(30)]
    for proto, _ in connections:
        proto.dataReceived(REQUEST)
    assert factory.pending == 20 and len(sink.held) == 20
    assert sink.events == 20 * 125
    held = [t for _, t in connections if t.producerState == "paused"]
    refused = [t for _, t in connections if statuses(t) == [429]]
    assert len(held) == 20 and len(refused) == 10
    assert all(not t.disconnecting for t in refused)  # 429 keeps the connection for a retry
    # retries while the sink is still full: still 429, still 20 batches held
    for transport in refused:
        proto = next(p for p, t in connections if t is transport)
        proto.dataReceived(REQUEST)
        assert statuses(transport) == [429, 429]
    assert factory.pending == 20 and len(sink.held) == 20
    # a held connection pipelining more does not add a batch: it is paused, one at a time
    proto, transport = next((p, t) for p, t in connections if t in held)
    proto.dataReceived(REQUEST * 3)
    assert factory.pending == 20 and len(sink.held) == 20
    for answered in range(1, 5):  # its pipelined requests follow, one batch at a time
        sink.release()
        assert factory.pending == (1 if answered < 4 else 0)
        assert statuses(transport) == [200] * answered
    assert sink.events == (20 + 3) * 125


def test_connections_over_the_cap_get_503_and_are_closed():
    factory = HttpInputFactory(HeldSink(), Clock(), max_connections=5)
    kept = [connect(factory, n) for n in range(5)]
    over = [connect(factory, 100 + n) for n in range(50)]
    assert factory.connections == 5
    for _, transport in over:
        assert statuses(transport) == [503] and transport.disconnecting
    assert all(not t.disconnecting for _, t in kept)


def test_slowloris_heads_are_dropped_by_the_header_timeout():
    clock = Clock()
    sink = HeldSink()
    factory = HttpInputFactory(sink, clock, header_timeout=10.0, idle_timeout=60.0)
    connections = [connect(factory, n) for n in range(200)]
    head = REQUEST[: REQUEST.index(b"\r\n\r\n")]
    for second in range(30):
        for proto, transport in connections:
            if not transport.disconnecting:
                proto.dataReceived(head[second : second + 1])  # one byte a second
        clock.advance(1.0)
    assert all(t.disconnected for _, t in connections)  # aborted, not answered
    assert all(p.phase == "head" for p, _ in connections)
    for proto, _ in connections:
        proto.connectionLost(None)
    assert factory.connections == 0 and sink.events == 0
    assert clock.getDelayedCalls() == []


@implementer(ITransmitter)
class DownTransmitter:
    """Every receiver is down until ``up`` is set; then each acknowledges after 50 ms."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.up = False
        self.attempts = 0
        self.acknowledged = 0

    def encode(self, events):
        return len(events)

    def transmit(self, host, payload):
        self.attempts += 1
        if not self.up:
            return defer.fail(RetriableError("connection refused", host))
        return task.deferLater(self.clock, 0.05, self._acknowledge, payload)

    def _acknowledge(self, count: int) -> None:
        self.acknowledged += count

    def close(self):
        return defer.succeed(None)


def test_output_queue_never_exceeds_its_capacity_while_every_receiver_is_down():
    clock = Clock()
    capacity, slice_size = 4096, 500
    transmitter = DownTransmitter(clock)
    output = Output(
        transmitter,
        [Host("127.0.0.1", 1), Host("127.0.0.1", 2)],
        clock,
        queue=MemoryQueue(capacity),
        cooloff=5.0,
        backoff=lambda: Backoff(0.1, 2.0, 2.0),
    )
    source = GeneratorSource(2_000_000, clock, slice_size=slice_size, host_name="h")
    output.attach(source)
    output.startService()
    for _ in range(120):  # a minute of retries
        clock.advance(0.5)
        assert output.queue.pending() <= capacity
        assert output.pending() <= capacity + slice_size
        assert source.events <= capacity + slice_size
    assert source.paused and transmitter.attempts > 50
    assert transmitter.acknowledged == 0
    # the receivers come back: events flow, the bound still holds, and nothing was skipped
    transmitter.up = True
    for _ in range(40):
        clock.advance(0.1)
        assert output.queue.pending() <= capacity
        assert output.pending() <= capacity + slice_size
    assert transmitter.acknowledged > capacity
    assert transmitter.acknowledged == output.stats.acknowledged
    assert source.events - output.pending() == transmitter.acknowledged
    stopped = output.stopService()
    clock.advance(1.0)
    assert has_fired(stopped)


def has_fired(d: defer.Deferred) -> bool:
    fired = []
    d.addBoth(fired.append)
    return bool(fired)
