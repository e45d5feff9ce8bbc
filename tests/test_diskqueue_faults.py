"""The disk queue under faults: a full disk at a put or an ack, a damaged row, and the byte
bound that lets it absorb an outage of the receivers.

A full disk is a real one from SQLite's point of view: ``PRAGMA max_page_count`` caps the
database at its current size, and the engine then fails writes with SQLITE_FULL ("database
or disk is full") exactly as on a full filesystem. Raising the cap frees the space.
"""

from __future__ import annotations

import os
import sqlite3

import orjson
import pytest
from support_transmitter import RETRY, FakeTransmitter
from twisted.internet.task import Clock
from twisted.logger import Logger

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.pipeline.diskqueue import (
    DAMAGED_NAME,
    DB_NAME,
    DiskQueue,
    parse_bytes,
)
from twisted_logstash.pipeline.output import Output, QueueFailedError
from twisted_logstash.pipeline.position import ReadPosition
from twisted_logstash.transport.hosts import Host

HOST = Host("a.example", 9800)
KEY = "file:/var/log/app.log"


def events(start, count, pad=""):
    return [{"n": i, "message": f"event {i}{pad}"} for i in range(start, start + count)]


def numbers(evs):
    return [e["n"] for e in evs]


def position(start, count):
    """One offset per event, as a file source hands them (10 bytes a line)."""
    return ReadPosition(KEY, [10 * (i + 1) for i in range(start, start + count)])


def fill_disk(q: DiskQueue) -> None:
    """The database may not grow by one page any more: the next write that needs one fails
    with a real SQLITE_FULL."""
    db = q._connection()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")


def free_disk(q: DiskQueue) -> None:
    q._connection().execute("PRAGMA max_page_count=1073741823")


def quiet(output):
    logged = []
    output.log = Logger(observer=logged.append)
    return logged


@pytest.fixture
def qdir(tmp_path):
    return str(tmp_path / "queue")


def output_on(q, clock, fake, **kw):
    output = Output(fake, [HOST], clock, batch_size=kw.pop("batch_size", 50), queue=q, **kw)
    quiet(output)
    output.startService()
    return output


def advance(clock, seconds, step=0.1):
    for _ in range(round(seconds / step)):
        clock.advance(step)


# -- a full disk at a put -------------------------------------------------------------------


def test_a_failed_put_changes_nothing_in_the_queue(qdir):
    q = DiskQueue(qdir)
    try:
        q.put(events(0, 10), cursor=(KEY, 100))
        fill_disk(q)
        failures = []
        q.put(events(10, 300, pad="x" * 200), cursor=(KEY, 3100)).addErrback(failures.append)
        assert failures and failures[0].check(sqlite3.OperationalError)
        assert q.pending() == 10
        assert q.held_bytes() == q._load_bytes()
        assert q.cursor(KEY) == 100
        free_disk(q)
        q.put(events(10, 300), cursor=(KEY, 3100))
        assert q.pending() == 310
        assert q.cursor(KEY) == 3100
    finally:
        q.close()


def test_disk_full_at_a_put_loses_nothing_and_the_cursor_never_passes_a_lost_line(qdir):
    """The reported loss: a put failing on a full disk dropped its events, and the next put
    stored a cursor past them, so a restart resumed after lines never queued."""
    clock = Clock()
    fake = FakeTransmitter(clock)
    fake.always(HOST, RETRY)  # nothing leaves the queue while the test looks at it
    q = DiskQueue(qdir, reactor=clock)
    output = output_on(q, clock, fake)
    consume = output._consume
    consume(events(0, 10), position(0, 10))
    assert q.cursor(KEY) == 100
    fill_disk(q)
    consume(events(10, 300, pad="x" * 200), position(10, 300))  # fails: the disk is full
    consume(events(310, 10), position(310, 10))  # arrives while the disk is full
    assert output.stats.dropped == 0
    assert q.cursor(KEY) == 100  # never past a line that is not held
    assert q.pending() == 10
    advance(clock, 5)  # still full: retried, nothing skipped
    assert q.cursor(KEY) == 100
    free_disk(q)
    advance(clock, 40)
    assert q.pending() == 320
    assert q.cursor(KEY) == 3200
    assert output.stats.dropped == 0
    output.stopService()
    q.close()

    # the restart hands out every event, each once, in order
    q = DiskQueue(qdir)
    try:
        got = []
        while (batch := q.get(1000)) is not None:
            got.extend(batch[1])
            q.ack(batch[0])
        assert numbers(got) == list(range(320))
        assert q.cursor(KEY) == 3200
    finally:
        q.close()


