"""DiskQueue: the IEventQueue rules, durability across close and across a real kill -9, the
source cursor stored with the events, and the errors a user meets (locked, damaged, unwritable
directory)."""

import datetime
import decimal
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.interfaces import ICursorQueue, IEventQueue
from twisted_logstash.pipeline.diskqueue import (
    DB_NAME,
    ROW_EVENTS,
    DiskQueue,
    DiskQueueError,
    QueueClosedError,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def events(start, count):
    return [{"n": i, "message": f"event {i}"} for i in range(start, start + count)]


def fired(d):
    """The result of a Deferred that must have fired already (puts commit synchronously)."""
    box = []
    d.addBoth(box.append)
    assert box, "Deferred has not fired"
    return box[0]


def put(q, evs, cursor=None):
    result = fired(q.put(evs, cursor=cursor))
    if isinstance(result, Failure):
        result.raiseException()


def numbers(evs):
    return [e["n"] for e in evs]


def drain(q, limit=125):
    """Every event get hands out now, acknowledging each batch."""
    out = []
    while (got := q.get(limit)) is not None:
        ticket, evs = got
        out.extend(evs)
        q.ack(ticket)
    return out


@pytest.fixture
def qdir(tmp_path):
    return str(tmp_path / "queue")


@pytest.fixture
def queue(qdir):
    q = DiskQueue(qdir, capacity=100)
    yield q
    q.close()


# -- the interface ------------------------------------------------------------------------


def test_provides_ieventqueue_and_icursorqueue(queue):
    assert verifyObject(IEventQueue, queue)
    assert verifyObject(ICursorQueue, queue)
    assert queue.durable is True


def test_empty_queue_gets_none(queue):
    assert queue.get(125) is None
    assert queue.get(0) is None
    assert queue.pending() == 0


def test_put_is_committed_when_its_deferred_fires(queue, qdir):
    d = queue.put(events(0, 3))
    assert fired(d) is None
    # Another connection (as a restarted process would) already sees the committed row.
    other = sqlite3.connect(os.path.join(qdir, DB_NAME))
    try:
        assert other.execute("SELECT SUM(n) FROM batches").fetchone()[0] == 3
    finally:
        other.close()


def test_fifo_across_puts_and_limits(queue):
    put(queue, events(0, 1))
    put(queue, events(1, 7))
    put(queue, events(8, 4))
    seen = []
    for limit in (2, 3, 1, 125):
        _, evs = queue.get(limit)
        assert len(evs) == min(limit, 12 - len(seen))
        seen.extend(numbers(evs))
    assert seen == list(range(12))
    assert queue.get(125) is None


def test_handed_out_events_are_not_handed_out_again_and_stay_pending(queue):
    put(queue, events(0, 5))
    ticket, evs = queue.get(3)
    assert numbers(evs) == [0, 1, 2]
    assert queue.pending() == 5
    assert queue.available() == 2
    ticket2, evs2 = queue.get(3)
    assert numbers(evs2) == [3, 4]
    assert queue.get(3) is None
    assert queue.pending() == 5
    queue.ack(ticket2)
    assert queue.pending() == 3
    queue.ack(ticket)
    assert queue.pending() == 0


def test_ack_twice_or_unknown_ticket_raises(queue):
    put(queue, events(0, 2))
    ticket, _ = queue.get(10)
    queue.ack(ticket)
    with pytest.raises(KeyError):
        queue.ack(ticket)
    with pytest.raises(KeyError):
        queue.ack(object())
    assert queue.pending() == 0


def test_events_come_back_equal(queue):
    original = [{"message": "é ✓", "nested": {"list": [1, 2.5, None, True]}, "big": 2**62}]
    put(queue, original)
    assert queue.get(1)[1] == original


def test_large_put_spans_rows(queue):
    count = ROW_EVENTS * 2 + 7
    put(queue, events(0, count))
    assert queue.pending() == count
    assert numbers(drain(queue, 125)) == list(range(count))
    assert queue.pending() == 0


def test_put_takes_any_iterable(queue):
    put(queue, (e for e in events(0, 3)))
    assert numbers(drain(queue)) == [0, 1, 2]


def test_empty_put_stores_nothing(queue):
    put(queue, [])
    assert queue.pending() == 0
    assert queue.get(1) is None


class _Thing:
    def __str__(self):
        return "thing"


def _deep(levels):
    value = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_an_event_json_lacks_a_type_for_round_trips_in_its_string_form(qdir):
    """Issue 10 item 4: the disk queue writes by the one JSON policy, as the wires do, and
    reads back what it wrote, across a close."""
    loop = {"name": "loop"}
    loop["self"] = loop
    odd = {
        "n": 1,
        "decimal": decimal.Decimal("1.10"),
        "when": datetime.datetime(2026, 12, 3, 6, 30, tzinfo=datetime.UTC),
        "set": {3, 1, 2},
        "bytes": b"caf\xc3\xa9 \xff",
        "nan": float("nan"),
        "object": _Thing(),
        "keys": {7: "seven", None: "none"},
        "loop": loop,
        "deep": _deep(300),
    }
    q = DiskQueue(qdir, capacity=100)
    put(q, [*events(0, 1), odd, *events(2, 1)], cursor=("f", 9))
    q.close()
    q = DiskQueue(qdir, capacity=100)
    try:
        got = drain(q)
        assert q.cursor("f") == 9
    finally:
        q.close()
    assert numbers(got) == [0, 1, 2]
    assert got[1] == {
        "n": 1,
        "decimal": "1.10",
        "when": "2026-12-03T06:30:00+00:00",
        "set": [1, 2, 3],
        "bytes": "café \ufffd",
        "nan": None,
        "object": "thing",
        "keys": {"7": "seven", "null": "none"},
        "loop": {"name": "loop", "self": "<circular reference>"},
        "deep": _deep(300),
    }


# -- capacity -----------------------------------------------------------------------------


def test_full_and_room_follow_pending(qdir):
    q = DiskQueue(qdir, capacity=10)
    try:
        assert (q.full, q.room()) == (False, 10)
        put(q, events(0, 7))
        assert (q.full, q.room()) == (False, 3)
        ticket, _ = q.get(5)
        assert (q.full, q.room()) == (False, 3)  # handed out is still held
        put(q, events(7, 3))
        assert (q.full, q.room()) == (True, 0)
        put(q, events(10, 4))  # accepted over capacity: never drops what a source read
        assert (q.full, q.room(), q.pending()) == (True, 0, 14)
        q.ack(ticket)
        assert (q.full, q.room(), q.pending()) == (False, 1, 9)
    finally:
        q.close()


def test_capacity_and_sync_are_checked(qdir):
    with pytest.raises(ConfigurationError, match="capacity"):
        DiskQueue(qdir, capacity=0)
    with pytest.raises(ConfigurationError, match="sync"):
        DiskQueue(qdir, sync="sometimes")


@pytest.mark.parametrize(("sync", "level"), [("normal", 1), ("full", 2), ("FULL", 2)])
def test_sync_sets_sqlite_synchronous(qdir, sync, level):
    q = DiskQueue(qdir, sync=sync)
    try:
        db = q._connection()
        assert db.execute("PRAGMA synchronous").fetchone()[0] == level
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        q.close()


# -- across close and reopen --------------------------------------------------------------


def test_reopen_keeps_unacked_and_drops_acked(qdir):
    q = DiskQueue(qdir)
    put(q, events(0, 4))
    put(q, events(4, 4))
    put(q, events(8, 4))
    _, e1 = q.get(4)  # row 1 whole
    t2, e2 = q.get(6)  # row 2 whole, half of row 3
    _, e3 = q.get(1)
    assert (numbers(e1), numbers(e2), numbers(e3)) == ([0, 1, 2, 3], [4, 5, 6, 7, 8, 9], [10])
    q.ack(t2)
    assert q.pending() == 6
    q.close()

    q = DiskQueue(qdir)
    try:
        assert q.pending() == 6
        # the acknowledged half of row 3 (8, 9) is gone, the rest is handed out again in order
        assert numbers(drain(q, 3)) == [0, 1, 2, 3, 10, 11]
    finally:
        q.close()
    q = DiskQueue(qdir)
    try:
        assert q.pending() == 0
        assert q.get(10) is None
    finally:
        q.close()


def test_reopen_continues_after_partly_acked_rows(qdir):
    q = DiskQueue(qdir)
    put(q, events(0, 10))
    tickets = [q.get(2)[0] for _ in range(5)]
    q.ack(tickets[1])  # 2, 3
    q.ack(tickets[3])  # 6, 7
    q.close()
    q = DiskQueue(qdir)
    t, evs = q.get(125)
    assert numbers(evs) == [0, 1, 4, 5, 8, 9]
    q.ack(t)
    put(q, events(10, 2))  # new ids must follow the old ones
    q.close()
    q = DiskQueue(qdir)
    try:
        assert numbers(drain(q)) == [10, 11]
        assert q.pending() == 0
    finally:
        q.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    puts=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=8),
    limits=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=10),
    acks=st.lists(st.booleans(), min_size=10, max_size=10),
)
def test_reopen_model(tmp_path_factory, puts, limits, acks):
    """Any puts, any gets, any subset of acks: after reopening, exactly the unacknowledged
    events come back, in the order they were put."""
    qdir = str(tmp_path_factory.mktemp("model"))
    q = DiskQueue(qdir)
    start = 0
    for size in puts:
        put(q, events(start, size))
        start += size
    acked = set()
    for limit, do_ack in zip(limits, acks, strict=False):
        got = q.get(limit)
        if got is None:
            break
        if do_ack:
            q.ack(got[0])
            acked.update(numbers(got[1]))
    q.close()
    q = DiskQueue(qdir)
    try:
        expected = [n for n in range(start) if n not in acked]
        assert q.pending() == len(expected)
        assert numbers(drain(q, 7)) == expected
    finally:
        q.close()


