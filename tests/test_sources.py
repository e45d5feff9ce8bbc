"""Sources: how lines become events, files read in pausable chunks, generator, tcp, stdin."""

import os

import orjson
import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface.verify import verifyObject

from twisted_logstash.errors import ConfigurationError, TooLargeError
from twisted_logstash.interfaces import IResumableSource, ISource
from twisted_logstash.pipeline.deadletter import DeadLetterFile
from twisted_logstash.pipeline.sources import (
    FileSource,
    GeneratorSource,
    LineEvents,
    StdinSource,
    TcpSource,
    decode_line,
    source_from_string,
)

MIXED = (
    b'{"message": "one", "n": 1}\n'
    b"plain text line\n"
    b"\n"
    b"   \n"
    b"[1, 2]\n"
    b"42\n"
    b'{"crlf": true}\r\n'
    b"windows text\r\n"
    b"caf\xc3\xa9 \xff\n"
)
MIXED_EVENTS = [
    {"message": "one", "n": 1},
    {"message": "plain text line"},
    {"message": "[1, 2]"},
    {"message": "42"},
    {"crlf": True},
    {"message": "windows text"},
    {"message": "café \ufffd"},
]


class Collect:
    """A consumer that keeps every list it was handed, and the position that came with it."""

    def __init__(self):
        self.batches = []
        self.positions = []

    def __call__(self, events, position):
        self.batches.append(events)
        self.positions.append(position)

    @property
    def events(self):
        return [e for batch in self.batches for e in batch]

    @property
    def ends(self):
        """The offset after each event's line, over every list handed."""
        return [end for position in self.positions for end in position.ends]


def run(clock, source, steps=1000):
    """Let a ticking source run on a Clock until it ended or paused (each tick is one slice)."""
    for _ in range(steps):
        if source.ended or source.paused:
            return
        clock.advance(0)
    raise AssertionError("the source did not end")


# -- lines --------------------------------------------------------------------------------


def test_objects_are_events_other_lines_are_messages_and_blank_lines_are_skipped():
    assert LineEvents().feed(MIXED) == MIXED_EVENTS


def test_a_dead_letter_record_becomes_its_event_again():
    record = {"event": {"message": "x"}, "dead_letter": {"reason": "r"}}
    assert decode_line(orjson.dumps(record)) == {"message": "x"}
    assert decode_line(b'{"event": 1, "dead_letter": {}}') == {"event": 1, "dead_letter": {}}


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_lines_cut_anywhere_decode_the_same(size):
    decoder = LineEvents()
    out = []
    for i in range(0, len(MIXED), size):
        out.extend(decoder.feed(MIXED[i : i + size]))
    out.extend(decoder.finish())
    assert out == MIXED_EVENTS


def test_a_last_line_without_newline_comes_out_at_finish():
    decoder = LineEvents()
    assert decoder.feed(b'{"a": 1}\nlast') == [{"a": 1}]
    assert decoder.buffered == 4
    assert decoder.finish() == [{"message": "last"}]
    assert decoder.finish() == []


def test_a_line_over_the_limit_is_refused_before_it_is_held_whole():
    decoder = LineEvents(max_line_length=10)
    decoder.feed(b"12345")
    with pytest.raises(TooLargeError):
        decoder.feed(b"678901")
    with pytest.raises(TooLargeError):
        LineEvents(max_line_length=10).feed(b"ok\n" + b"x" * 11 + b"\n")


# -- file ---------------------------------------------------------------------------------


def read_file(tmp_path, data, **kw):
    path = tmp_path / "in.ndjson"
    path.write_bytes(data)
    clock = Clock()
    source = FileSource(str(path), clock, **kw)
    got = Collect()
    source.start(got)
    run(clock, source)
    return source, got


@pytest.mark.parametrize("chunk_size", [1, 5, 65536])
def test_a_file_with_a_trailing_newline(tmp_path, chunk_size):
    source, got = read_file(tmp_path, MIXED, chunk_size=chunk_size)
    assert got.events == MIXED_EVENTS
    assert source.ended and source.done.result is None
    assert source.offset == len(MIXED)
    assert source.events == len(MIXED_EVENTS)


def test_a_file_without_a_trailing_newline(tmp_path):
    source, got = read_file(tmp_path, b'{"a": 1}\n{"b": 2}')
    assert got.events == [{"a": 1}, {"b": 2}]
    assert source.offset == len(b'{"a": 1}\n{"b": 2}')
    assert got.ends == [9, 17]


def line_ends(data: bytes) -> list[int]:
    """The offset just after each line of ``data`` that holds an event (not blank)."""
    ends, position = [], 0
    for line in data.split(b"\n")[:-1]:
        position += len(line) + 1
        if line.strip():
            ends.append(position)
    return ends


