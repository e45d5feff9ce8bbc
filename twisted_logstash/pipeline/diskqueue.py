"""The output's durable queue (`--queue disk:DIR`): events survive a crash or a restart.

Events live in one SQLite database in WAL mode, ``DIR/queue.sqlite3``. Why SQLite: its commit
is atomic and ordered for us (no torn records to detect, no segment files to rotate), the
standard library has it, and a small WAL commit costs tens of microseconds.

Layout, chosen by measurement (docs/queue.md): one row per *put* (a JSON array of its events,
at most ``ROW_EVENTS`` events per row), not one row per event. Puts of 125 events are about
twice as fast that way; puts of one event cost about the same (the commit dominates). A get may
hand out part of a row; which parts of a row were acknowledged is then written down (table
``acked``) in the same transaction as the acknowledgement, so that a restart hands out
exactly the events that were not acknowledged, no more.

What is durable when:

- ``put`` commits before its Deferred fires (the events, and the source's cursor if given, in
  one transaction). Which events were handed out is kept only in memory: after a restart every
  unacknowledged event is handed out again (at least once).
- ``ack`` deletes (or marks) the events in one transaction.

A write that fails (a full disk: SQLite's SQLITE_FULL) changes nothing, on disk or in the
counts: ``put`` fails with nothing stored and the cursor where it was; ``ack`` raises with the
events still held. The output retries either until it succeeds or stops the program
(docs/queue.md); the queue itself never skips an event.

How much it holds is bounded by bytes (``max_bytes``, ``--queue-max-bytes``, 1 GiB by default
as Logstash's persistent queue): the bytes of the stored JSON rows. An event bound
(``capacity``) applies only if given. Both are advice, as for the memory queue: the output
pauses its sources when ``room()`` is 0, a put is never refused for lack of room.

A row that cannot be read back (its JSON damaged on disk, or its count disagreeing with its
events) is moved aside, whole and raw, to ``DIR/damaged-rows.ndjson`` with an error naming it,
and the rows after it flow on: it is the only copy of those events, so it is kept for a human,
but it must not stop the queue.
- ``sync="normal"`` (``PRAGMA synchronous=NORMAL``): a commit is in the WAL file but not fsynced;
  it survives the death of the process (kill -9) but not the loss of power or a kernel crash,
  which may lose the last commits (never corrupt the database). The WAL is fsynced at each
  checkpoint. ``sync="full"``: the WAL is fsynced at every commit, so a put also survives
  power loss, at the price of one fsync per put.

The queue is used from the reactor thread only and its calls block for the length of one
SQLite transaction; that is the price of "on disk before the Deferred fires" without a thread
hop per put. Opening checks everything a user can get wrong (the directory, the lock, a damaged
database) at once, but the connection used for work is opened on first use by the process that
uses it, because ``twistd`` builds services before it forks to daemonize.
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import sqlite3
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from twisted_logstash.codecs import jsonpolicy
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.interfaces import ICursorQueue

__all__ = [
    "DAMAGED_NAME",
    "DB_NAME",
    "DEFAULT_CAPACITY",
    "DEFAULT_MAX_BYTES",
    "LOCK_NAME",
    "ROW_EVENTS",
    "DiskQueue",
    "DiskQueueError",
    "QueueClosedError",
    "Ticket",
    "parse_bytes",
]

DB_NAME = "queue.sqlite3"
LOCK_NAME = "lock"
DAMAGED_NAME = "damaged-rows.ndjson"
DEFAULT_CAPACITY = None
"""No event bound unless one is given: the disk queue is bounded by bytes."""
DEFAULT_MAX_BYTES = 1 << 30
"""1 GiB, Logstash's ``queue.max_bytes`` default."""
ROW_EVENTS = 1000
"""A put of more events is stored as several rows, so that a get never decodes a huge row."""

_FORMAT = 1
_dumps = jsonpolicy.dumps_array  # the one JSON policy: never raises
_SYNC = {"normal": "NORMAL", "full": "FULL"}
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, n INTEGER NOT NULL,"
    " body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS acked (batch INTEGER NOT NULL, lo INTEGER NOT NULL,"
    " hi INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS acked_batch ON acked (batch)",
    "CREATE TABLE IF NOT EXISTS cursors (source TEXT PRIMARY KEY, position INTEGER NOT NULL)",
)


