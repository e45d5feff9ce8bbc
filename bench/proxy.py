"""A loopback TCP proxy that injects network faults between an output and one input.

It listens on 127.0.0.1 and forwards every connection to one target, byte for byte, until told
otherwise. On command (or on a schedule run by the reactor) it can:

- ``reset()``: abort every connection on both sides (the peers see a reset mid-stream);
- ``stall(seconds)``: stop forwarding in both directions (reading pauses, so TCP's own flow
  control holds the peers back); connections stay open and nothing is lost or reordered;
- ``partition(seconds)``: abort every connection and drop each new one as soon as it is
  accepted, as a host that became unreachable;
- ``pass_through()``: end a stall or a partition now.

Everything runs on the reactor given to it, so a test drives it with Deferreds and a program
with ``schedule()``; nothing sleeps. This is a benchmark and test tool, not part of the package.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

__all__ = ["FaultProxy", "ProxyStats", "random_plan"]

PASS, STALL, PARTITION = "pass", "stall", "partition"
FAULTS = ("reset", STALL, PARTITION)


@dataclass
class ProxyStats:
    """What the proxy did, for the chaos summary."""

    connections: int = 0  # connections accepted and forwarded
    dropped: int = 0  # connections accepted during a partition and aborted at once
    resets: int = 0  # reset() calls (a partition's own aborts are not counted here)
    aborted: int = 0  # connections aborted by resets and partitions
    stalls: int = 0
    partitions: int = 0
    upstream_bytes: int = 0  # client -> target
    downstream_bytes: int = 0  # target -> client


class _Side(protocol.Protocol):
    """One end of a forwarded connection; ``peer`` is the other end once both exist."""

    def __init__(self, pair: _Pair, upstream: bool) -> None:
        self.pair = pair
        self.upstream = upstream  # True for the client-facing side (its bytes go up)

    def connectionMade(self) -> None:
        self.pair.made(self)

    def dataReceived(self, data: bytes) -> None:
        self.pair.forward(self, data)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.pair.lost(self)


class _Pair:
    """A client connection and its connection to the target."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.client: _Side | None = None
        self.target: _Side | None = None
        self.held: list[tuple[_Side, bytes]] = []  # read before a stall took effect
        self.closed = False
        self.close_pending = False
        self.connected = False  # the target side was made once

    def made(self, side: _Side) -> None:
        if side.upstream:
            self.client = side
            side.transport.pauseProducing()  # nothing is read before the target answers
            self.proxy._connect(self)
        else:
            self.target = side
            self.connected = True
            if self.closed:
                side.transport.abortConnection()
                return
            if self.proxy.mode == PASS:
                self.resume()
            else:
                self.target.transport.pauseProducing()

    def forward(self, side: _Side, data: bytes) -> None:
        if self.proxy.mode != PASS or not self.connected:
            self.held.append((side, data))
            return
        self._write(side, data)

    def _write(self, side: _Side, data: bytes) -> None:
        other = self.target if side.upstream else self.client
        if other is None:
            return
        if side.upstream:
            self.proxy.stats.upstream_bytes += len(data)
        else:
            self.proxy.stats.downstream_bytes += len(data)
        other.transport.write(data)

    def pause(self) -> None:
        for side in (self.client, self.target):
            if side is not None:
                side.transport.pauseProducing()

    def resume(self) -> None:
        """Forward what was held, in order, then read again (or finish a close that waited)."""
        if self.closed or not self.connected:
            return
        held, self.held = self.held, []
        for side, data in held:
            self._write(side, data)
        if self.close_pending:
            self.closed = True
            for side in (self.client, self.target):
                if side is not None:
                    side.transport.loseConnection()
            return
        for side in (self.client, self.target):
            if side is not None:
                side.transport.resumeProducing()

    def abort(self) -> None:
        self.closed = True
        self.held = []
        for side in (self.client, self.target):
            if side is not None:
                side.transport.abortConnection()

    def lost(self, side: _Side) -> None:
        """One side closed: close the other side too, after what was held for it (a close
        during a stall waits for the stall to end, as a FIN behind the data would)."""
        if side.upstream:
            self.client = None
        else:
            self.target = None
        if not self.closed:
            if self.held:
                self.close_pending = True
            else:
                self.closed = True
                other = self.target if side.upstream else self.client
                if other is not None:
                    other.transport.loseConnection()
        if self.client is None and self.target is None:
            self.closed = True
            self.proxy._pairs.discard(self)

    def target_failed(self) -> None:
        """The target refused or could not be reached: the client sees its connection reset."""
        self.closed = True
        if self.client is not None:
            self.client.transport.abortConnection()


class _ClientFactory(protocol.Factory):
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def buildProtocol(self, addr):
        if self.proxy.mode == PARTITION:
            self.proxy.stats.dropped += 1
            return _Dropped()
        pair = _Pair(self.proxy)
        self.proxy._pairs.add(pair)
        self.proxy.stats.connections += 1
        return _Side(pair, upstream=True)


class _Dropped(protocol.Protocol):
    """A connection accepted during a partition: cut at once."""

    def connectionMade(self) -> None:
        self.transport.abortConnection()