# -- cursors ------------------------------------------------------------------------------


def test_cursor_is_stored_with_the_put(queue):
    assert queue.cursor("file:/var/log/a") is None
    put(queue, events(0, 3), cursor=("file:/var/log/a", 120))
    assert queue.cursor("file:/var/log/a") == 120
    put(queue, events(3, 1), cursor=("file:/var/log/a", 160))
    put(queue, [], cursor=("file:/var/log/b", 7))  # a cursor may move without events
    assert queue.cursor("file:/var/log/a") == 160
    assert queue.cursor("file:/var/log/b") == 7
    assert queue.pending() == 4


def test_cursor_and_events_commit_together_or_not_at_all(queue, qdir):
    put(queue, events(0, 2), cursor=("src", 10))
    # The cursor cannot be stored (not an int): the events inserted before it in the same
    # transaction must be rolled back with it.
    result = fired(queue.put(events(2, 3), cursor=("src", object())))
    assert isinstance(result, Failure)
    assert result.check(sqlite3.Error)
    assert queue.pending() == 2
    assert queue.cursor("src") == 10
    queue.close()
    q = DiskQueue(qdir)
    try:
        assert q.cursor("src") == 10
        assert numbers(drain(q)) == [0, 1]
    finally:
        q.close()


def test_cursor_survives_reopen(qdir):
    q = DiskQueue(qdir)
    put(q, events(0, 1), cursor=("k", 42))
    q.close()
    q = DiskQueue(qdir)
    try:
        assert q.cursor("k") == 42
    finally:
        q.close()


