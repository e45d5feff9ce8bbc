"""Issue 11: reading and writing follow one JSON policy (depth, big integers, NaN).

The inputs read what the output can write, and nothing more: an event nested deeper than
``jsonpolicy.MAX_DEPTH`` is refused alone, as a ``_jsonparsefailure`` event holding its raw text,
never taking its batch-mates (or its window) with it; an integer beyond 64 bits keeps its exact
value; writing a NaN or an Infinity as ``null`` is said in the log.
"""

from __future__ import annotations

import gzip
import io
import itertools

import orjson
import pytest
import pytest_twisted
from support_http import connect, listen, manticore_request
from support_lumberjack import HeldSink, acks_in, json_frame, window
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, formatEvent

from twisted_logstash.codecs import jsonpolicy, ndjson
from twisted_logstash.codecs.jsonpolicy import MAX_DEPTH
from twisted_logstash.pipeline.sinks import StdoutSink
from twisted_logstash.wires.lumberjack.decoder import FrameDecoder
from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory
from twisted_logstash.wires.native.server import HttpInputFactory

TAG = ndjson.PARSE_FAILURE_TAG


def deep_line(levels: int) -> bytes:
    """An event (an object) holding lists nested so that the event is ``levels`` deep."""
    return b'{"deep":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


def same(got, expected) -> bool:
    """Equality for values nested deeper than Python's own comparison can recurse."""
    return jsonpolicy.dumps(got) == jsonpolicy.dumps(expected)


def failure(line: bytes) -> dict:
    return {"message": line.decode(), "tags": [TAG]}


DEEP_OK = [2, 255, 300, MAX_DEPTH]  # what the policy writes as it is
TOO_DEEP = [MAX_DEPTH + 1, 1024, 1025, 5000]  # orjson reads the first two, not the others


# -- the native input's body -------------------------------------------------------------------


@pytest.mark.parametrize("levels", DEEP_OK)
def test_an_event_the_policy_writes_is_read_as_it_is(levels):
    body = b'{"n":1}\n' + deep_line(levels) + b'\n{"n":2}\n'
    events = ndjson.decode(body)
    assert len(events) == 3
    # and it is written back the same: reading and writing agree
    assert ndjson.encode(events) == body


@pytest.mark.parametrize("levels", TOO_DEEP)
def test_an_event_deeper_than_the_policy_is_a_parse_failure_alone(levels):
    line = deep_line(levels)
    body = b'{"n":1}\n' + line + b'\n{"n":2}\n'
    assert ndjson.decode(body) == [{"n": 1}, failure(line), {"n": 2}]
    decoder = ndjson.LineDecoder()
    got = []
    for n in range(0, len(body), 333):
        got += decoder.feed(body[n : n + 333])
    assert got + decoder.finish() == [{"n": 1}, failure(line), {"n": 2}]


def test_an_array_line_holding_a_too_deep_event_is_one_parse_failure():
    """An array line is refused whole, as any array that cannot be taken (no half line)."""
    line = b"[" + deep_line(MAX_DEPTH) + b"," + deep_line(MAX_DEPTH + 1) + b"]"
    assert ndjson.decode(line) == [failure(line)]
    fine = b'[{"n":1},' + deep_line(MAX_DEPTH) + b"]"
    assert jsonpolicy.dumps_array(ndjson.decode(fine)) == fine


def test_deep_nesting_inside_strings_is_not_counted():
    line = b'{"text":"' + b"[" * 3000 + b'"}'
    assert ndjson.decode(line) == [orjson.loads(line)]


def test_every_event_read_can_be_written_and_read_back_the_same():
    """The round trip the disk queue makes (an array around the events) holds too."""
    body = b"\n".join(deep_line(n) for n in (*DEEP_OK, *TOO_DEEP))
    events = ndjson.decode(body)
    assert len(events) == 8
    assert same(orjson.loads(jsonpolicy.dumps_array(events)), events)
    assert same(ndjson.decode(ndjson.encode(events)), events)


# -- the framed input's J frames ---------------------------------------------------------------


@pytest.mark.parametrize("levels", TOO_DEEP)
def test_a_too_deep_j_frame_is_a_parse_failure_alone(levels):
    line = deep_line(levels)
    stream = window(3) + json_frame(1, b'{"n":1}') + json_frame(2, line) + json_frame(3, b"{}")
    frames = FrameDecoder().feed(stream)
    assert [frame.event for frame in frames[1:]] == [
        {"n": 1},
        failure(line),
        {},
    ]


@pytest.mark.parametrize("levels", [*DEEP_OK, *TOO_DEEP])
def test_the_framed_input_acks_a_window_holding_a_deep_event(levels):
    clock = Clock()
    sink = HeldSink(auto=True)
    proto = LumberjackInputFactory(sink, clock).buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    line = deep_line(levels)
    proto.dataReceived(
        window(3) + json_frame(1, b'{"n":1}') + json_frame(2, line) + json_frame(3, b'{"n":3}')
    )
    assert not transport.disconnecting
    assert acks_in(transport.value())[-1] == 3
    fields = [{k: v for k, v in e.items() if not k.startswith("@")} for e in sink.events]
    middle = orjson.loads(line) if levels <= MAX_DEPTH else failure(line)
    assert same(fields, [{"n": 1}, middle, {"n": 3}])
    # and the sink can write what it got
    assert same(orjson.loads(ndjson.encode(sink.events).splitlines()[1]), sink.events[1])


