"""Metrics and health (``twisted_logstash/metrics``): the collectors' values for a known exchange
on both wires (our output into our input, over real sockets on 127.0.0.1), the framed test
client's window counted by the input, refusals by status, ``/health`` while draining and while
every host is isolated, and the per-host record of the balancer (on a Clock).

Every scrape goes through a real ``MetricsService`` over HTTP and is parsed with
prometheus_client's own parser."""

from __future__ import annotations

import orjson
import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from support_http import connect
from support_lumberjack import HeldSink, ack, json_frame, window
from support_transmitter import HANG, FakeTransmitter
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, globalLogPublisher

from twisted_logstash.errors import RetriableError
from twisted_logstash.metrics.input import InputCollector, InputHealth
from twisted_logstash.metrics.output import OutputCollector, OutputHealth
from twisted_logstash.metrics.server import MetricsService
from twisted_logstash.metrics.workers import WorkerStats
from twisted_logstash.pipeline.balancer import Balancer, reason_key
from twisted_logstash.pipeline.output import Output
from twisted_logstash.transport.hosts import Host
from twisted_logstash.transport.inputservice import InputService
from twisted_logstash.transport.inputstats import InputStats, Timings, refusal_of
from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter
from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory
from twisted_logstash.wires.native.client import HttpTransmitter
from twisted_logstash.wires.native.server import HttpInputFactory

TIMEOUT = 30.0


# -- helpers ------------------------------------------------------------------------------------


class Scraper:
    """A MetricsService on 127.0.0.1:0 for one collector and health, read over HTTP."""

    def __init__(self, collector, health):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        self.service = MetricsService(registry, health, "127.0.0.1", 0, reactor)

    @defer.inlineCallbacks
    def start(self):
        self.service.startService()
        port = yield self.service.listening
        self.port = port.getHost().port
        return self

    @defer.inlineCallbacks
    def get(self, path):
        """(status, body, content type) of ``GET path``."""
        return (yield get(self.port, path))

    @defer.inlineCallbacks
    def metrics(self):
        """{(sample name, frozenset of labels): value} of one scrape."""
        code, text, _ = yield self.get("/metrics")
        assert code == 200
        return samples(text)

    def stop(self):
        return self.service.stopService()


@defer.inlineCallbacks
def get(port: int, path: str):
    """(status, body, content type) of ``GET path`` on 127.0.0.1:``port``, read to the close."""
    client = yield connect(port)
    client.send(f"GET {path} HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n".encode())
    yield client.wait_closed()
    head, _, body = client.received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    kind = [
        line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("content-type:")
    ]
    return status, body.decode(), kind


def samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(scrape: dict, name: str, **labels) -> float:
    return scrape[(name, frozenset(labels.items()))]


class Receiver:
    """One of our inputs on 127.0.0.1, with a sink that takes every batch at once."""

    def __init__(self, factory_for):
        self.sink = HeldSink(auto=True)
        self.factory = factory_for(self.sink)
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.service = InputService(endpoint, self.factory, reactor, drain_timeout=5.0)

    @defer.inlineCallbacks
    def start(self):
        self.service.startService()
        port = yield self.service.listening
        self.host = Host("127.0.0.1", port.getHost().port)
        return self


def native_factory(sink, **kw):
    return HttpInputFactory(sink, reactor, **kw)


def framed_factory(sink, **kw):
    return LumberjackInputFactory(sink, reactor, **kw)


def native_transmitter(**kw):
    def make(host):
        endpoint = TCP4ClientEndpoint(reactor, host.host, host.port, timeout=5)
        return HttpTransmitter(reactor, lambda _: endpoint, timeout=10.0, **kw)

    return make


def framed_transmitter(host):
    endpoint = TCP4ClientEndpoint(reactor, host.host, host.port, timeout=5)
    return LumberjackTransmitter(reactor, lambda _: endpoint, timeout=10.0)


# -- a known exchange, both wires ----------------------------------------------------------------

WIRES = [
    pytest.param(native_factory, native_transmitter(), "http", "requests_total", id="native"),
    pytest.param(framed_factory, framed_transmitter, "lumberjack", "windows_total", id="framed"),
]


