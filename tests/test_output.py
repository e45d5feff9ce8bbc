"""The output's policy on a Clock and a scripted transmitter: batching, balancing, retry,
dead letters, send() semantics, flow control, drain and stop."""

import collections

import orjson
import pytest
import pytest_twisted
from support_transmitter import CRASH, HANG, OK, RETRY, TERMINAL, FakeTransmitter
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.logger import Logger
from zope.interface import alsoProvides, implementer

from twisted_logstash.codecs.ndjson import NdjsonError
from twisted_logstash.errors import ConfigurationError, DeadLettered
from twisted_logstash.interfaces import ICursorQueue, IEventQueue, ISource
from twisted_logstash.pipeline.deadletter import DeadLetterFile, unwrap
from twisted_logstash.pipeline.output import Dropped, Output, OutputStopped
from twisted_logstash.pipeline.position import ReadPosition
from twisted_logstash.pipeline.queue import MemoryQueue
from twisted_logstash.pipeline.sources import FileSource, GeneratorSource
from twisted_logstash.transport.hosts import Host

A = Host("a.example", 9800)
B = Host("b.example", 9800)
C = Host("c.example", 9800)


def events(start, stop):
    return [{"n": n} for n in range(start, stop)]


class Outcome:
    """What a Deferred did so far, without leaving unhandled failures behind."""

    def __init__(self, d):
        self.results = []
        d.addBoth(self.results.append)

    @property
    def fired(self):
        return bool(self.results)

    @property
    def value(self):
        assert self.results, "not fired"
        return self.results[0]

    def failed_with(self, kind):
        return self.fired and hasattr(self.value, "check") and self.value.check(kind) is not None


@pytest.fixture
def clock():
    return Clock()


def tick(clock, seconds, step=0.1):
    """Let ``seconds`` pass in small steps, so chained timers (retries) run as they would."""
    for _ in range(round(seconds / step)):
        clock.advance(step)


def make(clock, fake, hosts=(A,), start=True, **kw):
    output = Output(fake, list(hosts), clock, **kw)
    output.log = Logger(observer=lambda event: None)
    if start:
        output.startService()
    return output


# -- batching ----------------------------------------------------------------------------


def test_full_batches_leave_at_once_and_the_rest_after_the_delay(clock):
    fake = FakeTransmitter(clock)
    output = make(clock, fake, batch_size=3)
    sent = Outcome(output.send(events(0, 7)))
    assert [a.events for a in fake.attempts] == [events(0, 3), events(3, 6)]
    clock.advance(0.049)
    assert len(fake.attempts) == 2 and not sent.fired
    clock.advance(0.001)
    assert fake.attempts[2].events == events(6, 7)
    assert sent.value is None


def test_the_delay_counts_from_the_first_waiting_event(clock):
    fake = FakeTransmitter(clock)
    output = make(clock, fake, batch_size=10, batch_delay=0.05)
    output.send(events(0, 1))
    clock.advance(0.03)
    output.send(events(1, 2))
    clock.advance(0.019)
    assert fake.attempts == []
    clock.advance(0.001)
    assert [a.events for a in fake.attempts] == [events(0, 2)]


def test_each_batch_is_encoded_once_and_retried_with_the_same_payload(clock):
    fake = FakeTransmitter(clock)
    fake.script(A, RETRY, RETRY, OK)
    output = make(clock, fake, batch_size=2)
    sent = Outcome(output.send(events(0, 2)))
    tick(clock, 1)
    assert len(fake.attempts) == 3
    assert fake.encodes == 1
    assert all(a.payload is fake.attempts[0].payload for a in fake.attempts)
    assert sent.value is None


def test_batches_in_flight_are_limited_and_the_next_starts_when_one_ends(clock):
    fake = FakeTransmitter(clock, default=HANG)
    output = make(clock, fake, batch_size=2, max_in_flight=3)
    output.send(events(0, 10))
    clock.advance(1)
    assert [a.events for a in fake.attempts] == [events(0, 2), events(2, 4), events(4, 6)]
    assert output.in_flight == 3
    fake.attempts[1].succeed()
    assert len(fake.attempts) == 4 and fake.attempts[3].events == events(6, 8)