# -- the native input, over loopback, into a real sink -----------------------------------------


@pytest.mark.parametrize("levels", [255, 1000, 1010, 1030])
@pytest_twisted.inlineCallbacks
def test_the_native_input_answers_200_and_its_sink_writes_every_event(levels):
    from twisted.internet import reactor

    stream = io.BytesIO()
    sink = StdoutSink(stream)
    port = yield listen(HttpInputFactory(sink, reactor))
    client = yield connect(port.getHost().port)
    try:
        line = deep_line(levels)
        body = gzip.compress(b'{"n":1}\n' + line + b'\n{"n":2}\n')
        response = yield client.request(manticore_request(body))
    finally:
        client.transport.loseConnection()
        yield client.wait_closed()
        yield port.stopListening()
    assert response.status == 200
    written = [orjson.loads(x) for x in stream.getvalue().splitlines()]
    fields = [{k: v for k, v in e.items() if not k.startswith("@")} for e in written]
    expected = orjson.loads(line) if levels <= MAX_DEPTH else failure(line)
    assert same(fields, [{"n": 1}, expected, {"n": 2}])


# -- big integers --------------------------------------------------------------------------------

BIG = [2**64, 2**64 - 1, -(2**63) - 1, -(2**63), 10**30, -(10**40), 10**400]


@pytest.mark.parametrize("number", BIG)
def test_an_integer_beyond_64_bits_keeps_its_exact_value(number):
    line = b'{"n":%d,"s":"x"}' % number
    assert ndjson.decode(line) == [{"n": number, "s": "x"}]
    frames = FrameDecoder().feed(json_frame(1, line))
    assert frames[0].event == {"n": number, "s": "x"}


def test_big_integers_are_written_as_their_decimal_text():
    """orjson cannot write them and 64-bit readers (Beats, orjson) would turn a number into a
    float: the exact digits travel as a string."""
    event = ndjson.decode(b'{"n":%d}' % 10**30)[0]
    assert ndjson.encode([event]) == b'{"n":"%d"}\n' % 10**30


def test_long_digit_runs_that_are_not_big_integers_stay_as_they_are():
    line = b'{"s":"12345678901234567890123","f":1.12345678901234567890123,"t":1733212345123456789}'
    assert ndjson.decode(line) == [orjson.loads(line)]


@pytest.mark.parametrize(
    "line",
    [
        b'{"n":1e400}',
        b'{"n":%d,"x":NaN}' % 10**400,
        b'{"n":%d,"x":1e999}' % 10**400,
        b'{"n":%d,' % 10**400,
        b'{"n":1' + b"0" * 5000 + b"}",
    ],
)
def test_what_is_not_json_stays_a_parse_failure(line):
    assert ndjson.decode(line) == [{"message": line.decode("utf-8", "replace"), "tags": [TAG]}]


# -- NaN and Infinity written as null ------------------------------------------------------------


@pytest.fixture
def policy_log(monkeypatch):
    """The policy's log lines, with every batch checked (no sampling)."""
    events: list[dict] = []
    monkeypatch.setattr(jsonpolicy, "log", Logger(observer=events.append))
    monkeypatch.setattr(jsonpolicy, "NONFINITE_SAMPLE", 1)
    return events


def test_nan_is_checked_on_the_first_batch_and_one_in_sample_after(monkeypatch):
    logged: list[dict] = []
    monkeypatch.setattr(jsonpolicy, "log", Logger(observer=logged.append))
    monkeypatch.setattr(jsonpolicy, "_nonfinite_batches", itertools.count())
    batch = [{"a": float("nan")}]
    for _ in range(2 * jsonpolicy.NONFINITE_SAMPLE):
        ndjson.encode(batch)
    assert len(logged) == 2


def test_nan_and_infinity_written_as_null_are_logged_once_per_batch(policy_log):
    events = [
        {"a": float("nan"), "b": [float("inf"), 1.0, None]},
        {"c": {"d": float("-inf")}, "e": None},
        {"f": 1},
    ]
    assert ndjson.encode(events).count(b"null") == 5
    assert jsonpolicy.dumps_array(events).count(b"null") == 5
    texts = [formatEvent(e) for e in policy_log]
    assert len(texts) == 2
    assert all(e["log_level"].name == "warn" for e in policy_log)
    assert "3 NaN/Infinity values in 2 of 3 events written as null" in texts[0]


def test_nulls_alone_say_nothing(policy_log):
    ndjson.encode([{"a": None, "b": "null"}])
    jsonpolicy.dumps_array([{"a": None}])
    assert policy_log == []


# -- the output's sources, and the dead-letter file they replay -----------------------------------


