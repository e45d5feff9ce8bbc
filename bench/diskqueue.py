"""What the durable queue costs: events/s through put, get and ack, memory vs disk.

    .venv/bin/python bench/diskqueue.py [--events N] [--dir DIR]
    .venv/bin/python bench/diskqueue.py --row memory|normal|full [--warmup S --window S ...]

The second form is one client process of ``make bench`` (bench/run.py, group "queues"): the
``cycle 125`` column alone for one queue, counted in the harness's windows, with a RESULT line.

Rows:
- ``deque``: the floor, a bare ``collections.deque`` doing the same put/get/ack bookkeeping.
- ``memory``: ``MemoryQueue`` (when ``twisted_logstash.pipeline.queue`` is present).
- ``disk normal`` / ``disk full``: ``DiskQueue`` with ``synchronous=NORMAL`` / ``FULL``.
- ``rows/event normal``: the layout not taken (one SQLite row per event, same transactions),
  kept here so that the choice of one row per put can be checked on any machine.

Columns: ``cycle`` is put(125) + get(125) + ack in a loop, the output's steady state; ``put k``
is puts of k events alone (a source feeding the queue); ``get+ack`` drains what those puts
stored in gets of 125. The events are the harness's ~300-byte log events (bench/workload.py).
The DIR's file system matters (fsync cost): the table names it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import deque

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import workload

from twisted_logstash.pipeline.diskqueue import DiskQueue

BATCH = 125
PUT_SIZES = (1, 10, 125)


class DequeQueue:
    """The floor: what any queue must at least do (append, pop a batch, count acks)."""

    def __init__(self):
        self._ready = deque()
        self._out = {}
        self._next = 0

    def put(self, events):
        self._ready.extend(events)

    def get(self, limit):
        count = min(limit, len(self._ready))
        if not count:
            return None
        self._next += 1
        self._out[self._next] = count
        return self._next, [self._ready.popleft() for _ in range(count)]

    def ack(self, ticket):
        del self._out[ticket]

    def close(self):
        pass


class RowPerEventQueue:
    """The alternative layout: one row per event, ids handed out by range, acks by range."""

    def __init__(self, directory, sync):
        self._db = sqlite3.connect(os.path.join(directory, "rows.sqlite3"), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={sync}")
        self._db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        self._next = 1
        self._after = 0

    def put(self, events):
        first = self._next
        rows = [(first + i, orjson.dumps(e)) for i, e in enumerate(events)]
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO events VALUES (?, ?)", rows)
        self._db.execute("COMMIT")
        self._next = first + len(rows)

    def get(self, limit):
        rows = self._db.execute(
            "SELECT id, body FROM events WHERE id > ? ORDER BY id LIMIT ?", (self._after, limit)
        ).fetchall()
        if not rows:
            return None
        self._after = rows[-1][0]
        return (rows[0][0], rows[-1][0]), [orjson.loads(body) for _, body in rows]

    def ack(self, ticket):
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM events WHERE id BETWEEN ? AND ?", ticket)
        self._db.execute("COMMIT")

    def close(self):
        self._db.close()


def _put(queue, events):
    result = queue.put(events)
    if result is not None and hasattr(result, "addErrback"):  # a Deferred: fired already
        failures = []
        result.addErrback(failures.append)
        if failures:
            failures[0].raiseException()


def _close(queue):
    close = getattr(queue, "close", None)  # MemoryQueue holds no resource to release
    if close is not None:
        close()


def cycle(queue, batches, total):
    """put(125) + get(125) + ack until ``total`` events went through; events/s."""
    start = time.perf_counter()
    done = 0
    while done < total:
        batch = batches[(done // BATCH) % len(batches)]
        _put(queue, batch)
        ticket, events = queue.get(BATCH)
        queue.ack(ticket)
        done += len(events)
    return done / (time.perf_counter() - start)


def puts_then_drain(queue, events, size):
    """Puts of ``size`` events, then gets of 125 with acks; (put events/s, get+ack events/s)."""
    start = time.perf_counter()
    for i in range(0, len(events), size):
        _put(queue, events[i : i + size])
    put_rate = len(events) / (time.perf_counter() - start)
    start = time.perf_counter()
    drained = 0
    while (got := queue.get(BATCH)) is not None:
        queue.ack(got[0])
        drained += len(got[1])
    assert drained == len(events), (drained, len(events))
    return put_rate, drained / (time.perf_counter() - start)


def make_queues(base):
    """(name, factory, scale): scale times ``--events`` events go through each measurement."""
    # in memory a measurement of 25,000 events lasts a few milliseconds: run ten times more
    queues = [("deque", DequeQueue, 10.0)]
    try:
        from twisted_logstash.pipeline.queue import MemoryQueue
    except ImportError:
        pass
    else:
        queues.append(("memory", lambda: MemoryQueue(capacity=10**9), 10.0))
    counter = iter(range(10**6))

    def fresh():
        path = os.path.join(base, f"q{next(counter)}")
        os.makedirs(path)
        return path

    queues += [
        ("disk normal", lambda: DiskQueue(fresh(), capacity=10**9, sync="normal"), 1.0),
        ("disk full", lambda: DiskQueue(fresh(), capacity=10**9, sync="full"), 0.2),
        ("rows/event normal", lambda: RowPerEventQueue(fresh(), "NORMAL"), 1.0),
    ]
    return queues


def filesystem(path):
    """The mount holding ``path`` and its type, from /proc/mounts (Linux), for the table."""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1:3] for line in f]
    except OSError:
        return "unknown"
    path = os.path.realpath(path)
    best = max(
        (m for m in mounts if path == m[0] or path.startswith(m[0].rstrip("/") + "/")),
        key=lambda m: len(m[0]),
        default=None,
    )
    return "unknown" if best is None else f"{best[0]} ({best[1]})"


def measure_row(factory, count, events, batches):
    """One row of the table: [cycle, put 1, put 10, put 125, get+ack 125] in events/s."""
    queue = factory()
    rates = [cycle(queue, batches, count)]
    _close(queue)
    drain = 0.0
    for k in PUT_SIZES:
        # puts of one event are one commit each: fewer of them give the same rate sooner
        n = count if k > 1 else max(BATCH, count // 10)
        queue = factory()
        put_rate, drain = puts_then_drain(queue, events[:n], k)
        _close(queue)
        rates.append(put_rate)
    rates.append(drain)
    return rates


def harness_row(kind, warmup, window, repeats, directory=None):
    """``cycle 125`` for one queue in the harness's windows (bench/measure.py): the events of
    the harness's batches put, got and acknowledged 125 at a time, counted as they are acked."""
    import measure

    from twisted_logstash.pipeline.queue import MemoryQueue

    batches = workload.make_batches()
    base = tempfile.mkdtemp(prefix="diskqueue-row-", dir=directory)
    try:
        if kind == "memory":
            queue = MemoryQueue(capacity=10**9)
        else:
            queue = DiskQueue(os.path.join(base, "q"), sync=kind)
        counter = measure.Counter()
        windows = measure.Windows(counter)
        windows.mark()
        i = 0
        for delay in measure.schedule(warmup, window, repeats):
            deadline = time.perf_counter() + delay
            while time.perf_counter() < deadline:
                _put(queue, batches[i % len(batches)])
                i += 1
                ticket, events = queue.get(BATCH)
                queue.ack(ticket)
                counter.acked(len(events))
            windows.mark()
        _close(queue)
        info = {"queue": kind, "dir": filesystem(base)}
        return {
            "windows": windows.report(),
            "digest": workload.digest(workload.make_bodies()),
            "info": info,
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def harness_main(argv):
    import measure

    parser = argparse.ArgumentParser(description="one queue row of make bench")
    parser.add_argument("--row", choices=("memory", "normal", "full"), required=True)
    parser.add_argument("--dir", default=None)
    measure.client_args(parser)
    args = parser.parse_args(argv)
    measure.emit(harness_row(args.row, args.warmup, args.window, args.repeats, args.dir))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--row" or a.startswith("--row=") for a in argv):
        harness_main(argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=25_000, help="events per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="the table shows the median")
    parser.add_argument("--dir", default=None, help="where the disk queues live (a temp dir)")
    args = parser.parse_args(argv)

    base = tempfile.mkdtemp(prefix="diskqueue-bench-", dir=args.dir)
    try:
        events = workload.make_events(args.events)
        events *= 10  # the same events again, for the longer in-memory measurements
        batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
        size = len(orjson.dumps(events[: args.events])) / args.events
        print(
            f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cpus, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}"
        )
        print(f"queue dir: {base} on {filesystem(base)}; events of {size:.0f} bytes JSON")
        queues = make_queues(base)
        results = {name: [] for name, _, _ in queues}
        for _ in range(args.repeats):  # interleaved, so that a busy moment hits every queue
            for name, factory, scale in queues:
                count = max(BATCH, int(args.events * scale))
                results[name].append(measure_row(factory, count, events, batches))
        header = ["queue", "cycle 125"] + [f"put {k}" for k in PUT_SIZES] + ["get+ack 125"]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for name, rows in results.items():
            cells = [f"{statistics.median(column):,.0f}" for column in zip(*rows, strict=True)]
            print("| " + " | ".join([name, *cells]) + " |")
        print(
            f"events/s, median of {args.repeats}; cycle = put(125)+get(125)+ack; "
            "get+ack drains what the puts of 125 stored"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