@pytest.mark.parametrize(("factory_for", "transmitter_for", "protocol", "batches"), WIRES)
@pytest_twisted.inlineCallbacks
def test_a_known_exchange_is_counted_on_both_sides(factory_for, transmitter_for, protocol, batches):
    receiver = yield Receiver(factory_for).start()
    output = Output(transmitter_for(receiver.host), [receiver.host], reactor, batch_size=100)
    output.startService()
    inbound = yield Scraper(
        InputCollector(lambda: receiver.factory.stats, protocol), InputHealth(receiver.service)
    ).start()
    outbound = yield Scraper(OutputCollector(output), OutputHealth(output)).start()
    try:
        yield output.send([{"n": n} for n in range(1000)]).addTimeout(TIMEOUT, reactor)
        got = yield inbound.metrics()
        sent = yield outbound.metrics()
    finally:
        yield output.stopService()
        yield receiver.service.stopService()
        yield inbound.stop()
        yield outbound.stop()

    assert value(got, "logstash_input_events_received_total") == 1000
    assert value(got, "logstash_input_events_acknowledged_total") == 1000
    assert value(got, "logstash_input_events_refused_total") == 0
    assert value(got, f"logstash_input_{batches}") == 10
    assert value(got, "logstash_input_sink_seconds_count") == 10
    assert value(got, "logstash_input_sink_seconds_bucket", le="+Inf") == 10
    assert value(got, "logstash_input_received_bytes_total") > 1000
    assert value(got, "logstash_input_sent_bytes_total") > 0
    assert value(got, "logstash_input_connections_total") >= 1
    assert value(got, "logstash_input_too_many_requests_total") == 0
    stats = receiver.factory.stats  # the same numbers, for the colleagues' log lines
    assert (stats.events_received, stats.events_acknowledged, stats.batches) == (1000, 1000, 10)

    host = str(receiver.host)
    assert value(sent, "logstash_output_events_queued_total") == 1000
    assert value(sent, "logstash_output_events_acknowledged_total") == 1000
    assert value(sent, "logstash_output_batches_acknowledged_total") == 10
    assert value(sent, "logstash_output_events_attempted_total") == 1000
    assert value(sent, "logstash_output_retries_total") == 0
    assert value(sent, "logstash_output_events_dead_lettered_total") == 0
    assert value(sent, "logstash_output_queue_events", queue="memory") == 0
    assert value(sent, "logstash_output_batch_round_trip_seconds_count") == 10
    assert value(sent, "logstash_output_host_isolated", host=host) == 0
    assert value(sent, "logstash_output_host_in_flight", host=host) == 0
    assert value(sent, "logstash_output_host_isolations_total", host=host) == 0
    assert value(sent, "logstash_output_host_last_success_timestamp_seconds", host=host) > 1e9


@pytest_twisted.inlineCallbacks
def test_the_framed_test_clients_window_is_counted_by_the_input():
    receiver = yield Receiver(framed_factory).start()
    scraper = yield Scraper(
        InputCollector(lambda: receiver.factory.stats, "lumberjack"), InputHealth(receiver.service)
    ).start()
    client = yield connect(receiver.host.port)
    try:
        data = window(3) + b"".join(json_frame(n, b'{"n":%d}' % n) for n in (1, 2, 3))
        client.send(data)
        yield client.wait_bytes(ack(3))
        got = yield scraper.metrics()
        assert value(got, "logstash_input_connections_open") == 1
    finally:
        client.transport.loseConnection()
        yield client.wait_closed()
        yield receiver.service.stopService()
        yield scraper.stop()
    assert value(got, "logstash_input_events_received_total") == 3
    assert value(got, "logstash_input_events_acknowledged_total") == 3
    assert value(got, "logstash_input_windows_total") == 1
    assert value(got, "logstash_input_received_bytes_total") == len(data)
    assert value(got, "logstash_input_sent_bytes_total") == len(ack(3))


