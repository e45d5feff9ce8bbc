"""Pipeline semantics: every event of every input to every output, acknowledged only once every
output has it (acknowledged downstream, or held by a disk queue), and ``@metadata`` never handed
to an output."""

from __future__ import annotations

import pytest
from support_transmitter import HANG, OK, FakeTransmitter
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import Logger

from twisted_logstash.codecs.events import Decorations, without_metadata
from twisted_logstash.errors import DeadLettered, SinkUnavailable
from twisted_logstash.pipeline.diskqueue import DiskQueue
from twisted_logstash.pipeline.output import Output
from twisted_logstash.pipeline.sinks import FileSink, StdoutSink
from twisted_logstash.pipeline.sources import GeneratorSource
from twisted_logstash.pipelines.build import FanOut, Pipeline, SourceInput
from twisted_logstash.transport.hosts import Host

A = Host("a.example", 9800)


class Held:
    """An output whose deliveries wait for the test to settle them."""

    def __init__(self):
        self.calls: list[tuple[list[dict], defer.Deferred]] = []

    def deliver(self, events):
        d = defer.Deferred()
        self.calls.append((events, d))
        return d


class Outcome:
    def __init__(self, d):
        self.results = []
        d.addBoth(self.results.append)

    @property
    def fired(self):
        return bool(self.results)


def test_every_output_gets_every_event_and_the_input_waits_for_all():
    one, two = Held(), Held()
    fanout = FanOut([one, two])
    outcome = Outcome(fanout.deliver([{"n": 1}, {"n": 2}]))
    assert [events for events, _ in one.calls] == [[{"n": 1}, {"n": 2}]]
    assert [events for events, _ in two.calls] == [[{"n": 1}, {"n": 2}]]
    one.calls[0][1].callback(None)
    assert not outcome.fired  # the second output does not have them yet
    two.calls[0][1].callback(None)
    assert outcome.results == [None]


def test_one_failing_output_fails_the_batch_with_its_error():
    one, two = Held(), Held()
    outcome = Outcome(FanOut([one, two]).deliver([{"n": 1}]))
    one.calls[0][1].callback(None)
    two.calls[0][1].errback(SinkUnavailable("down"))
    (failure,) = outcome.results
    assert failure.check(SinkUnavailable)  # the input answers it as the output's own refusal


def test_dead_lettered_events_count_as_had():
    one = Held()
    outcome = Outcome(FanOut([one]).deliver([{"n": 1}]))
    one.calls[0][1].errback(DeadLettered("refused for good"))
    assert outcome.results == [None]


def test_every_output_gets_its_own_list_of_the_same_events():
    one, two = Held(), Held()
    events = [{"n": 1, "@metadata": {"ip_address": "10.0.0.1"}}]
    FanOut([one, two]).deliver(events)
    ((handed_one, _),) = one.calls
    ((handed_two, _),) = two.calls
    assert handed_one == handed_two == events and handed_one is not handed_two


def test_a_stopping_fanout_asks_to_retry():
    fanout = FanOut([Held()])
    fanout.stopping = True
    (failure,) = Outcome(fanout.deliver([{"n": 1}])).results
    assert failure.check(SinkUnavailable)


def _output(clock, fake, **kw):
    output = Output(fake, [A], clock, batch_delay=0, **kw)
    output.log = Logger(observer=lambda event: None)
    output.startService()
    return output


def test_a_disk_queue_output_has_the_events_once_it_holds_them(tmp_path):
    clock = Clock()
    fake = FakeTransmitter(clock, default=HANG)
    queue = DiskQueue(str(tmp_path / "q"), capacity=100, reactor=clock)
    output = _output(clock, fake, queue=queue)
    outcome = Outcome(FanOut([output]).deliver([{"n": 1}]))
    clock.advance(0)
    assert outcome.results == [None]  # held on disk; the receiver has not answered
    assert fake.attempts and fake.attempts[0].hung
    fake.attempts[0].succeed()
    output.stopService()
    queue.close()


def test_a_memory_queue_output_has_the_events_once_acknowledged():
    clock = Clock()
    fake = FakeTransmitter(clock, default=HANG)
    output = _output(clock, fake)
    outcome = Outcome(output.hold([{"n": 1}]))
    clock.advance(0)
    assert not outcome.fired
    fake.attempts[0].succeed()
    assert outcome.results == [None]