def test_send_callers_wait_while_the_disk_is_full_and_are_served_after(qdir):
    clock = Clock()
    fake = FakeTransmitter(clock)
    q = DiskQueue(qdir, reactor=clock)
    output = output_on(q, clock, fake)
    fill_disk(q)
    results = []
    output.send(events(0, 200, pad="y" * 300)).addBoth(results.append)
    advance(clock, 2)
    assert results == []  # not Dropped: waiting
    free_disk(q)
    advance(clock, 40)
    assert results == [None]
    assert numbers(fake.delivered) == list(range(200))
    output.stopService()
    q.close()


def test_a_put_failing_past_the_deadline_stops_the_output_with_a_clear_error(qdir):
    clock = Clock()
    fake = FakeTransmitter(clock)
    q = DiskQueue(qdir, reactor=clock)
    output = output_on(q, clock, fake, queue_retry_timeout=30.0)
    failed = []
    output.failed.addErrback(failed.append)
    fill_disk(q)
    output._consume(events(0, 300, pad="z" * 200), position(0, 300))
    advance(clock, 20)
    assert failed == []
    advance(clock, 40)
    assert len(failed) == 1
    error = failed[0].value
    assert isinstance(error, QueueFailedError)
    assert "could not hold" in str(error) and "full" in str(error)
    assert output.stats.dropped == 0
    assert q.cursor(KEY) is None  # nothing past what is held
    output.stopService()
    q.close()


# -- a full disk at an ack ------------------------------------------------------------------


class FlakyAcks(DiskQueue):
    """A disk queue whose acks fail like a full disk while ``full`` is set."""

    full_disk = False

    def ack(self, ticket):
        if self.full_disk:
            raise sqlite3.OperationalError("database or disk is full")
        return super().ack(ticket)


def test_an_ack_failing_on_a_full_disk_is_retried_until_space_is_freed(qdir):
    """The reported hang: the failure was raised inside the success callback, the batch stayed
    in flight for ever and the output hung, also after space was freed."""
    clock = Clock()
    fake = FakeTransmitter(clock)
    q = FlakyAcks(qdir, reactor=clock)
    output = output_on(q, clock, fake, batch_size=10, max_in_flight=1)
    q.full_disk = True
    results = []
    output.send(events(0, 30)).addBoth(results.append)
    advance(clock, 5)
    assert results == []
    assert numbers(fake.delivered) == list(range(10))  # delivered, not acknowledged yet
    assert output.in_flight == 1
    q.full_disk = False
    advance(clock, 40)
    assert results == [None]
    assert numbers(fake.delivered) == list(range(30))
    assert q.pending() == 0
    output.stopService()
    q.close()


def test_an_ack_failing_past_the_deadline_stops_the_output(qdir):
    clock = Clock()
    fake = FakeTransmitter(clock)
    q = FlakyAcks(qdir, reactor=clock)
    output = output_on(q, clock, fake, batch_size=10, queue_retry_timeout=30.0)
    failed = []
    output.failed.addErrback(failed.append)
    q.full_disk = True
    output.send(events(0, 10)).addErrback(lambda f: None)
    advance(clock, 60)
    assert len(failed) == 1
    assert isinstance(failed[0].value, QueueFailedError)
    assert "acknowledge" in str(failed[0].value)
    output.stopService()
    q.close()