@pytest.mark.parametrize("chunk_size", [1, 5, 13, 65536])
def test_each_event_comes_with_the_offset_just_after_its_line(tmp_path, chunk_size):
    source, got = read_file(tmp_path, MIXED, chunk_size=chunk_size)
    assert got.ends == line_ends(MIXED)  # blank lines are stepped over, \r\n counted whole
    assert len(got.ends) == len(got.events)
    for events, position in zip(got.batches, got.positions, strict=True):
        assert position.key == source.key == "file:" + str(tmp_path / "in.ndjson")
        assert len(position.ends) == len(events)
        assert position.offset == position.ends[-1]
    assert got.positions[-1].offset == source.offset == len(MIXED)


def test_a_resumed_file_reads_on_from_a_position_it_handed_out(tmp_path):
    data = b"".join(b'{"n": %d}\n' % n for n in range(20))
    first, got = read_file(tmp_path, data, chunk_size=40)
    middle = got.ends[6]  # as if the queue held events 0..6 when the process died
    clock = Clock()
    again = FileSource(first.path, clock)
    again.resume_at(middle)
    rest = Collect()
    again.start(rest)
    run(clock, again)
    assert [e["n"] for e in rest.events] == list(range(7, 20))
    assert rest.ends == got.ends[7:]
    with pytest.raises(RuntimeError):
        again.resume_at(0)  # only before start


def test_the_offset_marks_the_end_of_the_last_line_handed_out(tmp_path):
    path = tmp_path / "in.ndjson"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": 3}\n')
    clock = Clock()
    source = FileSource(str(path), clock, chunk_size=12)
    seen = []
    source.start(lambda events, position: seen.append((events, source.offset)))
    run(clock, source)
    assert seen == [([{"a": 1}], 9), ([{"b": 2}], 18), ([{"c": 3}], 27)]
    # A new source started at a remembered offset reads the rest only.
    again = FileSource(str(path), clock, offset=9)
    rest = Collect()
    again.start(rest)
    run(clock, again)
    assert rest.events == [{"b": 2}, {"c": 3}]


def test_a_dead_letter_file_replays_as_the_original_events(tmp_path):
    clock = Clock()
    path = tmp_path / "dead-letter.ndjson"
    originals = [{"message": "a", "@version": "1"}, {"message": "b", "nested": {"x": [1]}}]
    dead = DeadLetterFile(str(path), clock)
    dead.write(originals, "HTTP 401 Unauthorized", host="h:9800", status=401)
    dead.close()
    source = FileSource(str(path), clock)
    got = Collect()
    source.start(got)
    run(clock, source)
    assert got.events == originals


def test_a_paused_file_source_reads_nothing_until_resumed(tmp_path):
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"".join(b'{"n": %d}\n' % n for n in range(100)))
    clock = Clock()
    source = FileSource(str(path), clock, chunk_size=50)
    got = Collect()

    def consume(events, position):
        got(events, position)
        source.pauseProducing()  # as the output does when its queue fills

    source.start(consume)
    clock.advance(0)
    clock.advance(0)
    assert len(got.batches) == 1
    source.resumeProducing()
    clock.advance(0)
    assert len(got.batches) == 2
    source.stopProducing()
    source.resumeProducing()
    clock.advance(0)
    assert len(got.batches) == 2 and not source.ended


def test_a_file_line_over_the_limit_fails_done(tmp_path):
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"x" * 100 + b"\n")
    clock = Clock()
    source = FileSource(str(path), clock, max_line_length=10)
    failures = []
    source.done.addErrback(failures.append)
    source.start(Collect())
    clock.advance(0)
    assert failures and failures[0].check(TooLargeError)


# -- generator ------------------------------------------------------------------------------


def test_the_generator_makes_count_events_in_slices_then_ends():
    clock = Clock()
    source = GeneratorSource(1050, clock, slice_size=500, host_name="node-1")
    got = Collect()
    source.start(got)
    run(clock, source)
    assert [len(b) for b in got.batches] == [500, 500, 50]
    assert got.events[0] == {"message": "Hello world!", "sequence": 0, "host": {"name": "node-1"}}
    assert [e["sequence"] for e in got.events] == list(range(1050))
    assert source.done.called


def test_an_endless_generator_runs_until_stopped():
    clock = Clock()
    source = GeneratorSource(0, clock, slice_size=10)
    got = Collect()

    def consume(events, position):
        got(events, position)
        if len(got.batches) == 50:
            source.stopProducing()

    source.start(consume)
    clock.advance(0)
    assert len(got.events) == 500 and got.events[-1]["sequence"] == 499
    clock.advance(0)
    assert len(got.events) == 500 and not source.ended
    assert source.finite is False


def test_sources_provide_the_interfaces(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"")
    for source in (GeneratorSource(1), FileSource(str(path)), TcpSource(0), StdinSource()):
        assert verifyObject(ISource, source)
        assert verifyObject(IPushProducer, source)
    assert verifyObject(IResumableSource, FileSource(str(path)))
    for source in (GeneratorSource(1), TcpSource(0), StdinSource()):
        assert not IResumableSource.providedBy(source)