_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "pb": 1 << 50}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?b)?\s*", re.IGNORECASE)


def parse_bytes(text: str, flag: str = "--queue-max-bytes") -> int:
    """A size as Logstash writes one (``1gb``, ``512mb``, ``64kb``, ``100b`` or plain bytes;
    units of 1024, any case): a positive number of bytes, or ConfigurationError."""
    match = _SIZE.fullmatch(str(text))
    if match is None:
        raise ConfigurationError(f"{flag} takes a size such as 1gb, 512mb or 1048576, not {text!r}")
    number, unit = match.groups()
    value = int(float(number) * _UNITS[(unit or "").lower()])
    if value < 1:
        raise ConfigurationError(f"{flag} must be at least 1 byte, not {text!r}")
    return value


class DiskQueueError(ConfigurationError):
    """The queue directory cannot be used: not writable, in use by another process, or holding
    a file that is not a queue database. Raised when the queue is opened, before anything
    binds; the message names the path."""


class QueueClosedError(RuntimeError):
    """The queue was used after ``close()``."""


@dataclass(frozen=True, eq=False)
class Ticket:
    """What ``get`` handed out: ``pieces`` are ``(row, lo, hi, n)``, events ``lo..hi-1`` of a
    row holding ``n`` events. Compared by identity: each get makes a new one."""

    pieces: tuple[tuple[int, int, int, int], ...]
    count: int


class _Row:
    """The decoded row a get is working through, and which of its ranges are still to hand
    out (all of it, minus what a previous run acknowledged)."""

    __slots__ = ("events", "free", "id", "n")

    def __init__(self, row_id: int, n: int, events: list, acked: list[tuple[int, int]]):
        self.id = row_id
        self.n = n
        self.events = events
        self.free = _subtract((0, n), acked)


def _rollback(db: sqlite3.Connection) -> None:
    """Undo an open transaction (SQLite may already have, after a full disk)."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def _decode(body: bytes, n: int) -> list:
    """The events of a row, or ValueError/TypeError if the row is not what a put wrote."""
    if not isinstance(body, bytes):
        raise TypeError(f"the row's body is {type(body).__name__}, not a blob")
    events = orjson.loads(body)
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError("the row's body is not a JSON array of objects")
    if len(events) != n:
        raise ValueError(f"the row holds {len(events)} events, not {n}")
    return events


def _subtract(span: tuple[int, int], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``span`` not covered by the (disjoint) ranges ``taken``."""
    free = []
    start, end = span
    for lo, hi in sorted(taken):
        if lo > start:
            free.append((start, min(lo, end)))
        start = max(start, hi)
    if start < end:
        free.append((start, end))
    return free