def test_a_real_full_disk_at_an_ack_of_part_of_a_row(qdir):
    """Acknowledging part of a row writes a range down: with the database capped, that write
    fails with a real SQLITE_FULL; the ack is retried, and the queue's state is unchanged by
    the failure."""
    q = DiskQueue(qdir)
    try:
        q.put(events(0, 1000))
        ticket, _ = q.get(10)
        db = q._connection()
        # fill the free pages so that the acked table cannot grow
        fill_disk(q)
        pending = q.pending()
        try:
            for i in range(2000):
                db.execute("INSERT INTO acked (batch, lo, hi) VALUES (?, ?, ?)", (-1 - i, 0, 0))
        except sqlite3.OperationalError:
            pass
        with pytest.raises(sqlite3.OperationalError):
            q.ack(ticket)
        assert q.pending() == pending
        db.execute("DELETE FROM acked WHERE batch < 0")
        free_disk(q)
        q.ack(ticket)
        assert q.pending() == pending - 10
    finally:
        q.close()


# -- a damaged row ----------------------------------------------------------------------------


def damage(path, marker: bytes) -> None:
    """Overwrite, in the database file itself, the bytes of one stored event: the page stays
    well formed (quick_check passes), the row's JSON does not."""
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    at = data.find(marker)
    assert at >= 0
    data[at : at + len(marker)] = b"\xff" * len(marker)
    with open(path, "r+b") as handle:
        handle.write(bytes(data))


def test_a_damaged_row_is_moved_aside_and_the_others_flow(qdir):
    q = DiskQueue(qdir)
    q.put(events(0, 5))
    q.put([{"n": 5, "message": "DAMAGE-ME"}, {"n": 6, "message": "same row"}])
    q.put(events(7, 5))
    q.close()
    damage(os.path.join(qdir, DB_NAME), b'"DAMAGE-ME"')

    clock = Clock()
    fake = FakeTransmitter(clock)
    q = DiskQueue(qdir, reactor=clock)  # passes the start-up check: the pages are sound
    assert q.pending() == 12
    output = output_on(q, clock, fake, batch_size=4)
    drained = []
    output.drain().addBoth(drained.append)
    advance(clock, 2)
    assert drained == [None]
    assert numbers(fake.delivered) == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]
    assert q.pending() == 0
    output.stopService()
    q.close()

    aside = os.path.join(qdir, DAMAGED_NAME)
    with open(aside, "rb") as handle:
        records = [orjson.loads(line) for line in handle]
    assert len(records) == 1
    record = records[0]
    assert record["row"] == 2 and record["events"] == 2
    assert "same row" in record["raw"]  # the raw form, as it was on disk
    assert record["reason"]


def test_a_row_whose_count_disagrees_is_moved_aside(qdir):
    q = DiskQueue(qdir)
    q.put(events(0, 3))
    q.put(events(3, 3))
    q._connection().execute("UPDATE batches SET n = 7 WHERE id = 1")
    q.close()
    q = DiskQueue(qdir)
    try:
        got = []
        while (batch := q.get(100)) is not None:
            got.extend(batch[1])
            q.ack(batch[0])
        assert numbers(got) == [3, 4, 5]
        assert q.pending() == 0
    finally:
        q.close()


def test_an_unreadable_queue_stops_the_output_instead_of_hanging(qdir):
    """If the queue itself cannot be read (not one row: the database), the output stops with
    a clear error rather than raising inside a callback and hanging."""
    clock = Clock()
    fake = FakeTransmitter(clock)
    q = DiskQueue(qdir, reactor=clock)
    output = Output(fake, [HOST], clock, batch_size=4, queue=q)
    quiet(output)
    failed = []
    output.failed.addErrback(failed.append)

    def broken(limit):
        raise sqlite3.DatabaseError("database disk image is malformed")

    q.get = broken
    output.startService()
    output.send(events(0, 8)).addErrback(lambda f: None)
    advance(clock, 1)
    assert len(failed) == 1
    assert "malformed" in str(failed[0].value)
    output.stopService()
    q.close()