def test_a_delayed_batch_leaves_as_soon_as_a_slot_frees(clock):
    fake = FakeTransmitter(clock, default=HANG)
    output = make(clock, fake, batch_size=5, max_in_flight=1)
    output.send(events(0, 5))
    output.send(events(5, 6))
    clock.advance(1)  # the delay passed while the only slot was taken
    assert len(fake.attempts) == 1
    fake.attempts[0].succeed()
    assert fake.attempts[1].events == events(5, 6)


# -- batches bounded by bytes (issue 11) ----------------------------------------------------
# {"n":0} is 7 bytes of JSON, {"n":10} 8: a bound of 25 bytes takes three of the first ones.


class AckCounting(MemoryQueue):
    """A memory queue recording the tickets acknowledged."""

    def __init__(self, capacity=4096):
        super().__init__(capacity)
        self.acked = []

    def ack(self, ticket):
        self.acked.append(ticket)
        super().ack(ticket)


def test_a_batch_is_bounded_by_the_bytes_of_its_encoded_events_too(clock):
    fake = FakeTransmitter(clock)
    output = make(clock, fake, batch_size=10, batch_max_bytes=25)
    sent = Outcome(output.send(events(0, 10)))
    assert [a.events for a in fake.attempts] == [
        events(0, 3),
        events(3, 6),
        events(6, 9),
        events(9, 10),
    ]
    assert fake.encodes == 1  # one get, encoded once, then cut
    assert sent.value is None
    assert output.stats.acknowledged == 10 and output.stats.batches == 4
    assert output.pending() == 0


def test_an_event_over_the_byte_bound_goes_in_a_batch_of_its_own(clock):
    fake = FakeTransmitter(clock)
    output = make(clock, fake, batch_size=10, batch_max_bytes=30)
    big = {"text": "x" * 100}
    batch = [{"n": 1}, {"n": 2}, big, {"n": 3}]
    sent = Outcome(output.send(batch))
    clock.advance(1)
    assert sent.value is None
    assert [a.events for a in fake.attempts] == [[{"n": 1}, {"n": 2}], [big], [{"n": 3}]]


def test_the_parts_of_a_cut_batch_keep_max_in_flight_and_its_ticket_is_acked_once(clock):
    fake = FakeTransmitter(clock, default=HANG)
    queue = AckCounting()
    output = make(clock, fake, batch_size=10, batch_max_bytes=25, max_in_flight=2, queue=queue)
    sent = Outcome(output.send(events(0, 10)))
    assert [a.events for a in fake.attempts] == [events(0, 3), events(3, 6)]
    assert output.in_flight == 2
    fake.attempts[1].succeed()
    assert [a.events for a in fake.attempts[2:]] == [events(6, 9)]
    fake.attempts[0].succeed()
    fake.attempts[2].succeed()
    assert queue.acked == [] and output.pending() == 10  # one part still out
    fake.attempts[3].succeed()
    assert len(queue.acked) == 1 and output.pending() == 0
    assert sent.value is None


def test_only_the_refused_part_of_a_cut_batch_is_dead_lettered(clock, tmp_path):
    fake = FakeTransmitter(clock)
    fake.script(A, OK, TERMINAL, OK)
    path = tmp_path / "dead.ndjson"
    dead = DeadLetterFile(str(path), clock)
    output = make(clock, fake, batch_size=10, batch_max_bytes=30, dead_letter=dead)
    big = {"text": "x" * 100}
    sends = [Outcome(output.send([event])) for event in ({"n": 1}, big, {"n": 2})]
    clock.advance(1)
    assert [a.events for a in fake.attempts] == [[{"n": 1}], [big], [{"n": 2}]]
    assert [unwrap(orjson.loads(line)) for line in path.read_bytes().splitlines()] == [big]
    assert sends[0].value is None and sends[2].value is None
    assert sends[1].failed_with(DeadLettered)
    assert output.stats.acknowledged == 2 and output.stats.dead_lettered == 1
    assert output.pending() == 0


def test_the_byte_bound_must_be_positive(clock):
    with pytest.raises(ConfigurationError, match="batch max bytes"):
        make(clock, FakeTransmitter(clock), batch_max_bytes=0)


# -- retry and balancing ---------------------------------------------------------------


