"""The dead-letter file: durable records that say why, and that a file source can replay."""

import orjson
import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher

from twisted_logstash.pipeline.deadletter import DeadLetterFile, iso_time, unwrap, wrap
from twisted_logstash.transport.hosts import Host


@pytest.fixture
def logged():
    seen = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def read(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_one_record_per_event_with_reason_host_status_and_time(tmp_path, logged):
    clock = Clock()
    clock.advance(1700000000.123)
    path = tmp_path / "dead.ndjson"
    dead = DeadLetterFile(str(path), clock)
    events = [{"message": "a"}, {"message": "b", "n": 2}]
    dead.write(events, "HTTP 400", host=Host("::1", 9800), status=400)
    # Durable when write returns: read it back without closing.
    records = read(path)
    assert [unwrap(r) for r in records] == events
    info = records[0]["dead_letter"]
    assert info == {
        "reason": "HTTP 400",
        "host": "[::1]:9800",
        "status": 400,
        "time": "2023-11-14T22:13:20.123Z",
    }
    assert dead.written == 2
    warnings = [e for e in logged if e.get("log_namespace", "").endswith("DeadLetterFile")]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] is LogLevel.warn
    assert warnings[0]["count"] == 2


def test_appends_across_writes_and_instances(tmp_path):
    path = tmp_path / "dead.ndjson"
    path.write_bytes(b'{"old": 1}\n')
    dead = DeadLetterFile(str(path), Clock())
    dead.write([{"a": 1}], "shutdown")
    dead.write([{"b": 2}], "shutdown")
    dead.close()
    records = read(path)
    assert records[0] == {"old": 1}
    assert [unwrap(r) for r in records[1:]] == [{"a": 1}, {"b": 2}]
    assert records[1]["dead_letter"]["host"] is None
    assert records[1]["dead_letter"]["status"] is None


def test_an_empty_batch_writes_nothing(tmp_path):
    path = tmp_path / "dead.ndjson"
    DeadLetterFile(str(path), Clock()).write([], "nothing")
    assert not path.exists()


def test_check_reports_an_unwritable_path(tmp_path):
    with pytest.raises(OSError):
        DeadLetterFile(str(tmp_path / "missing" / "dead.ndjson"), Clock()).check()


def test_unwrap_passes_other_objects_through():
    assert unwrap({"message": "x"}) == {"message": "x"}
    assert unwrap({"event": {"a": 1}}) == {"event": {"a": 1}}
    odd = {"event": "not a dict", "dead_letter": {}}
    assert unwrap(odd) is odd
    assert unwrap(wrap({"a": 1}, "r")) == {"a": 1}


def test_iso_time_has_milliseconds_and_z():
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1.9999) == "1970-01-01T00:00:01.999Z"