@implementer(ICursorQueue)
class DiskQueue:
    """A FIFO of events on disk; see the module docstring for what is durable when.

    ``max_bytes`` is the size of the held rows at which the queue calls itself ``full``, and
    ``capacity`` (None: no bound) the number of held events: the output then pauses its
    source. A put over either is still accepted (refusing it would drop events the source
    already read); they bound how far a source runs ahead, by at most one put.
    ``reactor`` is accepted so that both queues are built alike; the disk queue needs no timer.
    """

    log = Logger()
    durable = True

    def __init__(
        self,
        directory: str,
        capacity: int | None = DEFAULT_CAPACITY,
        reactor: IReactorTime | None = None,
        sync: str = "normal",
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if capacity is not None and capacity < 1:
            raise ConfigurationError(f"queue capacity must be at least 1, not {capacity}")
        if max_bytes < 1:
            raise ConfigurationError(f"queue max bytes must be at least 1, not {max_bytes}")
        level = _SYNC.get(str(sync).lower())
        if level is None:
            raise ConfigurationError(f"queue sync must be 'normal' or 'full', not {sync!r}")
        self.directory = os.path.abspath(directory)
        self.path = os.path.join(self.directory, DB_NAME)
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.sync = sync.lower()
        self._reactor = reactor
        self._level = level
        self._lock_fd = self._lock()
        try:
            db = self._open(level)
            try:
                self._load(db)
            finally:
                db.close()
        except BaseException:
            self._unlock()
            raise
        # The connection is opened on first use, by the process that uses it: twistd builds
        # the service, then forks to daemonize, and an SQLite connection must not cross a fork.
        self._db: sqlite3.Connection | None = None
        self._db_pid = 0
        self._inherited: list[sqlite3.Connection] = []
        self._tickets: set[Ticket] = set()
        self._sizes: dict[int, int] = {}  # bytes of the rows decoded, until deleted
        self._out_count = 0
        self._row: _Row | None = None
        self._after = 0  # rows with an id up to this one were handed out (or are in _row)
        self._closed = False
        self.log.info(
            "disk queue {path} opened with {pending} events held ({size} bytes of at most "
            "{max_bytes}, synchronous={sync})",
            path=self.path,
            pending=self._pending,
            size=self._bytes,
            max_bytes=max_bytes,
            sync=level,
        )

    # -- opening --------------------------------------------------------------------------

    def _lock(self) -> int:
        """Hold an exclusive flock on DIR/lock for as long as the queue is open, so that two
        processes never hand out (and acknowledge) the same events."""
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd = os.open(os.path.join(self.directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DiskQueueError(
                f"queue directory {self.directory} cannot be created or written: {e.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DiskQueueError(
                f"queue directory {self.directory} is in use by another process (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _open(self, level: str) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as e:
            raise DiskQueueError(f"queue database {self.path} cannot be opened: {e}") from None
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _FORMAT):
                raise DiskQueueError(
                    f"queue database {self.path} has format {version}, this program reads "
                    f"format {_FORMAT}"
                )
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise DiskQueueError(f"queue database {self.path} cannot use WAL mode ({mode})")
            db.execute(f"PRAGMA synchronous={level}")
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={_FORMAT}")
            db.execute("COMMIT")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
        except sqlite3.DatabaseError as e:
            db.close()
            raise DiskQueueError(
                f"queue database {self.path} is damaged or not a queue database ({e}); "
                f"move it aside to start with an empty queue"
            ) from None
        except BaseException:
            db.close()
            raise
        return db

    def _load(self, db: sqlite3.Connection) -> None:
        """What a previous run left: partly acknowledged rows and the number of held events."""
        self._acked: dict[int, list[tuple[int, int]]] = {}
        for batch, lo, hi in db.execute("SELECT batch, lo, hi FROM acked"):
            self._acked.setdefault(batch, []).append((lo, hi))
        query = "SELECT COALESCE(SUM(n), 0), MAX(id), COALESCE(SUM(LENGTH(body)), 0) FROM batches"
        total, last, self._bytes = db.execute(query).fetchone()
        done = sum(hi - lo for ranges in self._acked.values() for lo, hi in ranges)
        self._pending = total - done
        self._next_id = (last or 0) + 1

    # -- IEventQueue and ICursorQueue -------------------------------------------------------

    def put(
        self, events: Iterable[dict], cursor: tuple[str, int] | None = None
    ) -> defer.Deferred[None]:
        """Store ``events`` (and the source's ``cursor``, ``(source_key, offset)``, in the same
        transaction); the Deferred fires once committed, or fails with nothing stored
        (``sqlite3.Error`` for a disk problem such as a full disk). Events are written by the
        one JSON policy (:mod:`jsonpolicy`), which takes any event."""
        try:
            self._connection()
            rows = self._encode(events)
            self._commit_put(rows, cursor)
        except Exception:
            return defer.fail()
        return defer.succeed(None)

    def get(self, limit: int) -> tuple[Ticket, list[dict]] | None:
        """Up to ``limit`` events not handed out yet, oldest first, with the ticket to ack;
        None when there are none (or ``limit`` is below 1)."""
        db = self._connection()
        out: list[dict] = []
        pieces: list[tuple[int, int, int, int]] = []
        while len(out) < limit:
            row = self._row or self._next_row(db)
            if row is None:
                break
            lo, hi = row.free[0]
            hi = min(hi, lo + limit - len(out))
            out.extend(row.events[lo:hi])
            pieces.append((row.id, lo, hi, row.n))
            if hi == row.free[0][1]:
                row.free.pop(0)
            else:
                row.free[0] = (hi, row.free[0][1])
            self._row = row if row.free else None
        if not out:
            return None
        ticket = Ticket(tuple(pieces), len(out))
        self._tickets.add(ticket)
        self._out_count += len(out)
        return ticket, out

    def ack(self, ticket: Ticket) -> None:
        """Forget the events of ``ticket`` for good (one transaction). A ticket is acknowledged
        once; an unknown or repeated one is a bug and raises ``KeyError``."""
        db = self._connection()
        if ticket not in self._tickets:
            raise KeyError("unknown or already acknowledged queue ticket")
        done, partial = self._split(ticket)
        db.execute("BEGIN")
        try:
            if done:
                db.executemany("DELETE FROM batches WHERE id = ?", [(r,) for r in done])
                gone = [(r,) for r in done if r in self._acked]
                if gone:
                    db.executemany("DELETE FROM acked WHERE batch = ?", gone)
            if partial:
                db.executemany("INSERT INTO acked (batch, lo, hi) VALUES (?, ?, ?)", partial)
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        self._tickets.discard(ticket)
        for row_id in done:
            self._acked.pop(row_id, None)
            self._bytes -= self._sizes.pop(row_id, 0)
        for row_id, lo, hi in partial:
            self._acked.setdefault(row_id, []).append((lo, hi))
        self._pending -= ticket.count
        self._out_count -= ticket.count

    def pending(self) -> int:
        """Events held, handed out or not (acknowledged ones are gone)."""
        return self._pending

    # -- flow control, cursors, closing ---------------------------------------------------

    def available(self) -> int:
        """Events that ``get`` would hand out now (held and not handed out)."""
        return self._pending - self._out_count

    @property
    def full(self) -> bool:
        """True when the held rows reached ``max_bytes`` or ``pending()`` the capacity (if
        any): the source should pause."""
        return self.room() <= 0

    def room(self) -> int:
        """How many more events fit before the queue is full (never below 0): none once the
        held bytes reached ``max_bytes``, else what the event capacity leaves (unbounded
        without one)."""
        if self._bytes >= self.max_bytes:
            return 0
        if self.capacity is None:
            return sys.maxsize
        return max(0, self.capacity - self._pending)

    def held_bytes(self) -> int:
        """The bytes of the rows held (the stored JSON of unacknowledged events)."""
        return self._bytes

    def _load_bytes(self) -> int:
        """``held_bytes`` counted again from the database (for tests)."""
        query = "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM batches"
        return self._connection().execute(query).fetchone()[0]

    def cursor(self, source_key: str) -> int | None:
        """The offset last stored with a put for ``source_key``, or None if never stored."""
        row = (
            self._connection()
            .execute("SELECT position FROM cursors WHERE source = ?", (source_key,))
            .fetchone()
        )
        return None if row is None else row[0]

    def close(self) -> defer.Deferred[None]:
        """Close the database (checkpointing the WAL) and release the directory. Events handed
        out and not acknowledged stay on disk and are handed out again by the next open."""
        if not self._closed:
            self._closed = True
            self._row = None
            self._tickets.clear()
            self._sizes.clear()
            self._out_count = 0
            try:
                if self._db is not None and self._db_pid == os.getpid():
                    self._db.close()
                self._db = None
            finally:
                self._unlock()
        return defer.succeed(None)

    # -- internals ------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The connection of this process, opened on first use (and again after a fork)."""
        if self._closed:
            raise QueueClosedError(f"disk queue {self.path} is closed")
        pid = os.getpid()
        if self._db_pid != pid:
            if self._db is not None:
                # Opened by the parent of a fork: closing it here could undo the parent's
                # locks; keep it referenced and unused.
                self._inherited.append(self._db)
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute(f"PRAGMA synchronous={self._level}")
            self._db, self._db_pid = db, pid
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, f"{pid}\n".encode(), 0)
        return self._db

    def _encode(self, events: Iterable[dict]) -> list[tuple[int, bytes]]:
        """One ``(count, JSON array)`` per row; a put that fits in a row costs one dumps."""
        if not isinstance(events, list | tuple):
            events = list(events)
        count = len(events)
        if count <= ROW_EVENTS:
            return [(count, _dumps(list(events)))] if count else []
        rows = []
        for start in range(0, count, ROW_EVENTS):
            chunk = list(events[start : start + ROW_EVENTS])
            rows.append((len(chunk), _dumps(chunk)))
        return rows

    def _commit_put(self, rows: list[tuple[int, bytes]], cursor: tuple[str, int] | None) -> None:
        if not rows and cursor is None:
            return
        first = self._next_id
        db = self._connection()
        db.execute("BEGIN")
        try:
            if len(rows) == 1:
                db.execute("INSERT INTO batches (id, n, body) VALUES (?, ?, ?)", (first, *rows[0]))
            elif rows:
                db.executemany(
                    "INSERT INTO batches (id, n, body) VALUES (?, ?, ?)",
                    [(first + i, n, body) for i, (n, body) in enumerate(rows)],
                )
            if cursor is not None:
                source, position = cursor
                db.execute(
                    "INSERT INTO cursors (source, position) VALUES (?, ?) "
                    "ON CONFLICT (source) DO UPDATE SET position = excluded.position",
                    (source, position),
                )
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        self._next_id = first + len(rows)
        self._pending += sum(n for n, _ in rows)
        self._bytes += sum(len(body) for _, body in rows)

    def _next_row(self, db: sqlite3.Connection) -> _Row | None:
        """Decode the oldest row not handed out yet, skipping what a previous run acked and
        moving aside a row that cannot be read."""
        while True:
            found = db.execute(
                "SELECT id, n FROM batches WHERE id > ? ORDER BY id LIMIT 1", (self._after,)
            ).fetchone()
            if found is None:
                return None
            row_id, n = found
            self._after = row_id
            body = None
            try:
                body = db.execute("SELECT body FROM batches WHERE id = ?", (row_id,)).fetchone()[0]
                events = _decode(body, n)
            except (sqlite3.DatabaseError, ValueError, TypeError) as e:
                self._set_aside(db, row_id, n, body, str(e) or type(e).__name__)
                continue
            self._sizes[row_id] = len(body)
            row = _Row(row_id, n, events, self._acked.get(row_id, []))
            if row.free:
                return row

    def _set_aside(
        self, db: sqlite3.Connection, row_id: int, n: int, body: bytes | None, reason: str
    ) -> None:
        """Move a row that cannot be read to ``DIR/damaged-rows.ndjson`` (raw, fsynced), then
        delete it, so that the rows after it flow. If the delete fails (a full disk), the row
        is still skipped in this run and set aside again by the next one."""
        aside = os.path.join(self.directory, DAMAGED_NAME)
        raw = body if isinstance(body, bytes) else None
        record = {
            "row": row_id,
            "events": n,
            "reason": reason,
            "raw": None if raw is None else raw.decode("utf-8", "backslashreplace"),
            "raw_base64": None if raw is None else base64.b64encode(raw).decode("ascii"),
        }
        with open(aside, "ab") as handle:
            handle.write(orjson.dumps(record) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        acked = sum(hi - lo for lo, hi in self._acked.get(row_id, ()))
        self.log.error(
            "disk queue {path}: row {row} ({count} events) cannot be read ({reason}); "
            "moved aside to {aside}",
            path=self.path,
            row=row_id,
            count=n - acked,
            reason=reason,
            aside=aside,
        )
        try:
            db.execute("BEGIN")
            db.execute("DELETE FROM batches WHERE id = ?", (row_id,))
            db.execute("DELETE FROM acked WHERE batch = ?", (row_id,))
            db.execute("COMMIT")
        except sqlite3.Error as e:
            _rollback(db)
            self.log.warn(
                "disk queue {path}: row {row} could not be deleted ({reason}); it stays on "
                "disk and is set aside again at the next start",
                path=self.path,
                row=row_id,
                reason=str(e),
            )
        self._acked.pop(row_id, None)
        self._pending -= n - acked
        if raw is not None:
            self._bytes -= len(raw)

    def _split(self, ticket: Ticket) -> tuple[list[int], list[tuple[int, int, int]]]:
        """Which rows the ticket finishes (to delete) and which ranges it acks in rows that
        still hold other events (to write down)."""
        per_row: dict[int, list[tuple[int, int, int]]] = {}
        for row_id, lo, hi, n in ticket.pieces:
            per_row.setdefault(row_id, []).append((lo, hi, n))
        done: list[int] = []
        partial: list[tuple[int, int, int]] = []
        for row_id, ranges in per_row.items():
            n = ranges[0][2]
            acked = sum(hi - lo for lo, hi in self._acked.get(row_id, ()))
            if acked + sum(hi - lo for lo, hi, _ in ranges) == n:
                done.append(row_id)
            else:
                partial.extend((row_id, lo, hi) for lo, hi, _ in ranges)
        return done, partial