def test_retries_follow_the_backoff_schedule_until_delivered(clock):
    fake = FakeTransmitter(clock)
    fake.always(A, RETRY)
    output = make(clock, fake, batch_delay=0)
    sent = Outcome(output.send(events(0, 1)))
    delays = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30, 30]
    for delay in delays:
        before = len(fake.attempts)
        due = fake.attempts[-1].time + delay
        clock.advance(due - 0.001 - clock.seconds())
        assert len(fake.attempts) == before
        clock.advance(0.002)
        assert len(fake.attempts) == before + 1
    gaps = [b.time - a.time for a, b in zip(fake.attempts, fake.attempts[1:], strict=False)]
    assert gaps == pytest.approx(delays, abs=0.002)
    assert output.stats.retries == len(delays) + 1  # the last failure waits for its retry
    assert not sent.fired
    fake.always(A, OK)
    clock.advance(30)
    assert sent.value is None
    assert output.stats.acknowledged == 1
    assert output.stats.sent == len(delays) + 2


def test_a_failing_host_is_isolated_for_the_cooloff_while_others_work(clock):
    fake = FakeTransmitter(clock)
    fake.always(A, RETRY)
    output = make(clock, fake, hosts=(A, B, C), batch_size=1, max_in_flight=1)
    outcomes = []
    for second in range(75):
        outcomes.append(Outcome(output.send([{"second": second}])))
        clock.advance(1)
    on_a = [a.time for a in fake.on(A)]
    assert on_a[0] == 0  # first pick, before anything failed
    assert on_a[1] >= 60  # isolated for the cool-off, then probed again
    assert {a.host for a in fake.attempts if 0 < a.time < 60} == {B, C}
    assert all(o.fired and o.value is None for o in outcomes[:-1])
    assert sorted(e["second"] for e in fake.delivered) == list(range(75))


def test_when_every_host_fails_retries_go_on_until_one_recovers(clock):
    fake = FakeTransmitter(clock)
    fake.always(A, RETRY)
    fake.always(B, RETRY)
    output = make(clock, fake, hosts=(A, B))
    sent = Outcome(output.send(events(0, 3)))
    tick(clock, 60)
    assert {a.host for a in fake.attempts} == {A, B}
    assert len(fake.attempts) > 8
    assert not sent.fired and fake.delivered == []
    fake.always(B, OK)
    tick(clock, 61)
    assert sent.value is None
    assert fake.delivered == events(0, 3)
    assert output.queue.pending() == 0


def test_an_unexpected_transmitter_error_is_retried_not_lost(clock):
    fake = FakeTransmitter(clock)
    fake.script(A, CRASH, OK)
    output = make(clock, fake)
    sent = Outcome(output.send(events(0, 1)))
    tick(clock, 1)
    assert sent.value is None
    assert output.stats.retries == 1


# -- terminal refusals ---------------------------------------------------------------------


def test_a_refused_batch_goes_to_the_dead_letter_file_and_send_fails(clock, tmp_path):
    path = tmp_path / "dead.ndjson"
    fake = FakeTransmitter(clock)
    fake.script(A, TERMINAL)
    output = make(clock, fake, batch_size=2, dead_letter=DeadLetterFile(str(path), clock))
    sent = Outcome(output.send(events(0, 2)))
    assert sent.failed_with(DeadLettered)
    assert not sent.failed_with(Dropped)
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [unwrap(r) for r in records] == events(0, 2)
    assert records[0]["dead_letter"]["reason"] == "HTTP 400 Bad Request"
    assert records[0]["dead_letter"]["host"] == "a.example:9800"
    assert records[0]["dead_letter"]["status"] == 400
    assert output.queue.pending() == 0
    assert output.stats.dead_lettered == 2
    assert not output.balancer.is_cooling_off(A), "the host answered: it is not isolated"
    # The output goes on with the next batch.
    later = Outcome(output.send(events(2, 4)))
    assert later.value is None


def test_refused_credentials_cool_their_host_off_and_the_other_takes_the_batches(clock, tmp_path):
    """401/403 are the host's configuration, not the batch's: under --on-refused continue that
    host is isolated, so that the next batches go to the host that takes them; a 400 (the
    batch's fault) leaves its host in turn (previous test)."""
    fake = FakeTransmitter(clock)
    fake.script(A, HANG)
    output = make(
        clock,
        fake,
        hosts=(A, B),
        batch_size=2,
        on_refused="continue",
        dead_letter=DeadLetterFile(str(tmp_path / "dead.ndjson"), clock),
    )
    first = Outcome(output.send(events(0, 2)))
    fake.on(A)[0].refuse("HTTP 401 Unauthorized", 401)
    assert first.failed_with(DeadLettered)
    assert output.balancer.is_cooling_off(A)
    later = Outcome(output.send(events(2, 4)))
    assert later.value is None
    assert [a.host for a in fake.attempts] == [A, B]