def test_a_source_line_follows_the_same_policy():
    from twisted_logstash.pipeline.sources import LineEvents, decode_line

    assert decode_line(b'{"n":%d}' % 10**30) == {"n": 10**30}
    deep = deep_line(MAX_DEPTH + 1)
    assert decode_line(deep) == {"message": deep.decode()}
    events = LineEvents()
    body = b'{"n":1}\n{"big":%d}\n' % -(10**25) + deep + b"\n"
    got = []
    for n in range(0, len(body), 7):
        got += events.feed(body[n : n + 7])
    assert got == [{"n": 1}, {"big": -(10**25)}, {"message": deep.decode()}]


@pytest.mark.parametrize("levels", [255, MAX_DEPTH])
def test_a_dead_letter_record_of_a_deep_event_is_replayed_whole(levels, tmp_path):
    """The record wraps the event in one more level: its depth counts from the event."""
    from twisted_logstash.pipeline.deadletter import DeadLetterFile
    from twisted_logstash.pipeline.sources import decode_line

    event = orjson.loads(deep_line(levels))
    dead = DeadLetterFile(str(tmp_path / "dead.ndjson"), Clock())
    dead.write([{"n": 1}, event], "refused", "h:1", 400)
    dead.close()
    lines = (tmp_path / "dead.ndjson").read_bytes().splitlines()
    assert decode_line(lines[0]) == {"n": 1}
    assert same(decode_line(lines[1]), event)


class Unprintable:
    def __str__(self):
        raise RuntimeError("no")


def test_the_dead_letter_file_takes_any_event_the_receiver_refused(tmp_path):
    """Whatever an event holds, its record is one readable line, the rest of the batch beside
    it: the policy writes any value (its string form when JSON has no type for it)."""
    from twisted_logstash.pipeline.deadletter import DeadLetterFile
    from twisted_logstash.pipeline.sources import decode_line

    nested: list = []
    for _ in range(5000):
        nested = [nested]
    loop: dict = {}
    loop["self"] = loop
    odd = [
        {"deep": nested},
        {"loop": loop},
        {"nan": float("nan"), "big": 2**100, "s": "x\udcff", "b": b"\xff", 1: 2},
        {"thing": Unprintable(), "set": {1, 2}},
        failure(deep_line(5000)),  # what an input made of a line it could not take
    ]
    events = [{"n": 0}, *odd, {"n": 9}]
    dead = DeadLetterFile(str(tmp_path / "dead.ndjson"), Clock())
    dead.write(events, "refused", "h:1", 400)
    dead.close()
    lines = (tmp_path / "dead.ndjson").read_bytes().splitlines()
    assert len(lines) == len(events)
    replayed = [decode_line(line) for line in lines]
    assert all(type(event) is dict for event in replayed)  # none fell back to a text line
    assert all("message" not in event for event in replayed[:-2])
    assert replayed[0] == {"n": 0} and replayed[-1] == {"n": 9}
    assert replayed[3]["big"] == str(2**100) and replayed[3]["nan"] is None
    assert replayed[4]["thing"] == "<unprintable Unprintable>"
    assert replayed[5] == failure(deep_line(5000))  # the raw line, as the input kept it
    assert isinstance(replayed[1]["deep"], list)


# -- the output's disk queue: what an input read, queued and read back across a restart ------------


def test_the_disk_queue_keeps_every_event_an_input_can_read(tmp_path):
    """Guard (issue 11): one event nested 255..1024 deep used to fail the whole put, and the
    batch with it. Queued beside ordinary events, everything comes back after a restart."""
    from twisted_logstash.pipeline.diskqueue import DiskQueue

    lines = [b'{"n":0}', deep_line(255), deep_line(MAX_DEPTH), deep_line(1024), deep_line(5000)]
    lines += [b'{"big":%d}' % 10**30, b'{"n":9}']
    events = ndjson.decode(b"\n".join(lines))
    events.append({"nan": float("nan")})  # from Python, at send()
    queue = DiskQueue(str(tmp_path / "q"), capacity=100)
    outcome = []
    queue.put(events).addBoth(outcome.append)
    assert outcome == [None]
    queue.close()
    queue = DiskQueue(str(tmp_path / "q"), capacity=100)
    try:
        _, got = queue.get(100)
    finally:
        queue.close()
    assert len(got) == len(events)
    assert same(got[:5], events[:5])
    assert got[3] == failure(deep_line(1024)) and got[4] == failure(deep_line(5000))
    assert got[5:] == [{"big": str(10**30)}, {"n": 9}, {"nan": None}]


def test_a_big_integer_at_the_bottom_of_the_deepest_event_is_exact():
    """The exact reader recurses: it is given room for MAX_DEPTH levels, and gives it back."""
    import sys

    limit = sys.getrecursionlimit()
    line = b'{"d":' + b"[" * (MAX_DEPTH - 2) + b'{"n":%d}' % 10**30 + b"]" * (MAX_DEPTH - 2) + b"}"
    (event,) = ndjson.decode(line)
    value = event["d"]
    while isinstance(value, list):
        value = value[0]
    assert value == {"n": 10**30}
    assert sys.getrecursionlimit() == limit
    (frame,) = FrameDecoder().feed(json_frame(1, line))
    assert same(frame.event, event)