@pytest_twisted.inlineCallbacks
def test_refusals_are_counted_by_status_on_both_sides():
    receiver = yield Receiver(
        lambda sink: native_factory(sink, username="user", password="right")
    ).start()
    transmitter = native_transmitter(username="user", password="wrong")(receiver.host)
    output = Output(transmitter, [receiver.host], reactor, batch_size=10)
    output.startService()
    inbound = yield Scraper(
        InputCollector(lambda: receiver.factory.stats, "http"), InputHealth(receiver.service)
    ).start()
    outbound = yield Scraper(OutputCollector(output), OutputHealth(output)).start()
    try:
        result = yield output.send([{"n": n} for n in range(10)]).addTimeout(TIMEOUT, reactor)
    except Exception as e:
        result = e
    try:
        got = yield inbound.metrics()
        sent = yield outbound.metrics()
    finally:
        yield output.stopService()
        yield receiver.service.stopService()
        yield inbound.stop()
        yield outbound.stop()
    assert isinstance(result, Exception)  # refused for good: dropped (no dead-letter file)
    assert value(got, "logstash_input_refused_total", status="401") == 1
    assert value(got, "logstash_input_events_received_total") == 0
    host = str(receiver.host)
    assert value(sent, "logstash_output_host_failures_total", host=host, reason="status_4xx") == 1
    assert value(sent, "logstash_output_events_dropped_total") == 10
    # refused credentials are the host's: isolated, so that other hosts take the batches
    assert value(sent, "logstash_output_host_isolations_total", host=host) == 1


def test_too_many_requests_are_the_429_refusals():
    stats = InputStats()
    for answer in (b"HTTP/1.1 429 Too Many Requests\r\n\r\n", b"HTTP/1.1 429 x\r\n\r\n"):
        stats.refusal(refusal_of(answer, False))
    scrape = samples_of(InputCollector(lambda: stats, "http"))
    assert value(scrape, "logstash_input_too_many_requests_total") == 2
    assert value(scrape, "logstash_input_refused_total", status="429") == 2


