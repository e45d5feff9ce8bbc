"""InputService: listen while running; on stop, stop listening, drain, and cut a drain short."""

from __future__ import annotations

import pytest_twisted
from support_http import TIMEOUT, connect, logstash_body, manticore_request
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock

from twisted_logstash.pipeline.sinks import CallableSink
from twisted_logstash.transport.inputservice import InputService
from twisted_logstash.wires.native.server import HttpInputFactory


def endpoint():
    return TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")


class Held:
    def __init__(self) -> None:
        self.held: list[defer.Deferred] = []
        self.first: defer.Deferred = defer.Deferred()

    def __call__(self, events):
        d: defer.Deferred = defer.Deferred()
        self.held.append(d)
        if not self.first.called:
            self.first.callback(None)
        return d


@pytest_twisted.inlineCallbacks
def test_listens_and_answers_then_stops_listening():
    service = InputService(endpoint(), HttpInputFactory(CallableSink(lambda events: None)))
    service.startService()
    port = yield service.listening
    assert service.port is port
    number = port.getHost().port
    client = yield connect(number)
    response = yield client.request(manticore_request(logstash_body([{"a": 1}])))
    assert response.status == 200
    client.transport.loseConnection()
    yield client.wait_closed()
    yield service.stopService()
    assert service.port is None
    failed = []
    try:
        yield connect(number)
    except Exception as error:  # refused: nothing listens any more
        failed.append(error)
    assert failed


@pytest_twisted.inlineCallbacks
def test_stop_waits_for_the_request_in_flight_and_closes_the_connection():
    held = Held()
    service = InputService(endpoint(), HttpInputFactory(CallableSink(held), reactor))
    service.startService()
    port = yield service.listening
    client = yield connect(port.getHost().port)
    answered = client.request(manticore_request(logstash_body([{"a": 1}])))
    yield held.first.addTimeout(TIMEOUT, reactor)
    stopped = service.stopService()
    assert not stopped.called
    held.held[0].callback(None)
    response = yield answered
    assert response.status == 200
    assert response.header("connection") == "close"
    yield client.wait_closed()
    yield stopped


@pytest_twisted.inlineCallbacks
def test_a_drain_that_takes_too_long_is_cut_short():
    held = Held()
    clock = Clock()
    factory = HttpInputFactory(CallableSink(held), reactor)
    service = InputService(endpoint(), factory, clock, drain_timeout=5.0)
    service.startService()
    port = yield service.listening
    client = yield connect(port.getHost().port)
    client.send(manticore_request(logstash_body([{"a": 1}])))
    yield held.first.addTimeout(TIMEOUT, reactor)
    stopped = service.stopService()
    clock.advance(4.0)
    assert not stopped.called
    clock.advance(1.5)
    yield client.wait_closed()  # the connection was dropped
    assert client.responses == []
    held.held[0].callback(None)
    yield stopped


@pytest_twisted.inlineCallbacks
def test_any_factory_without_drain():
    service = InputService(endpoint(), protocol.Factory.forProtocol(protocol.Protocol))
    service.startService()
    yield service.listening
    yield service.stopService()
    assert service.port is None