# -- bounded by bytes ---------------------------------------------------------------------------


def test_parse_bytes_reads_logstash_sizes():
    assert parse_bytes("1gb") == 1 << 30
    assert parse_bytes("512mb") == 512 << 20
    assert parse_bytes("64KB") == 64 << 10
    assert parse_bytes("1tb") == 1 << 40
    assert parse_bytes("4096") == 4096
    assert parse_bytes("100b") == 100
    for bad in ("", "1x", "gb", "-1gb", "1.5.5mb", "0"):
        with pytest.raises(ConfigurationError):
            parse_bytes(bad)


def test_the_disk_queue_is_bounded_by_bytes_not_by_4096_events(qdir):
    q = DiskQueue(qdir, max_bytes=1 << 20)
    try:
        assert q.max_bytes == 1 << 20
        n = 0
        while not q.full:
            q.put(events(n, 100))
            n += 100
        assert n > 4096
        assert q.held_bytes() >= 1 << 20
        assert q.room() == 0
        assert q.held_bytes() == q._load_bytes()
    finally:
        q.close()
    q = DiskQueue(qdir, max_bytes=1 << 20)
    try:
        assert q.held_bytes() >= 1 << 20 and q.full  # counted again at open
        while (batch := q.get(1000)) is not None:
            q.ack(batch[0])
        assert q.held_bytes() == 0 and q.room() > 0
    finally:
        q.close()


def test_an_event_bound_if_given_also_bounds_the_disk_queue(qdir):
    q = DiskQueue(qdir, capacity=50)
    try:
        q.put(events(0, 50))
        assert q.full and q.room() == 0
    finally:
        q.close()


def test_with_receivers_down_a_disk_queued_output_reads_far_beyond_4096_events(qdir):
    """The reported stall: the disk queue's capacity was the memory queue's 4,096 events, so
    the output paused its source after 4,096 events with the receivers down."""
    from twisted_logstash.tap.output import make_queue

    clock = Clock()
    fake = FakeTransmitter(clock)
    fake.always(HOST, RETRY)
    settings = {"queue": f"disk:{qdir}", "queue_max_events": None, "queue_max_bytes": 400_000}
    q = make_queue(settings, clock)
    output = output_on(q, clock, fake)
    total = 0
    while not output._sources_paused:
        assert total < 100_000, "never paused"
        assert q.held_bytes() < 400_000  # not paused before the byte bound
        output._consume(events(total, 100), position(total, 100))
        total += 100
    assert total > 4096 and q.pending() == total  # every event read is held on disk
    assert q.held_bytes() >= 400_000  # paused at the byte bound
    assert q.cursor(KEY) == 10 * total
    output.stopService()
    q.close()


def test_make_queue_defaults_to_one_gib_for_the_disk_queue(qdir):
    from twisted_logstash.tap.output import Options, make_queue, settings_from

    options = Options()
    options.parseOptions(["--hosts=h:1", f"--queue=disk:{qdir}"])
    settings, _, _ = settings_from(options, environ={})
    q = make_queue(settings, Clock())
    try:
        assert q.max_bytes == 1 << 30
        assert q.capacity is None or q.capacity > 10**9
    finally:
        q.close()
    options = Options()
    options.parseOptions(["--hosts=h:1", f"--queue=disk:{qdir}", "--queue-max-bytes=512mb"])
    settings, _, _ = settings_from(options, environ={})
    q = make_queue(settings, Clock())
    try:
        assert q.max_bytes == 512 << 20
    finally:
        q.close()


def test_queue_max_bytes_is_for_the_disk_queue_only():
    from twisted_logstash.tap.output import Options, make_queue, settings_from

    options = Options()
    options.parseOptions(["--hosts=h:1", "--queue-max-bytes=1gb"])
    settings, _, _ = settings_from(options, environ={})
    with pytest.raises(ConfigurationError, match="queue-max-bytes"):
        make_queue(settings, Clock())