def test_a_source_input_is_paused_while_its_window_is_full_and_retries_failures():
    clock = Clock()
    one = Held()
    source = GeneratorSource(0, clock, slice_size=2, host_name="h")
    feeding = SourceInput(source, FanOut([one]), Decorations(tags=("t",)), clock, window=2)
    feeding.startService()
    clock.advance(0)
    clock.advance(0)
    clock.advance(0)
    assert len(one.calls) == 2 and source.paused
    first, d = one.calls[0]
    assert first[0]["tags"] == ["t"] and first[0]["@version"] == "1"
    d.errback(SinkUnavailable("down"))
    clock.advance(1)  # the backoff
    assert one.calls[2][0] == first  # handed again, whole
    one.calls[1][1].callback(None)
    assert not source.paused
    feeding.stopService()


@pytest.mark.parametrize("outputs", [1, 2])
def test_a_finite_pipeline_stops_once_every_output_has_every_event(outputs):
    clock = Clock()
    fakes = [FakeTransmitter(clock, default=OK) for _ in range(outputs)]
    built = [_output(clock, fake) for fake in fakes]
    fanout = FanOut(built)
    source = GeneratorSource(5, clock, slice_size=2, host_name="h")
    feeding = SourceInput(source, fanout, Decorations(), clock)
    pipeline = Pipeline([feeding], built, fanout, clock)
    stopped = []
    clock.running = True
    clock.stop = lambda: stopped.append(True)
    pipeline.startService()
    for _ in range(10):
        clock.advance(0.1)
    assert stopped == [True]
    for fake in fakes:
        assert sorted(e["sequence"] for e in fake.delivered) == [0, 1, 2, 3, 4]


def test_a_finite_pipeline_with_a_disk_queue_stops_once_the_queue_is_delivered(tmp_path):
    clock = Clock()
    fake = FakeTransmitter(clock, default=HANG)
    queue = DiskQueue(str(tmp_path / "q"), capacity=100, reactor=clock)
    output = _output(clock, fake, queue=queue)
    fanout = FanOut([output])
    source = GeneratorSource(3, clock, host_name="h")
    pipeline = Pipeline(
        [SourceInput(source, fanout, Decorations(), clock)], [output], fanout, clock
    )
    stopped = []
    clock.running = True
    clock.stop = lambda: stopped.append(True)
    pipeline.startService()
    clock.advance(0)
    clock.advance(0)
    assert pipeline.inputs[0].finished.called  # the queue holds every event: the input is done
    assert stopped == []  # but they are not delivered yet
    fake.attempts[0].succeed()
    clock.advance(0)
    assert stopped == [True]
    output.stopService()
    queue.close()


# -- @metadata never leaves the process --------------------------------------------------------


def test_without_metadata_keeps_the_callers_events():
    events = [{"n": 1, "@metadata": {"ip_address": "10.0.0.1"}}, {"n": 2}]
    assert without_metadata(events) == [{"n": 1}, {"n": 2}]
    assert events[0]["@metadata"] == {"ip_address": "10.0.0.1"}
    plain = [{"n": 1}]
    assert without_metadata(plain) is plain  # nothing to take off: no copy


def test_an_output_never_sends_metadata():
    clock = Clock()
    fake = FakeTransmitter(clock, default=OK)
    output = _output(clock, fake)
    events = [{"n": 1, "@metadata": {"route": "x"}}]
    outcome = Outcome(output.send(events))
    clock.advance(0)
    assert outcome.results == [None]
    assert fake.delivered == [{"n": 1}]
    assert events[0]["@metadata"] == {"route": "x"}


def test_stdout_and_file_never_write_metadata(tmp_path):
    import io

    stream = io.BytesIO()
    StdoutSink(stream).deliver([{"n": 1, "@metadata": {"x": 1}}])
    assert stream.getvalue() == b'{"n":1}\n'
    sink = FileSink(str(tmp_path / "out.ndjson"))
    sink.deliver([{"n": 1, "@metadata": {"x": 1}}])
    sink.close()
    assert (tmp_path / "out.ndjson").read_bytes() == b'{"n":1}\n'