def test_sources_without_a_position_hand_none():
    clock = Clock()
    source = GeneratorSource(3, clock)
    got = Collect()
    source.start(got)
    run(clock, source)
    assert got.positions == [None]


# -- tcp --------------------------------------------------------------------------------------


class Waiter:
    """A consumer that fires a Deferred once it holds ``count`` events."""

    def __init__(self, count):
        self.count = count
        self.events = []
        self.reached = defer.Deferred()

    def __call__(self, events, position):
        assert position is None  # a tcp stream cannot be read again from a position
        self.events.extend(events)
        if len(self.events) >= self.count and not self.reached.called:
            self.reached.callback(self.events)


class Writer(protocol.Protocol):
    def __init__(self, data):
        self.data = data

    def connectionMade(self):
        self.transport.write(self.data)
        self.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_a_tcp_source_takes_lines_from_several_connections_over_loopback():
    from twisted.internet import reactor

    source = TcpSource(0, "127.0.0.1", reactor)
    got = Waiter(4)
    source.start(got)
    port = source.listening_port.getHost().port
    try:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        yield connectProtocol(endpoint, Writer(b'{"from": 1}\nnot json\n'))
        yield connectProtocol(endpoint, Writer(b'{"from": 2}\n{"last": "no newline"}'))
        events = yield got.reached
    finally:
        source.stopProducing()
        yield source.stopped_listening
    assert sorted(map(orjson.dumps, events)) == sorted(
        map(
            orjson.dumps,
            [{"from": 1}, {"message": "not json"}, {"from": 2}, {"last": "no newline"}],
        )
    )
    assert not source.done.called and source.finite is False


def test_pausing_a_tcp_source_pauses_every_connection_and_new_ones():
    source = TcpSource(0)
    got = Collect()
    source._consumer = got
    factory = source.buildFactory()
    first = factory.buildProtocol(None)
    first.makeConnection(StringTransport())
    source.pauseProducing()
    assert first.transport.producerState == "paused"
    second = factory.buildProtocol(None)
    second.makeConnection(StringTransport())
    assert second.transport.producerState == "paused"
    source.resumeProducing()
    assert first.transport.producerState == "producing"
    assert second.transport.producerState == "producing"
    first.dataReceived(b'{"a": 1}\n')
    assert got.events == [{"a": 1}]


def test_a_tcp_line_over_the_limit_drops_that_connection():
    source = TcpSource(0, max_line_length=8)
    source._consumer = Collect()
    conn = source.buildFactory().buildProtocol(None)
    transport = StringTransport()
    conn.makeConnection(transport)
    conn.dataReceived(b"x" * 20)
    assert transport.disconnecting


# -- stdin -------------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_stdin_from_a_pipe_until_eof():
    from twisted.internet import reactor

    read_end, write_end = os.pipe()
    source = StdinSource(reactor, fd=read_end)
    got = Collect()
    source.start(got)
    os.write(write_end, b'{"a": 1}\nhello\n{"b": 2}')
    os.close(write_end)
    yield source.done
    assert got.events == [{"a": 1}, {"message": "hello"}, {"b": 2}]
    assert set(got.positions) == {None}  # a stream has no position to read on from


@pytest_twisted.inlineCallbacks
def test_stdin_redirected_from_a_regular_file(tmp_path):
    from twisted.internet import reactor

    path = tmp_path / "in.ndjson"
    path.write_bytes(b"".join(b'{"n": %d}\n' % n for n in range(1000)))
    fd = os.open(path, os.O_RDONLY)
    source = StdinSource(reactor, fd=fd)
    got = Collect()
    source.start(got)
    yield source.done
    assert [e["n"] for e in got.events] == list(range(1000))


# -- spec strings -----------------------------------------------------------------------------


def test_source_specs(tmp_path):
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"")
    assert isinstance(source_from_string("stdin"), StdinSource)
    file_source = source_from_string(f"file:{path}")
    assert isinstance(file_source, FileSource) and file_source.path == str(path)
    tcp = source_from_string("tcp:5000")
    assert isinstance(tcp, TcpSource) and tcp.port == 5000 and tcp.interface == "127.0.0.1"
    generator = source_from_string("generator:10")
    assert isinstance(generator, GeneratorSource) and generator.count == 10


@pytest.mark.parametrize(
    "spec",
    ["", "stdout", "stdin:x", "file:", "tcp:", "tcp:http", "tcp:70000", "generator:-1", "gen:5"],
)
def test_bad_source_specs_are_configuration_errors(spec):
    with pytest.raises(ConfigurationError) as error:
        source_from_string(spec)
    assert str(error.value).startswith(f"--source {spec!r}: ")


def test_an_unknown_kind_names_the_accepted_forms():
    with pytest.raises(ConfigurationError, match="stdin, file:PATH, tcp:PORT, generator:COUNT"):
        source_from_string("kafka:topic")


def test_a_missing_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read"):
        source_from_string(f"file:{tmp_path / 'missing.ndjson'}")
