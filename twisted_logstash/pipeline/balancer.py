"""Which host gets the next batch: Logstash's rules, timed by an injected reactor.

Among all hosts, prefer one without a failure within the cool-off (so a failing host is isolated
while others work), then the one with the fewest requests in flight, then the one that started a
request least recently. If every host failed recently, the least recently failed one is tried, so
the output keeps probing instead of stalling. A success does not end a host's cool-off early: a
request that started before a failure may still succeed, which says little about the host now.

It also keeps each host's record for the metrics and the output's final line: failures by a
short reason key (``reason_key``), the last success, how often the host was isolated and why
last; a host being isolated and coming back are one info line each, not one per retry.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_logstash.errors import DeliveryError
from twisted_logstash.transport.hosts import Host

log = Logger()


def reason_key(error: BaseException | None) -> str:
    """A short key for why an attempt failed, for the failures metric: ``status_429``,
    ``status_5xx``, ``status_4xx`` from a receiver's answer, else ``timeout``, ``refused``
    (connection refused), ``tls``, ``closed``, ``cancelled``, ``protocol`` or ``other`` from
    the failure's words."""
    if error is None:
        return "other"
    if isinstance(error, defer.CancelledError):
        return "cancelled"
    status = getattr(error, "status", None)
    if status:
        if status == 429:
            return "status_429"
        return f"status_{status // 100}xx"
    text = (error.reason if isinstance(error, DeliveryError) else str(error)).lower()
    for words, key in _KEYS:
        if any(word in text for word in words):
            return key
    return "other"


_KEYS = (
    (("timed out", "timeout", "no answer", "did not answer"), "timeout"),
    (("refused",), "refused"),
    (("tls", "ssl", "certificate", "handshake"), "tls"),
    (("closed", "reset", "lost", "broken pipe"), "closed"),
    (("protocol", "bad response"), "protocol"),
)


class _HostState:
    """What the balancer knows about one host."""

    __slots__ = (
        "failed_at",
        "failed_seq",
        "failures",
        "in_flight",
        "isolated",
        "last_reason",
        "last_success",
        "started_at",
        "started_seq",
        "times_isolated",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self.started_at: float | None = None
        self.started_seq = -1
        self.failed_at: float | None = None
        self.failed_seq = -1
        self.failures: dict[str, int] = {}  # by reason_key
        self.last_success: float | None = None  # reactor time (unix time on a real reactor)
        self.isolated = False  # said isolated, not said back yet
        self.times_isolated = 0
        self.last_reason = ""


class Balancer:
    """Picks a host per attempt and learns from the outcome of each attempt."""

    def __init__(self, hosts: Iterable[Host], reactor: IReactorTime, cooloff: float = 60.0):
        self._hosts = list(dict.fromkeys(hosts))
        if not self._hosts:
            raise ValueError("a balancer needs at least one host")
        self._reactor = reactor
        self.cooloff = cooloff
        self._state = {host: _HostState() for host in self._hosts}
        self._only = self._state[self._hosts[0]] if len(self._hosts) == 1 else None
        # Sequence numbers break ties between events at the same reactor time (Clock tests,
        # or several picks within one reactor iteration) so "least recently" is always defined.
        self._seq = itertools.count()

    @property
    def hosts(self) -> list[Host]:
        return list(self._hosts)

    def pick(self) -> Host:
        """Choose a host for one attempt and count it as started and in flight."""
        now = self._reactor.seconds()
        if self._only is not None:
            # One host: it is the pick, healthy or not (no list, no keys, no lookups).
            host = self._hosts[0]
            state = self._only
        else:
            healthy = [h for h in self._hosts if not self._recently_failed(h, now)]
            if healthy:
                host = min(healthy, key=self._load_key)
            else:
                host = min(self._hosts, key=lambda h: self._state[h].failed_seq)
            state = self._state[host]
        state.in_flight += 1
        state.started_at = now
        state.started_seq = next(self._seq)
        return host

    def succeeded(self, host: Host) -> None:
        """An attempt on `host` ended well."""
        state = self._finish(host)
        state.last_success = self._reactor.seconds()
        if state.isolated:
            state.isolated = False
            log.info("host {host} is back", host=str(host))

    def refused(self, host: Host, error: BaseException | None = None) -> None:
        """The receiver at `host` answered and refused the batch for good (400, 413...): the
        attempt is over and counted among the host's failures by reason, but the host is
        neither isolated nor put behind the others. It did the work of answering; the batch is
        at fault, and another host would answer the same. (Logstash's own balancer marks a
        host only when the request itself failed.) Refused credentials are the host's own
        (``failed``)."""
        state = self._finish(host)
        key = reason_key(error)
        state.failures[key] = state.failures.get(key, 0) + 1

    def failed(self, host: Host, error: BaseException | None = None) -> None:
        """An attempt on `host` failed (``error`` says why): isolate it for the cool-off."""
        state = self._finish(host)
        now = self._reactor.seconds()
        key = reason_key(error)
        state.failures[key] = state.failures.get(key, 0) + 1
        if key == "cancelled":  # we gave up on it (a stop): nothing said about the host
            state.failed_at = now
            state.failed_seq = next(self._seq)
            return
        # a new isolation, unless the host is isolated already (a retry failing again)
        if not state.isolated or (self.cooloff > 0 and not self._recently_failed(host, now)):
            state.isolated = True
            state.times_isolated += 1
            # the final line's words: the whole reason, hint included; the line now: without
            # the hint, which the attempt logged once for the host just before
            state.last_reason = _words(error, key)
            log.info(
                "host {host} isolated for {cooloff} s: {reason}",
                host=str(host),
                cooloff=f"{self.cooloff:g}",
                reason=_words(error, key, short=True),
            )
        state.failed_at = now
        state.failed_seq = next(self._seq)

    def isolations(self) -> list[tuple[str, int, str]]:
        """Hosts isolated at least once, in the order given: (``host:port`` as typed, times
        isolated, the reason of the last isolation in words)."""
        return [
            (str(host), state.times_isolated, state.last_reason)
            for host, state in self._state.items()
            if state.times_isolated
        ]

    def record(self, host: Host) -> _HostState:
        """What the balancer knows about `host` (read by the metrics)."""
        return self._state[host]

    def all_isolated(self) -> bool:
        """True while every host is in its cool-off (then nothing can take work at once)."""
        now = self._reactor.seconds()
        return all(self._recently_failed(host, now) for host in self._hosts)

    def in_flight(self, host: Host) -> int:
        return self._state[host].in_flight

    def is_cooling_off(self, host: Host) -> bool:
        """True while `host` is isolated after a recent failure."""
        return self._recently_failed(host, self._reactor.seconds())

    def _finish(self, host: Host) -> _HostState:
        only = self._only
        state = only if only is not None and host is self._hosts[0] else self._state[host]
        if state.in_flight <= 0:
            raise ValueError(f"no attempt in flight on {host}")
        state.in_flight -= 1
        return state

    def _recently_failed(self, host: Host, now: float) -> bool:
        failed_at = self._state[host].failed_at
        return failed_at is not None and now - failed_at < self.cooloff

    def _load_key(self, host: Host) -> tuple[int, int]:
        state = self._state[host]
        return (state.in_flight, state.started_seq)


def _words(error: BaseException | None, key: str, short: bool = False) -> str:
    """Why the attempt failed, in words (``short``: a `DeliveryError`'s reason without the
    hint it may end with)."""
    if error is None:
        return "the attempt failed"
    if isinstance(error, DeliveryError):
        return error.short_reason if short else error.reason
    if isinstance(error, defer.CancelledError):
        return "the attempt was cancelled"
    return str(error) or key
