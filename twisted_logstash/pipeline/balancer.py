"""Which host gets the next batch: Logstash's rules, timed by an injected reactor.

Among all hosts, prefer one without a failure within the cool-off (so a failing host is isolated
while others work), then the one with the fewest requests in flight, then the one that started a
request least recently. If every host failed recently, the least recently failed one is tried, so
the output keeps probing instead of stalling. A success does not end a host's cool-off early: a
request that started before a failure may still succeed, which says little about the host now.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from twisted.internet.interfaces import IReactorTime

from twisted_logstash.transport.hosts import Host


class _HostState:
    """What the balancer knows about one host."""

    __slots__ = ("failed_at", "failed_seq", "in_flight", "started_at", "started_seq")

    def __init__(self) -> None:
        self.in_flight = 0
        self.started_at: float | None = None
        self.started_seq = -1
        self.failed_at: float | None = None
        self.failed_seq = -1


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
        self._finish(host)

    def failed(self, host: Host) -> None:
        """An attempt on `host` failed: isolate it for the cool-off."""
        state = self._finish(host)
        state.failed_at = self._reactor.seconds()
        state.failed_seq = next(self._seq)

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