def test_refusal_of_an_answer():
    assert refusal_of(b"HTTP/1.1 200 OK\r\n\r\n", False) is None
    assert refusal_of(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", True) is None
    assert refusal_of(b"HTTP/1.1 100 Continue\r\n\r\n", False) is None
    assert refusal_of(b"HTTP/1.1 413 Payload Too Large\r\n\r\n", True) == "413"
    assert refusal_of(b"2A\x00\x00\x00\x01", False) is None  # an ACK
    assert refusal_of(b"2A\x00\x00\x00\x01", True) is None  # an ACK, then a close (draining)
    assert refusal_of(b"", True) == "closed"


def samples_of(collector) -> dict:
    from prometheus_client import generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return samples(generate_latest(registry).decode())


# -- health ---------------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_input_health_is_ok_while_running_and_503_while_draining():
    sink = HeldSink()
    receiver = Receiver(framed_factory)
    receiver.sink = sink
    receiver.factory.sink = sink
    yield receiver.start()
    scraper = yield Scraper(
        InputCollector(lambda: receiver.factory.stats, "lumberjack"), InputHealth(receiver.service)
    ).start()
    client = yield connect(receiver.host.port)
    try:
        code, text, kind = yield scraper.get("/health")
        assert (code, text) == (200, "ok\n")
        assert kind == ["text/plain; charset=utf-8"]
        arrived = sink.next_batch()
        client.send(window(1) + json_frame(1, b"{}"))
        yield arrived.addTimeout(TIMEOUT, reactor)
        stopping = receiver.service.stopService()  # drains: waits for the window with the sink
        code, text, _ = yield scraper.get("/health")
        assert (code, text) == (503, "draining\n")
        got = yield scraper.metrics()
        assert value(got, "logstash_input_events_received_total") == 1
        assert value(got, "logstash_input_events_acknowledged_total") == 0
        sink.release()
        yield stopping
    finally:
        client.transport.loseConnection()
        yield scraper.stop()
    assert receiver.factory.stats.events_acknowledged == 1


@pytest_twisted.inlineCallbacks
def test_metrics_content_type_and_unknown_path():
    stats = InputStats()
    healthy = OutputHealthStub(True, "ok")
    scraper = yield Scraper(InputCollector(lambda: stats, "http"), healthy).start()
    try:
        code, text, kind = yield scraper.get("/metrics")
        assert code == 200
        assert kind[0].startswith("text/plain; version=")
        assert "logstash_input_events_received_total 0.0" in text
        code, _, _ = yield scraper.get("/nothing")
        assert code == 404
    finally:
        yield scraper.stop()


class OutputHealthStub:
    def __init__(self, ok, reason):
        self.answer = (ok, reason)

    def health(self):
        return self.answer


def test_output_health_is_503_when_every_host_is_isolated_and_while_draining():
    clock = Clock()
    a, b = Host("127.0.0.1", 1), Host("127.0.0.1", 2)
    fake = FakeTransmitter(clock)
    fake.script(a, HANG)
    fake.script(b, HANG)
    output = Output(fake, [a, b], clock, batch_size=1, batch_delay=0, cooloff=60)
    output.log = Logger(observer=lambda event: None)
    output.startService()
    health = OutputHealth(output)
    assert health.health() == (True, "ok")
    output.send([{"n": 1}, {"n": 2}])
    first, second = fake.attempts[:2]
    first.retry("connection refused", None)
    assert health.health() == (True, "ok")  # b is not isolated
    second.retry("connection refused", None)
    ok, reason = health.health()
    assert not ok
    assert reason == "every host is isolated: 127.0.0.1:1, 127.0.0.1:2"
    clock.advance(61)  # the cool-off ended (the retries succeed): the hosts may take work again
    assert health.health() == (True, "ok")
    output.stopService()
    assert health.health() == (False, "draining")


def test_the_memory_queue_in_bytes_is_estimated_from_the_json_encoded_so_far():
    """Issue 14: queue bytes for the memory queue too: its events times the mean JSON size of
    the events the transmitter encoded (it measures them once per batch anyway)."""
    clock = Clock()
    host = Host("127.0.0.1", 1)
    fake = FakeTransmitter(clock)
    fake.script(host, HANG)
    output = Output(fake, [host], clock, batch_size=10, batch_delay=0)
    output.log = Logger(observer=lambda event: None)
    output.startService()
    assert (
        value(samples_of(OutputCollector(output)), "logstash_output_queue_bytes", queue="memory")
        == 0
    )
    output.send([{"n": n} for n in range(30)])
    fake.json_events, fake.json_bytes = 10, 250  # what a real transmitter counts in encode
    got = samples_of(OutputCollector(output))
    held = value(got, "logstash_output_queue_events", queue="memory")
    assert held == 10  # the first batch hangs, the other two were acknowledged
    assert value(got, "logstash_output_queue_bytes", queue="memory") == held * 25
    assert value(got, "logstash_output_encoded_bytes_total") == 250
    output.stopService()


@pytest.mark.parametrize("wire", ["http", "lumberjack"])
def test_transmitters_count_the_json_they_encode(wire):
    events = [{"message": "x" * n} for n in range(5)]
    json = sum(len(orjson.dumps(event)) for event in events)
    if wire == "http":
        transmitter = HttpTransmitter(Clock(), lambda host: None)
    else:
        transmitter = LumberjackTransmitter(Clock(), lambda host: None)
    transmitter.encode_within(events, 1 << 20)
    assert (transmitter.json_events, transmitter.json_bytes) == (5, json)


# -- the balancer's record -----------------------------------------------------------------------


@pytest.fixture
def logged():
    events = []

    def observer(event):
        if event.get("log_namespace") == "twisted_logstash.pipeline.balancer":
            events.append(event)

    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


def lines(events):
    from twisted.logger import formatEvent

    return [(event["log_level"], formatEvent(event)) for event in events]


def test_isolation_and_return_are_one_info_line_each_not_one_per_retry(logged):
    clock = Clock()
    a = Host("127.0.0.1", 9800)
    balancer = Balancer([a], clock, cooloff=60)
    for _ in range(5):  # retries within the cool-off: still the same isolation
        balancer.pick()
        balancer.failed(a, RetriableError("connection refused", a))
        clock.advance(1)
    balancer.pick()
    balancer.succeeded(a)
    balancer.pick()
    balancer.succeeded(a)
    assert lines(logged) == [
        (LogLevel.info, "host 127.0.0.1:9800 isolated for 60 s: connection refused"),
        (LogLevel.info, "host 127.0.0.1:9800 is back"),
    ]
    assert balancer.isolations() == [("127.0.0.1:9800", 1, "connection refused")]
    record = balancer.record(a)
    assert record.failures == {"refused": 5}
    assert record.last_success == clock.seconds()


def test_isolations_counts_each_isolation_with_its_last_reason():
    clock = Clock()
    a, b = Host("a.example", 9800), Host("::1", 5044)
    balancer = Balancer([a, b], clock, cooloff=10)
    balancer.pick()
    balancer.failed(a, RetriableError("HTTP 503 Service Unavailable", a, 503))
    clock.advance(11)  # cool-off over, still failing: isolated again
    assert {balancer.pick(), balancer.pick()} == {a, b}
    balancer.failed(a, RetriableError("timed out after 60 s", a))
    balancer.succeeded(b)
    assert balancer.isolations() == [("a.example:9800", 2, "timed out after 60 s")]
    assert balancer.record(a).failures == {"status_5xx": 1, "timeout": 1}
    assert balancer.record(b).times_isolated == 0


def test_a_cancelled_attempt_isolates_nothing(logged):
    clock = Clock()
    a = Host("a.example", 9800)
    balancer = Balancer([a], clock)
    balancer.pick()
    balancer.failed(a, defer.CancelledError())
    assert balancer.isolations() == []
    assert lines(logged) == []


@pytest.mark.parametrize(
    ("error", "key"),
    [
        (RetriableError("HTTP 429 Too Many Requests", None, 429), "status_429"),
        (RetriableError("HTTP 502 Bad Gateway", None, 502), "status_5xx"),
        (RetriableError("connection refused by 127.0.0.1:1", None), "refused"),
        (RetriableError("no answer within 60 s", None), "timeout"),
        (RetriableError("TLS handshake failed: certificate verify failed", None), "tls"),
        (RetriableError("connection closed by the server", None), "closed"),
        (RetriableError("protocol error: bad ACK", None), "protocol"),
        (RetriableError("something else", None), "other"),
        (defer.CancelledError(), "cancelled"),
        (None, "other"),
    ],
)
def test_reason_keys(error, key):
    assert reason_key(error) == key


# -- the sum of workers ---------------------------------------------------------------------------


def report(events: int, connections: int = 0) -> bytes:
    stats = InputStats()
    stats.events_received = stats.events_acknowledged = events
    stats.batches = events // 10
    stats.connections_open = connections
    stats.sink.observe(0.002)
    import json

    return (json.dumps(stats.snapshot()) + "\n").encode()


def test_workers_sum_and_a_restarted_worker_neither_goes_back_nor_counts_twice():
    total = WorkerStats()
    one, two, three = object(), object(), object()
    total.received(one, report(100, 2))
    data = report(50, 1)
    total.received(two, data[:7])  # a report cut anywhere waits for its end
    assert total.total().events_received == 100
    total.received(two, data[7:])
    assert total.total().events_received == 150
    assert total.total().connections_open == 3
    total.received(one, report(120, 1) + report(130, 1))  # the newest line counts
    assert total.total().events_received == 180
    total.ended(one)  # worker 1 ended; its restart (three) starts from zero
    assert total.total().events_received == 180
    assert total.total().connections_open == 1
    total.received(three, report(5))
    summed = total.total()
    assert summed.events_received == 185
    assert summed.sink.count == 3
    assert summed.batches == 13 + 5 + 0


def test_timings_buckets():
    timings = Timings((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 2.0):
        timings.observe(seconds)
    assert timings.counts == [2, 1, 1]
    assert timings.count == 4
    assert timings.total == pytest.approx(2.65)


def test_a_report_without_its_line_end_is_held_up_to_a_bound_in_bytes():
    """What a worker writes without ending the line is kept for its next write, but never more
    than MAX_REPORT_BYTES: a broken worker cannot grow the parent."""
    from twisted_logstash.metrics.workers import MAX_REPORT_BYTES

    stats = WorkerStats()
    for _ in range(4):
        stats.received("w", b"x" * MAX_REPORT_BYTES)
    assert len(stats._partial.get("w", b"")) <= MAX_REPORT_BYTES
    stats.received("w", b'\n{"events_acknowledged": 5}\n')
    assert stats.total().events_acknowledged == 5
