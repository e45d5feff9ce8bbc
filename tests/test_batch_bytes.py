"""Batches bounded by bytes as well as by count (issue 11), over real loopback on both wires.

The receiver's limit is made small (64 KiB instead of 100 MiB: the native input's
`max_content_length`, the framed input's `max_inflated`), and so is the output's
`batch_max_bytes`: a batch of count `batch_size` would be over the receiver's limit, the bound
cuts it into parts under it, and every event arrives, none dead-lettered. (Without the bound,
the native receiver answers 413 and the whole batch is dead-lettered; the framed receiver drops
the connection and the window is retried forever.)
"""

from __future__ import annotations

import orjson
import pytest
import pytest_twisted
from support_lumberjack import HeldSink
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from twisted_logstash.errors import DeadLettered
from twisted_logstash.pipeline.deadletter import DeadLetterFile, unwrap
from twisted_logstash.pipeline.output import Output
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter
from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory
from twisted_logstash.wires.native.client import HttpTransmitter
from twisted_logstash.wires.native.server import HttpInputFactory

TIMEOUT = 10.0
RECEIVER_LIMIT = 64 * 1024
BATCH_MAX_BYTES = 16 * 1024
TEXT = 2000  # bytes of text per event: 100 events are about 200 KB, over the receiver's limit


def plain(host: Host):
    return TCP4ClientEndpoint(reactor, host.host, host.port, timeout=TIMEOUT)


WIRES = {
    "native": (
        lambda sink: HttpInputFactory(sink, reactor, max_content_length=RECEIVER_LIMIT),
        lambda: HttpTransmitter(reactor, plain, timeout=TIMEOUT),
    ),
    "framed": (
        lambda sink: LumberjackInputFactory(sink, reactor, max_inflated=RECEIVER_LIMIT),
        lambda: LumberjackTransmitter(reactor, plain, timeout=TIMEOUT),
    ),
}


def event(n: int, size: int = TEXT) -> dict:
    # random-looking text, so that a compressed body is not much smaller than its JSON
    return {"n": n, "text": (str(n) * size).encode().hex()[:size]}


@defer.inlineCallbacks
def running(wire: str, sink, tmp_path):
    make_input, make_transmitter = WIRES[wire]
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(make_input(sink))
    dead = DeadLetterFile(str(tmp_path / "dead.ndjson"), reactor)
    output = Output(
        make_transmitter(),
        [Host("127.0.0.1", port.getHost().port)],
        reactor,
        batch_size=125,
        batch_delay=0.01,
        batch_max_bytes=BATCH_MAX_BYTES,
        dead_letter=dead,
    )
    output.startService()
    return port, output


@defer.inlineCallbacks
def stop(port, output):
    stopped = output.stopService()
    output.abort_attempts()
    yield stopped
    yield port.stopListening()


def dead_letters(tmp_path) -> list[dict]:
    path = tmp_path / "dead.ndjson"
    if not path.exists():
        return []
    return [unwrap(orjson.loads(line)) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("wire", sorted(WIRES))
@pytest_twisted.inlineCallbacks
def test_a_batch_over_the_receivers_limit_is_cut_and_every_event_arrives(wire, tmp_path):
    sink = HeldSink(auto=True)
    port, output = yield running(wire, sink, tmp_path)
    try:
        yield output.send([event(n) for n in range(100)]).addTimeout(TIMEOUT, reactor)
        assert sorted(e["n"] for e in sink.events) == list(range(100))
        fit = BATCH_MAX_BYTES // len(orjson.dumps(event(99)))  # events per part, at most
        assert max(len(batch) for batch in sink.batches) == fit
        assert len(sink.batches) == -(-100 // fit)
        assert output.stats.dead_lettered == output.stats.dropped == 0
        assert dead_letters(tmp_path) == []
    finally:
        yield stop(port, output)


@pytest.mark.parametrize("wire", sorted(WIRES))
@pytest_twisted.inlineCallbacks
def test_an_event_over_the_bound_goes_alone_and_arrives(wire, tmp_path):
    sink = HeldSink(auto=True)
    port, output = yield running(wire, sink, tmp_path)
    try:
        events = [event(0, 100), event(1, 3 * BATCH_MAX_BYTES), event(2, 100)]
        yield output.send(events).addTimeout(TIMEOUT, reactor)
        assert [[e["n"] for e in batch] for batch in sink.batches] == [[0], [1], [2]]
        assert output.stats.dead_lettered == 0
    finally:
        yield stop(port, output)


@pytest_twisted.inlineCallbacks
def test_an_event_over_the_receivers_limit_is_the_only_one_dead_lettered(tmp_path):
    # the native receiver refuses it alone with 413; its batch-mates arrive
    sink = HeldSink(auto=True)
    port, output = yield running("native", sink, tmp_path)
    try:
        huge = event(1, 2 * RECEIVER_LIMIT)
        sends = [output.send([e]) for e in (event(0), huge, event(2))]
        results = yield defer.DeferredList(sends, consumeErrors=True).addTimeout(TIMEOUT, reactor)
        assert [ok for ok, _ in results] == [True, False, True]
        assert results[1][1].check(DeadLettered)
        assert sorted(e["n"] for e in sink.events) == [0, 2]
        assert [e["n"] for e in dead_letters(tmp_path)] == [1]
        assert output.stats.dead_lettered == 1 and output.stats.acknowledged == 2
    finally:
        yield stop(port, output)