def test_without_a_dead_letter_file_a_refused_batch_is_logged_and_send_fails(clock):
    fake = FakeTransmitter(clock)
    fake.script(A, TERMINAL)
    output = make(clock, fake, batch_size=3)
    logged = []
    output.log = Logger(observer=logged.append)
    sent = Outcome(output.send(events(0, 3)))
    assert sent.failed_with(Dropped)
    errors = [e for e in logged if e["log_level"].name == "error"]
    assert len(errors) == 1 and errors[0]["count"] == 3
    assert output.stats.dropped == 3
    assert output.queue.pending() == 0


def test_a_dead_letter_file_that_cannot_be_written_drops_loudly(clock, tmp_path):
    fake = FakeTransmitter(clock)
    fake.script(A, TERMINAL)
    dead = DeadLetterFile(str(tmp_path), clock)  # a directory: appending fails
    output = make(clock, fake, batch_size=1, dead_letter=dead)
    logged = []
    output.log = Logger(observer=logged.append)
    sent = Outcome(output.send(events(0, 1)))
    assert sent.failed_with(Dropped)
    assert [e["count"] for e in logged if e["log_level"].name == "critical"] == [1]
    assert output.stats.dropped == 1


def test_a_batch_that_cannot_be_encoded_is_dead_lettered(clock, tmp_path):
    path = tmp_path / "dead.ndjson"
    fake = FakeTransmitter(clock)
    fake.encode_error = NdjsonError("event cannot be encoded as JSON")
    output = make(clock, fake, batch_size=1, dead_letter=DeadLetterFile(str(path), clock))
    bad = Outcome(output.send([{"unencodable": 1}]))
    good = Outcome(output.send(events(0, 1)))
    assert bad.failed_with(DeadLettered)
    assert good.value is None
    (record,) = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert record["event"] == {"unencodable": 1}
    assert "cannot encode" in record["dead_letter"]["reason"]


# -- send() -------------------------------------------------------------------------------


def test_send_fires_only_once_every_event_was_acknowledged(clock):
    fake = FakeTransmitter(clock, default=HANG)
    output = make(clock, fake, batch_size=2)
    sent = Outcome(output.send(events(0, 4)))
    assert len(fake.attempts) == 2
    fake.attempts[0].succeed()
    assert not sent.fired
    fake.attempts[1].succeed()
    assert sent.value is None


def test_send_calls_sharing_a_batch_each_fire_on_its_ack(clock):
    fake = FakeTransmitter(clock, default=HANG)
    output = make(clock, fake, batch_size=4)
    first = Outcome(output.send(events(0, 1)))
    second = Outcome(output.send(events(1, 5)))  # 3 join the first batch, 1 waits
    assert fake.attempts[0].events == events(0, 4)
    fake.attempts[0].succeed()
    assert first.value is None and not second.fired
    clock.advance(0.05)
    fake.attempts[1].succeed()
    assert second.value is None


def test_send_fails_once_settled_if_any_of_its_events_was_refused(clock, tmp_path):
    fake = FakeTransmitter(clock, default=HANG)
    dead = DeadLetterFile(str(tmp_path / "dead.ndjson"), clock)
    output = make(clock, fake, hosts=(A, B), batch_size=2, dead_letter=dead)
    sent = Outcome(output.send(events(0, 4)))
    fake.attempts[0].refuse()
    assert not sent.fired  # the other half is still in flight
    fake.attempts[1].succeed()
    assert sent.failed_with(DeadLettered)


def test_send_of_nothing_fires_at_once(clock):
    output = make(clock, FakeTransmitter(clock))
    assert Outcome(output.send([])).value is None


def test_events_sent_before_start_leave_at_start(clock):
    fake = FakeTransmitter(clock)
    output = make(clock, fake, start=False, batch_size=2)
    sent = Outcome(output.send(events(0, 2)))
    clock.advance(1)
    assert fake.attempts == []
    output.startService()
    assert sent.value is None


def test_events_already_in_the_queue_are_sent_at_start(clock):
    queue = MemoryQueue(10)
    queue.put(events(0, 3))  # as a disk queue would hold after a restart
    fake = FakeTransmitter(clock)
    make(clock, fake, queue=queue, batch_size=2)
    clock.advance(0.05)
    assert fake.delivered == events(0, 3)
    assert queue.pending() == 0