# -- a real crash -------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from twisted_logstash.pipeline.diskqueue import DiskQueue
    q = DiskQueue({qdir!r}, sync={sync!r})
    n = 0
    for size in (1, 5, 125, 3, 60, 40):
        q.put([{{"n": n + i}} for i in range(size)], cursor=("file:in", (n + size) * 10))
        n += size
    acked = []
    for limit, do_ack in [(7, True), (50, False), (125, True), (3, True), (20, False), (9, True)]:
        ticket, evs = q.get(limit)
        if do_ack:
            q.ack(ticket)
            acked.extend(e["n"] for e in evs)
    print(n, *acked, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("sync", ["normal", "full"])
def test_kill_9_keeps_exactly_the_unacknowledged_events(qdir, sync):
    code = CHILD.format(root=ROOT, qdir=qdir, sync=sync)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    total, *acked = map(int, child.stdout.split())
    assert total == 234 and len(acked) == 7 + 125 + 3 + 9
    # The process died without closing: the commits are in the WAL, not checkpointed.
    assert os.path.getsize(os.path.join(qdir, DB_NAME + "-wal")) > 0

    q = DiskQueue(qdir)
    try:
        expected = [n for n in range(total) if n not in set(acked)]
        assert q.pending() == len(expected)
        assert q.cursor("file:in") == total * 10
        assert numbers(drain(q)) == expected
    finally:
        q.close()


FORKING_CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    from twisted_logstash.pipeline.diskqueue import DiskQueue
    q = DiskQueue({qdir!r})
    q.put([{{"n": 0}}, {{"n": 1}}])  # the parent has used its connection
    if os.fork():
        os._exit(0)  # as twistd does when it daemonizes
    q.put([{{"n": 2}}, {{"n": 3}}])
    ticket, evs = q.get(3)
    q.ack(ticket)
    with open(os.path.join({qdir!r}, "lock")) as f:
        print(os.getpid(), f.read().strip(), *[e["n"] for e in evs], flush=True)
    q.close()
    """
)


def test_queue_built_before_a_fork_works_in_the_child(qdir):
    code = FORKING_CHILD.format(root=ROOT, qdir=qdir)
    # run() returns once the forked child closed its stdout, i.e. exited
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    pid, holder, *handed = child.stdout.split()
    assert holder == pid  # the lock file names the process that uses the queue
    assert handed == ["0", "1", "2"]
    q = DiskQueue(qdir)
    try:
        assert numbers(drain(q)) == [3]
    finally:
        q.close()


# -- behind an Output ---------------------------------------------------------------------


def test_output_resends_after_restart_what_was_not_acknowledged(qdir):
    """The seam the queue is for: an Output stopped while its receiver is down leaves the
    unacknowledged events on disk, and the next Output on the same DIR sends them."""
    from support_transmitter import OK, RETRY, FakeTransmitter
    from twisted.internet.task import Clock
    from twisted.logger import Logger

    from twisted_logstash.pipeline.output import Output
    from twisted_logstash.transport.hosts import Host

    host = Host("a.example", 9800)
    clock = Clock()
    fake = FakeTransmitter(clock)
    fake.always(host, RETRY)  # after the first batch, the receiver is down
    fake.script(host, OK)
    q = DiskQueue(qdir, reactor=clock)
    output = Output(fake, [host], clock, batch_size=4, queue=q)
    output.log = Logger(observer=lambda event: None)
    output.startService()
    output.send(events(0, 10)).addErrback(lambda f: None)  # fails with OutputStopped at stop
    for _ in range(20):
        clock.advance(0.5)
    assert numbers(fake.delivered) == [0, 1, 2, 3]
    assert q.pending() == 6
    output.stopService()
    q.close()

    clock = Clock()
    fake = FakeTransmitter(clock)
    q = DiskQueue(qdir, reactor=clock)
    assert q.pending() == 6
    output = Output(fake, [host], clock, batch_size=4, queue=q)
    output.log = Logger(observer=lambda event: None)
    output.startService()
    drained = []
    output.drain().addBoth(drained.append)
    for _ in range(10):
        clock.advance(0.1)
    assert drained == [None]
    assert numbers(fake.delivered) == list(range(4, 10))
    assert q.pending() == 0
    output.stopService()
    q.close()


# -- errors the user meets ----------------------------------------------------------------


def test_missing_directory_is_created(tmp_path):
    where = tmp_path / "a" / "b"
    q = DiskQueue(str(where))
    try:
        assert (where / DB_NAME).exists()
    finally:
        q.close()


def test_directory_that_cannot_be_created_names_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    where = str(blocker / "queue")
    with pytest.raises(ConfigurationError, match="cannot be created or written") as info:
        DiskQueue(where)
    assert where in str(info.value)


def test_second_open_of_the_same_directory_is_refused(queue, qdir):
    with pytest.raises(DiskQueueError, match=f"{qdir} is in use by another process") as info:
        DiskQueue(qdir)
    assert f"pid {os.getpid()}" in str(info.value)
    queue.close()
    DiskQueue(qdir).close()  # released by close


def test_another_process_is_refused_while_the_directory_is_open(queue, qdir):
    code = (
        f"import sys; sys.path.insert(0, {ROOT!r})\n"
        "from twisted_logstash.pipeline.diskqueue import DiskQueue, DiskQueueError\n"
        f"try:\n    DiskQueue({qdir!r})\nexcept DiskQueueError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == 3, child.stderr
    assert "in use by another process" in child.stdout


def test_damaged_database_is_a_clear_error(qdir):
    os.makedirs(qdir)
    with open(os.path.join(qdir, DB_NAME), "wb") as f:
        f.write(b"this is not an SQLite database, it only sits where one should be" * 100)
    with pytest.raises(DiskQueueError, match="damaged or not a queue database") as info:
        DiskQueue(qdir)
    assert os.path.join(qdir, DB_NAME) in str(info.value)
    os.remove(os.path.join(qdir, DB_NAME))
    DiskQueue(qdir).close()  # the failed open released the lock


def test_unknown_format_is_refused(qdir):
    DiskQueue(qdir).close()
    db = sqlite3.connect(os.path.join(qdir, DB_NAME))
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    with pytest.raises(DiskQueueError, match="format 99"):
        DiskQueue(qdir)


def test_closed_queue_refuses_use(qdir):
    q = DiskQueue(qdir)
    put(q, events(0, 1))
    ticket, _ = q.get(1)
    q.close()
    q.close()  # closing twice is harmless
    assert fired(q.put(events(1, 1))).check(QueueClosedError)
    with pytest.raises(QueueClosedError):
        q.get(1)
    with pytest.raises(QueueClosedError):
        q.ack(ticket)