class FaultProxy:
    """Forward 127.0.0.1:``port`` to ``target_host``:``target_port``, with faults on command.

    ``listen()`` binds (port 0 picks a free one; ``port`` is the bound number afterwards).
    ``mode`` is ``"pass"``, ``"stall"`` or ``"partition"``. Timed faults end by themselves
    on ``clock`` (the reactor unless given, e.g. a ``task.Clock`` in a test); a new fault
    replaces the timer of the previous one.
    """

    log = Logger()

    def __init__(
        self, reactor, target_host: str, target_port: int, *, port: int = 0, clock=None
    ) -> None:
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor  # timers of faults and schedules
        self.target_host = target_host
        self.target_port = target_port
        self.port = port
        self.mode = PASS
        self.stats = ProxyStats()
        self._pairs: set[_Pair] = set()
        self._listening = None
        self._timer: IDelayedCall | None = None
        self._plan: list[IDelayedCall] = []

    # -- life ------------------------------------------------------------------------------

    def listen(self) -> int:
        """Start listening on 127.0.0.1; returns the port number."""
        self._listening = self.reactor.listenTCP(
            self.port, _ClientFactory(self), interface="127.0.0.1"
        )
        self.port = self._listening.getHost().port
        return self.port

    def retarget(self, target_port: int) -> None:
        """Send new connections to another port (an input restarted on a new port)."""
        self.target_port = target_port

    def close(self) -> defer.Deferred:
        """Stop listening, cancel the schedule and every timer, abort every connection."""
        for call in self._plan:
            if call.active():
                call.cancel()
        self._plan = []
        self._cancel_timer()
        self.mode = PASS
        for pair in list(self._pairs):
            pair.abort()
        if self._listening is None:
            return defer.succeed(None)
        listening, self._listening = self._listening, None
        return defer.maybeDeferred(listening.stopListening)

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    # -- faults ----------------------------------------------------------------------------

    def reset(self) -> int:
        """Abort every open connection (both sides); returns how many."""
        self.stats.resets += 1
        return self._abort_all()

    def stall(self, seconds: float | None = None) -> None:
        """Stop forwarding (both ways) until ``pass_through()`` or for ``seconds``."""
        self.stats.stalls += 1
        self._set_mode(STALL, seconds)
        for pair in list(self._pairs):
            pair.pause()

    def partition(self, seconds: float | None = None) -> None:
        """Abort every connection and drop new ones until ``pass_through()`` or ``seconds``."""
        self.stats.partitions += 1
        self._set_mode(PARTITION, seconds)
        self._abort_all()

    def pass_through(self) -> None:
        """Forward again: end a stall (held bytes flow, in order) or a partition."""
        self._cancel_timer()
        self.mode = PASS
        for pair in list(self._pairs):
            pair.resume()

    def schedule(self, plan: Iterable[tuple[float, str, float]]) -> None:
        """Run ``(at, fault, duration)`` entries, ``at`` seconds from now; ``fault`` is one of
        ``reset``, ``stall``, ``partition`` (a reset ignores its duration)."""
        for at, fault, duration in plan:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
            self._plan.append(self.clock.callLater(at, self._inject, fault, duration))

    def _inject(self, fault: str, duration: float) -> None:
        self.log.info(
            "proxy {port}: {fault} for {duration} s", port=self.port, fault=fault, duration=duration
        )
        if fault == "reset":
            self.reset()
        elif fault == STALL:
            self.stall(duration)
        else:
            self.partition(duration)

    # -- internals -------------------------------------------------------------------------

    def _abort_all(self) -> int:
        pairs = list(self._pairs)
        for pair in pairs:
            pair.abort()
        self.stats.aborted += len(pairs)
        return len(pairs)

    def _set_mode(self, mode: str, seconds: float | None) -> None:
        self._cancel_timer()
        self.mode = mode
        if seconds is not None:
            self._timer = self.clock.callLater(seconds, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self.pass_through()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _connect(self, pair: _Pair) -> None:
        factory = protocol.ClientFactory()
        factory.protocol = lambda: _Side(pair, upstream=False)
        factory.clientConnectionFailed = lambda connector, reason: pair.target_failed()
        self.reactor.connectTCP(self.target_host, self.target_port, factory, timeout=10)


def random_plan(
    rng: random.Random,
    duration: float,
    *,
    every: float = 2.0,
    stall: float = 1.5,
    partition: float = 2.0,
    start: float = 0.5,
    faults: tuple[str, ...] = FAULTS,
) -> list[tuple[float, str, float]]:
    """Faults about every ``every`` seconds over ``duration``, chosen from ``faults`` in turn
    (shuffled per round), so that a short run still sees each kind."""
    plan = []
    at = start
    kinds: list[str] = []
    while at < duration:
        if not kinds:
            kinds = list(faults)
            rng.shuffle(kinds)
        kind = kinds.pop()
        length = {"reset": 0.0, STALL: stall, PARTITION: partition}[kind]
        plan.append((round(at, 3), kind, length))
        at += length + every * (0.5 + rng.random())
    return plan