# -- flow control -------------------------------------------------------------------------


class RecordingQueue(MemoryQueue):
    """A memory queue that remembers the most events it ever held."""

    most = 0

    def put(self, events):
        d = super().put(events)
        self.most = max(self.most, self.pending())
        return d


def test_a_fast_source_never_overfills_the_queue_while_every_host_is_down(clock):
    fake = FakeTransmitter(clock)
    fake.always(A, RETRY)
    fake.always(B, RETRY)
    queue = RecordingQueue(1000)
    output = make(clock, fake, hosts=(A, B), queue=queue)
    source = GeneratorSource(1_000_000, clock, slice_size=300, host_name="test")
    output.attach(source)
    tick(clock, 60)
    assert queue.most == 1000
    assert source.paused
    assert source.events <= 1000 + 300
    assert output.stats.retries > 20
    assert not source.ended


def test_a_paused_source_resumes_once_delivery_recovers_and_everything_arrives(clock):
    fake = FakeTransmitter(clock)
    fake.always(A, RETRY)
    queue = RecordingQueue(500)
    output = make(clock, fake, queue=queue, max_in_flight=2)
    source = GeneratorSource(5000, clock, slice_size=200, host_name="test")
    output.attach(source)
    tick(clock, 5)
    assert source.paused and fake.delivered == []
    fake.always(A, OK)
    drained = None
    for _ in range(2000):
        clock.advance(0.1)
        if source.ended:
            drained = Outcome(output.drain())
            break
    clock.advance(1)
    assert drained is not None and drained.value is None
    assert sorted(e["sequence"] for e in fake.delivered) == list(range(5000))
    assert queue.most <= 500


@implementer(ISource, IPushProducer)
class ListSource:
    """A source that pushes given lists when told, and records what the output asked."""

    def __init__(self):
        self.calls = []
        self.consumer = None
        self.done = None
        self.finite = False

    def start(self, consumer):
        self.calls.append("start")
        self.consumer = consumer

    def pauseProducing(self):
        self.calls.append("pause")

    def resumeProducing(self):
        self.calls.append("resume")

    def stopProducing(self):
        self.calls.append("stop")


def test_events_over_the_queue_capacity_wait_in_order_and_the_source_is_paused(clock):
    fake = FakeTransmitter(clock, default=HANG)
    queue = RecordingQueue(4)
    output = make(clock, fake, queue=queue, batch_size=2, max_in_flight=1)
    source = ListSource()
    output.attach(source)
    source.consumer(events(0, 6))
    assert source.calls == ["start", "pause"]
    assert queue.most == 4 and output.pending() == 6
    sent = Outcome(output.send(events(6, 7)))  # a caller waits too, in order
    fake.attempts[0].succeed()
    assert queue.pending() == 4 and source.calls == ["start", "pause"]
    for _ in range(2):
        fake.hung()[0].succeed()
        clock.advance(0.05)
    assert source.calls == ["start", "pause", "resume"]
    clock.advance(0.05)
    fake.hung()[0].succeed()
    assert sent.value is None
    assert fake.delivered == events(0, 7)


def test_sources_attached_before_start_start_with_the_service(clock):
    output = make(clock, FakeTransmitter(clock), start=False)
    source = ListSource()
    output.attach(source)
    assert source.calls == []
    output.startService()
    assert source.calls == ["start"]


# -- what the output asks of its queue ------------------------------------------------------


class Declared:
    """A queue that lets the output reach nothing but what ``interface`` declares."""

    def __init__(self, queue, interface):
        self._queue = queue
        self._names = set(interface.names(all=True))
        self.puts = []  # the keyword arguments of every put
        alsoProvides(self, interface)

    def put(self, events, **kw):
        self.puts.append(kw)
        return self._queue.put(events, **kw)

    def __getattr__(self, name):
        if name not in self._names:
            raise AttributeError(f"{name} is not declared by the queue interface")
        return getattr(self._queue, name)


