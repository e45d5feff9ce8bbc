"""A framed receiver stuck forever behind keep-alives, over real sockets on 127.0.0.1: the
output's `timeout` still moves its windows to a healthy host (issue 11)."""

from __future__ import annotations

import pytest_twisted
from support_lumberjack import HeldSink, ack
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from twisted_logstash.pipeline.output import Output
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter
from twisted_logstash.wires.lumberjack.decoder import FrameDecoder
from twisted_logstash.wires.lumberjack.frames import JsonDataFrame, WindowSizeFrame
from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory

BOUND = 10.0  # no test waits longer than this for anything
ATTEMPT_TIMEOUT = 1.0
KEEPALIVE_INTERVAL = 0.05


class StuckReceiver(protocol.Protocol):
    """Just enough Lumberjack v2 to look busy: reads windows, never ACKs an event, and writes
    an `A 0` keep-alive every KEEPALIVE_INTERVAL seconds, forever, as a receiver whose sink
    never answers does."""

    def connectionMade(self):
        self.decoder = FrameDecoder()
        self.keepalive = task.LoopingCall(self.transport.write, ack(0))
        self.keepalive.clock = reactor

    def dataReceived(self, data):
        for frame in self.decoder.feed(data):
            if isinstance(frame, WindowSizeFrame):
                self.factory.windows += 1
                if not self.keepalive.running:
                    self.keepalive.start(KEEPALIVE_INTERVAL)
            elif isinstance(frame, JsonDataFrame):
                self.factory.events.append(frame.event)

    def connectionLost(self, reason):
        if self.keepalive.running:
            self.keepalive.stop()


class StuckFactory(protocol.Factory):
    protocol = StuckReceiver

    def __init__(self):
        self.windows = 0
        self.events: list[dict] = []


def tcp(host: Host):
    return TCP4ClientEndpoint(reactor, host.host, host.port, timeout=BOUND)


@defer.inlineCallbacks
def listen(factory: protocol.Factory):
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    return port, Host("127.0.0.1", port.getHost().port)


@pytest_twisted.inlineCallbacks
def test_windows_of_a_receiver_stuck_behind_keepalives_move_to_a_healthy_host():
    stuck = StuckFactory()
    stuck_port, stuck_host = yield listen(stuck)
    sink = HeldSink(auto=True)
    healthy_port, healthy_host = yield listen(LumberjackInputFactory(sink, reactor))
    # the ACK timer (30 s, restarted by every keep-alive) would hold the window forever; only
    # the attempt's own timeout can end it
    transmitter = LumberjackTransmitter(reactor, tcp, timeout=ATTEMPT_TIMEOUT)
    output = Output(
        transmitter,
        [stuck_host, healthy_host],
        reactor,
        batch_size=5,
        batch_delay=0,
        max_in_flight=2,
    )
    output.startService()
    try:
        sent = output.send([{"n": n} for n in range(10)])
        yield sent.addTimeout(BOUND, reactor)
        assert stuck.windows >= 1, "the stuck receiver never got a window"
        assert len(stuck.events) >= 5
        assert sorted(e["n"] for e in sink.events) == list(range(10))
        assert output.stats.acknowledged == 10
        assert output.stats.retries >= 1
        assert output.stats.dead_lettered == output.stats.dropped == 0
    finally:
        stopped = output.stopService()
        output.abort_attempts()  # a window still stuck (the bug) must not hold the test
        yield stopped
        yield stuck_port.stopListening()
        yield healthy_port.stopListening()
