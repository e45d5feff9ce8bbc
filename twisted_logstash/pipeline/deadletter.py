"""Where a batch goes when a receiver refused it for good, instead of being dropped.

Real Logstash logs a terminal batch and drops it; we append every event to an ndjson file, one
record per event, wrapped with why it failed:

    {"event": {...the event...}, "dead_letter": {"reason": "...", "host": "h:9800",
     "status": 400, "time": "2026-11-23T10:00:00.123Z"}}

`--source file:PATH` reads these records back with `unwrap`, so a dead-letter file is replayed as
it is, once the cause (a credential, a size limit) is fixed.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_logstash.codecs import jsonpolicy

_KEYS = frozenset(("event", "dead_letter"))


def wrap(event: dict, reason: str, host: Any = None, status: int | None = None, time: str = ""):
    """One dead-letter record for one event."""
    return {"event": event, "dead_letter": _info(reason, host, status, time)}


def _info(reason: str, host: Any, status: int | None, time: str) -> dict:
    where = None if host is None else str(host)
    return {"reason": reason, "host": where, "status": status, "time": time}


def _records(events: Sequence[dict], info: dict) -> bytes:
    """The records of ``events``, as ``dumps(wrap(...))`` would write them, but with each
    event written by the JSON policy on its own, exactly as it would have gone on the wire
    (its nesting counted from the event, not from the record)."""
    head, tail = b'{"event":', b',"dead_letter":' + jsonpolicy.dumps(info) + b"}\n"
    return b"".join([head + text + tail for text in jsonpolicy.dumps_each(events)])


def unwrap(obj: Any) -> Any:
    """The original event of a dead-letter record; anything else passes through unchanged."""
    if (
        isinstance(obj, dict)
        and obj.keys() == _KEYS
        and isinstance(obj["event"], dict)
        and isinstance(obj["dead_letter"], dict)
    ):
        return obj["event"]
    return obj


def iso_time(seconds: float) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, as Logstash writes `@timestamp`."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class DeadLetterFile:
    """An append-only ndjson file of refused events, durable before `write` returns.

    Writing is synchronous and fsynced on purpose: the caller acknowledges the batch (forgets it)
    right after, so the records must be on disk by then. Terminal refusals are rare; the cost of
    a blocking fsync per refused batch is the price of never losing one.
    """

    log = Logger()

    def __init__(self, path: str, reactor: IReactorTime):
        self.path = path
        self._reactor = reactor
        self._file = None
        self.written = 0

    def check(self) -> None:
        """Raise OSError now if the file cannot be appended to (call it at configuration)."""
        self._open()

    def write(
        self,
        events: Sequence[dict],
        reason: str,
        host: Any = None,
        status: int | None = None,
    ) -> None:
        """Append one record per event; flushed and fsynced when this returns."""
        if not events:
            return
        time = iso_time(self._reactor.seconds())
        data = _records(events, _info(reason, host, status, time))
        handle = self._open()
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        self.written += len(events)
        self.log.warn(
            "dead-lettered {count} events to {path} ({reason}, host {host}, status {status})",
            count=len(events),
            path=self.path,
            reason=reason,
            host=None if host is None else str(host),
            status=status,
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self):
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - held open across writes
        return self._file