class CursorMemoryQueue(MemoryQueue):
    """A memory queue that remembers cursors, as a disk queue stores them with a put."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.cursors = {}

    def put(self, events, cursor=None):
        if cursor is not None:
            self.cursors[cursor[0]] = cursor[1]
        return super().put(events)

    def cursor(self, source_key):
        return self.cursors.get(source_key)


def test_the_output_uses_only_what_the_queue_interface_declares(clock):
    fake = FakeTransmitter(clock, default=HANG)
    queue = Declared(MemoryQueue(4), IEventQueue)
    output = make(clock, fake, queue=queue, batch_size=2, max_in_flight=1)
    source = ListSource()
    output.attach(source)
    source.consumer(events(0, 3), ReadPosition("file:/x", [10, 20, 30]))
    sent = Outcome(output.send(events(3, 6)))
    for _ in range(3):
        fake.hung()[0].succeed()
        clock.advance(0.05)
    assert sent.value is None and fake.delivered == events(0, 6)
    assert queue.puts == [{}, {}, {}]  # a plain queue is never handed a cursor
    assert Outcome(output.stopService()).value == 0


def test_a_cursor_queue_gets_the_position_after_each_put_s_last_event(clock):
    fake = FakeTransmitter(clock, default=HANG)
    queue = Declared(CursorMemoryQueue(2), ICursorQueue)
    output = make(clock, fake, queue=queue, batch_size=1, max_in_flight=1)
    source = ListSource()
    output.attach(source)
    output.send(events(0, 1))  # a caller's event: no cursor
    source.consumer(events(1, 4), ReadPosition("file:/x", [10, 20, 30]))
    assert queue.puts == [{}, {"cursor": ("file:/x", 10)}]  # room for one of the three
    for _ in range(3):
        fake.hung()[0].succeed()
        clock.advance(0.05)
    assert queue.puts[2:] == [{"cursor": ("file:/x", 20)}, {"cursor": ("file:/x", 30)}]
    assert queue.cursor("file:/x") == 30


def test_a_position_that_does_not_match_its_events_is_a_bug_of_the_source(clock):
    output = make(clock, FakeTransmitter(clock))
    source = ListSource()
    output.attach(source)
    with pytest.raises(ValueError):
        source.consumer(events(0, 3), ReadPosition("file:/x", [10, 20]))
    assert output.pending() == 0


def test_a_read_position_splits_with_its_events():
    position = ReadPosition("file:/x", [10, 20, 30])
    head, tail = position.split(1)
    assert head == ReadPosition("file:/x", [10]) and tail == ReadPosition("file:/x", [20, 30])
    assert head.cursor() == ("file:/x", 10) and tail.offset == 30
    for count in (0, 3):
        with pytest.raises(ValueError):
            position.split(count)


# -- drain and stop -----------------------------------------------------------------------


def test_drain_fires_when_nothing_is_queued_or_in_flight(clock):
    fake = FakeTransmitter(clock, default=HANG)
    output = make(clock, fake, batch_size=2)
    assert Outcome(output.drain()).value is None
    output.send(events(0, 3))
    drained = Outcome(output.drain())
    fake.attempts[0].succeed()
    assert not drained.fired
    clock.advance(0.05)
    fake.attempts[1].succeed()
    assert drained.value is None


def test_stop_waits_for_attempts_in_flight_and_leaves_retries_in_the_queue(clock):
    fake = FakeTransmitter(clock)
    fake.script(A, HANG)
    fake.always(B, RETRY)
    output = make(clock, fake, hosts=(A, B), batch_size=2)
    source = ListSource()
    output.attach(source)
    delivered = Outcome(output.send(events(0, 2)))  # to A, hangs
    retried = Outcome(output.send(events(2, 4)))  # to B, fails, waits to retry
    assert [a.host for a in fake.attempts] == [A, B]
    drained = Outcome(output.drain())
    stopped = Outcome(output.stopService())
    assert source.calls == ["start", "stop"]
    assert not stopped.fired
    clock.advance(60)
    assert len(fake.attempts) == 2  # no retry once stopping
    assert not fake.closed
    fake.attempts[0].succeed()
    assert stopped.value == 2
    assert output.undelivered() == 2
    assert delivered.value is None
    assert retried.failed_with(OutputStopped)
    assert drained.failed_with(OutputStopped)
    assert fake.closed
    assert output.queue.pending() == 2
    assert Outcome(output.send(events(4, 5))).failed_with(OutputStopped)


def test_an_attempt_failing_while_stopping_is_not_retried(clock):
    fake = FakeTransmitter(clock, default=HANG)
    output = make(clock, fake, batch_size=1)
    output.send(events(0, 1))
    stopped = Outcome(output.stopService())
    fake.attempts[0].retry()
    clock.advance(60)
    assert len(fake.attempts) == 1
    assert stopped.value == 1


def test_a_stopped_output_started_again_resumes_its_batches(clock):
    fake = FakeTransmitter(clock)
    fake.script(A, RETRY)
    output = make(clock, fake, batch_size=1)
    output.send(events(0, 1))
    assert Outcome(output.stopService()).value == 1
    output.startService()
    assert fake.delivered == events(0, 1)
    assert output.queue.pending() == 0


def test_a_clean_stop_reports_nothing_undelivered(clock):
    fake = FakeTransmitter(clock)
    output = make(clock, fake, batch_size=1)
    output.send(events(0, 1))
    assert Outcome(output.stopService()).value == 0
    assert fake.closed


def test_bad_settings_are_configuration_errors(clock):
    fake = FakeTransmitter(clock)
    for kw in ({"batch_size": 0}, {"batch_delay": -1}, {"max_in_flight": 0}):
        with pytest.raises(ConfigurationError):
            Output(fake, [A], clock, **kw)
    with pytest.raises(ConfigurationError):
        Output(fake, [], clock)


def test_an_output_is_an_event_sink_for_relaying(clock):
    from zope.interface.verify import verifyObject

    from twisted_logstash.interfaces import IEventSink

    fake = FakeTransmitter(clock, default=HANG)
    output = make(clock, fake, batch_size=1)
    assert verifyObject(IEventSink, output)
    delivered = Outcome(output.deliver(events(0, 1)))
    assert not delivered.fired
    fake.attempts[0].succeed()
    assert delivered.value is None


@pytest_twisted.inlineCallbacks
def test_a_file_flows_through_the_output_on_the_real_reactor(tmp_path):
    from twisted.internet import reactor

    path = tmp_path / "in.ndjson"
    path.write_bytes(b"".join(b'{"n": %d}\n' % n for n in range(3000)) + b"tail")
    fake = FakeTransmitter(reactor)
    output = Output(fake, [A, B], reactor, queue=MemoryQueue(400), batch_delay=0.001)
    source = FileSource(str(path), reactor, chunk_size=4096)
    output.attach(source)
    output.startService()
    yield source.done
    yield output.drain()
    left = yield output.stopService()
    assert left == 0
    assert sorted(e.get("n", -1) for e in fake.delivered) == [-1, *range(3000)]
    assert {"message": "tail"} in fake.delivered
    assert {a.host for a in fake.attempts} == {A, B}


def test_stamp_gives_events_logstash_timestamp_and_version_without_overwriting(clock):
    clock.advance(1_764_000_000.25)
    fake = FakeTransmitter(clock)
    output = make(clock, fake, batch_size=2, stamp=True)
    given = {"n": 1, "@timestamp": "2026-01-01T00:00:00.000Z", "@version": "2"}
    output.send([{"n": 0}, dict(given)])
    sent = fake.attempts[0].events
    assert sent[0] == {"n": 0, "@timestamp": "2025-11-24T16:00:00.250Z", "@version": "1"}
    assert sent[1] == given


def test_without_stamp_events_go_out_as_given(clock):
    fake = FakeTransmitter(clock)
    output = make(clock, fake, batch_size=1)
    output.send([{"n": 0}])
    assert fake.attempts[0].events == [{"n": 0}]


def test_send_takes_dict_subclasses_and_refuses_a_send_holding_anything_else(clock):
    fake = FakeTransmitter(clock)
    output = make(clock, fake, batch_size=2)
    refused = Outcome(output.send([{"n": 0}, ["not", "an", "object"]]))
    assert refused.failed_with(TypeError)
    assert output.stats.queued == 0
    sent = Outcome(output.send([collections.OrderedDict(n=1), {"n": 2}]))
    assert [a.events for a in fake.attempts] == [[{"n": 1}, {"n": 2}]]
    assert sent.value is None


def test_a_send_cancelled_by_its_caller_is_forgotten_once_its_events_settle(clock):
    fake = FakeTransmitter(clock, default=HANG)
    output = make(clock, fake, batch_size=2)
    kept = Outcome(output.send(events(0, 1)))
    cancelled = output.send(events(1, 2))
    cancelled.cancel()
    assert Outcome(cancelled).failed_with(defer.CancelledError)
    [attempt] = fake.attempts
    attempt.succeed()
    assert kept.value is None
    assert output._waiters == set()
