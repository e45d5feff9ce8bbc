"""The connections of a transmitter, per host: the same pool for both wires.

Written once so that the wires cannot drift apart (they did: one waited forever for a TLS peer
to answer its close, the other reset every connection on close). A wire plugs in only its
`IExchange`, the bytes of an attempt and how its answer settles it; the pool does not know
which wire it carries.

- A connection carries one attempt at a time. Several attempts in flight to one host use
  several connections, at most ``max_connections_per_host`` (connecting, busy and idle
  together). An attempt beyond that waits, first come first served, for a connection to come
  back or a slot to free (the wait counts against its deadline, see `transport/attempt.py`).
- A connection goes back to the pool only when its exchange left it ``reusable``; otherwise it
  is closed. The most recently used idle connection is reused first (the likeliest alive).
- `close()` refuses new attempts, fails the waiting ones, cancels connects, and closes every
  connection cleanly: idle ones at once, busy ones once their attempt ends. A clean close is a
  FIN, and under TLS a ``close_notify`` after which Twisted waits for the peer's own; a
  JDK/Netty receiver never sends it, so whatever has not closed after ``close_grace`` seconds
  (reactor time) is aborted. No RST when a clean close is possible, and never an unbounded wait.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, ISSLTransport, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.errors import ConfigurationError, RetriableError
from twisted_logstash.interfaces import IConnectionPool, IExchange, IWire
from twisted_logstash.transport.hosts import Host

__all__ = [
    "DEFAULT_CLOSE_GRACE",
    "DEFAULT_MAX_CONNECTIONS_PER_HOST",
    "TRANSMITTER_CLOSED",
    "ConnectionPools",
    "HostPool",
    "PooledConnection",
]

DEFAULT_MAX_CONNECTIONS_PER_HOST = 8
DEFAULT_CLOSE_GRACE = 2.0
TRANSMITTER_CLOSED = "transmitter is closed"

log = Logger()


class PooledConnection(Protocol):
    """One pooled connection: hands what it reads to its exchange, for the attempt it carries."""

    def __init__(self, pool: HostPool, exchange: IExchange) -> None:
        self.pool = pool
        self.exchange = exchange
        self.attempt = None
        """The attempt in flight on this connection (an `Attempt`), or None while idle."""
        self.reusable = True
        """False once it may not carry another attempt (the exchange or a close decided)."""
        self.heard = False
        """Whether any byte arrived since the current attempt began (a stale connection
        closes before any)."""

    def connectionMade(self) -> None:
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            try:
                no_delay(True)  # an attempt's last segment must not wait for an ACK (Nagle)
            except OSError:
                pass
        self.pool.made(self)

    def carry(self, attempt) -> None:
        """Begin ``attempt`` on this connection: the exchange writes its bytes."""
        self.attempt = attempt
        self.heard = False
        self.exchange.begin(self.transport, attempt)

    def dataReceived(self, data: bytes) -> None:
        attempt = self.attempt
        if attempt is None:
            if not self.exchange.idle(data):
                self.abort()  # bytes nobody asked for: not to be trusted with an attempt
            return
        self.heard = True
        self.exchange.receive(data, attempt)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connected = False
        self.reusable = False
        self.pool.lost(self)
        attempt, self.attempt = self.attempt, None
        if attempt is not None:
            attempt.connection_lost(self, reason)

    def close(self) -> None:
        """Close cleanly: ``close_notify`` under TLS, then a FIN once the writes are out.

        Twisted's TLS layer would wait for the peer's ``close_notify`` before it sends the FIN,
        and a JDK/Netty peer on TLS 1.3 never answers one (it waits for the FIN). TLS does not
        ask the side that closes to wait for the answer, so the TCP write side is closed right
        after ours: the peer reads ``close_notify`` and end of stream, and closes in turn. The
        read side stays open until it does, so nothing it still sends meets an RST.

        Once its write side is shut, a TCP connection's ``loseConnection`` ends it at once,
        inside the call, and the TLS layer calls it while it reads the peer's ``close_notify``,
        then goes on using the OpenSSL connection that ending it released (an AttributeError
        logged as "Unhandled Error" at the end of every run over TLS). So that call is made to
        end the connection on the next turn, as ``loseConnection`` otherwise does.
        """
        self.reusable = False
        transport = self.transport
        transport.loseConnection()
        if ISSLTransport.providedBy(transport):
            tcp = getattr(transport, "transport", None)  # under TLSMemoryBIOProtocol
            lose_write = getattr(tcp, "loseWriteConnection", None)
            if lose_write is not None:
                lose_write()
                close_now, reactor = tcp.loseConnection, self.pool._reactor
                tcp.loseConnection = lambda: reactor.callLater(0, close_now)

    def abort(self) -> None:
        """Close at once (an RST), whatever is buffered or expected."""
        self.reusable = False
        self.transport.abortConnection()


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, pool: HostPool, wire: IWire, host: Host) -> None:
        self._pool = pool
        self._wire = wire
        self._host = host

    def buildProtocol(self, addr) -> PooledConnection:
        return PooledConnection(self._pool, self._wire.exchange(self._host))


class _Waiter:
    """An attempt waiting in line for a connection of a full pool."""

    __slots__ = ("connecting", "deferred", "pool")

    def __init__(self, pool: HostPool) -> None:
        self.pool = pool
        self.connecting: Deferred | None = None
        self.deferred: Deferred = Deferred(self._cancel)

    def _cancel(self, _: Deferred) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
        else:
            self.pool.waiters.remove(self)


@implementer(IConnectionPool)
class HostPool:
    """The connections to one host: idle ones to reuse, a cap on all of them, a waiting line."""

    def __init__(
        self,
        reactor: IReactorTime,
        endpoint: IStreamClientEndpoint,
        wire: IWire,
        host: Host,
        cap: int = DEFAULT_MAX_CONNECTIONS_PER_HOST,
        close_grace: float = DEFAULT_CLOSE_GRACE,
    ) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self._factory = _ConnectionFactory(self, wire, host)
        self.host = host
        self.cap = cap
        self.close_grace = close_grace
        self.open = 0
        """Connections connecting, busy or idle; freed on connect failure or connectionLost."""
        self.idle: list[PooledConnection] = []
        self.connections: set[PooledConnection] = set()
        """Every connection made and not lost yet, busy or idle."""
        self.waiters: deque[_Waiter] = deque()
        self._connecting: set[Deferred] = set()
        self.closing = False
        self._closers: list[Deferred] = []
        self._grace = None
        self._aborted = False

    def take_idle(self) -> PooledConnection | None:
        """The most recently used idle connection, or None."""
        idle = self.idle
        while idle:
            connection = idle.pop()
            if connection.reusable:
                return connection
        return None

    def acquire(self) -> Deferred:
        """A Deferred firing with `(connection, reused)`: a new connection, or one handed back."""
        if self.closing:
            return defer.fail(RetriableError(TRANSMITTER_CLOSED, self.host))
        if self.open < self.cap:
            return self._connect()
        waiter = _Waiter(self)
        self.waiters.append(waiter)
        return waiter.deferred

    def _connect(self) -> Deferred:
        self.open += 1
        connecting = defer.maybeDeferred(self._endpoint.connect, self._factory)
        self._connecting.add(connecting)
        connecting.addCallbacks(
            self._connected,
            self._connect_failed,
            callbackArgs=(connecting,),
            errbackArgs=(connecting,),
        )
        return connecting

    def _connected(
        self, connection: PooledConnection, connecting: Deferred
    ) -> tuple[PooledConnection, bool]:
        self._connecting.discard(connecting)
        return connection, False

    def _connect_failed(self, failure: Failure, connecting: Deferred) -> Failure:
        self._connecting.discard(connecting)
        self.open -= 1
        self._wake()
        self._check_closed()
        return failure

    def release(self, connection: PooledConnection) -> None:
        """Take a connection back after its attempt: keep it if it may carry another."""
        if connection.reusable and connection.connected and not self.closing:
            if self.waiters:
                self.waiters.popleft().deferred.callback((connection, True))
            else:
                self.idle.append(connection)
        elif connection.connected:
            connection.close()

    def made(self, connection: PooledConnection) -> None:
        self.connections.add(connection)
        if self.closing:
            # a connect that ignored its cancel: nobody will ever take this connection
            if self._aborted:
                connection.abort()
            else:
                connection.close()

    def lost(self, connection: PooledConnection) -> None:
        """A connection is gone: forget it and give its slot to a waiting attempt."""
        self.open -= 1
        self.connections.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        self._wake()
        self._check_closed()

    def _wake(self) -> None:
        if self.waiters and self.open < self.cap and not self.closing:
            waiter = self.waiters.popleft()
            waiter.connecting = self._connect()
            waiter.connecting.chainDeferred(waiter.deferred)

    # -- close -----------------------------------------------------------------------------------

    def close(self) -> Deferred:
        """Close every connection cleanly, abort what is left after the grace; fires when done."""
        closed = Deferred()
        self._closers.append(closed)
        if self.closing:
            self._check_closed()
            return closed
        self.closing = True
        while self.waiters:
            self.waiters.popleft().deferred.errback(RetriableError(TRANSMITTER_CLOSED, self.host))
        for connecting in list(self._connecting):
            connecting.cancel()
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.close()
        # busy connections are closed when their attempt hands them back (`release`)
        if not self._check_closed():
            self._grace = self._reactor.callLater(self.close_grace, self._abort_the_rest)
        return closed

    def _check_closed(self) -> bool:
        """Fire the close Deferreds once every connection is gone."""
        busy = self.connections or self._connecting
        if not self.closing or (busy and not self._aborted):
            return False
        self._closed()
        return True

    def _abort_the_rest(self) -> None:
        self._grace = None
        self._aborted = True
        left = list(self.connections)
        log.info(
            "{count} connections to {host} did not close within {grace} s of closing "
            "(a TLS peer that does not answer close_notify?); aborting them",
            count=len(left),
            host=str(self.host),
            grace=self.close_grace,
        )
        for connection in left:
            connection.abort()
        # Do not depend on the transports reporting the aborts: the wait is over now.
        self._closed()

    def _closed(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        closers, self._closers = self._closers, []
        for closed in closers:
            closed.callback(None)


class ConnectionPools:
    """A transmitter's pools, one per host, made on first use; closed together."""

    def __init__(
        self,
        reactor: IReactorTime,
        endpoint_factory: Callable[[Host], IStreamClientEndpoint],
        wire: IWire,
        *,
        max_connections_per_host: int = DEFAULT_MAX_CONNECTIONS_PER_HOST,
        close_grace: float = DEFAULT_CLOSE_GRACE,
    ) -> None:
        if max_connections_per_host < 1:
            raise ConfigurationError(
                f"max_connections_per_host must be at least 1, not {max_connections_per_host!r}"
            )
        if not close_grace >= 0:
            raise ConfigurationError(f"close_grace must be 0 or more, not {close_grace!r}")
        self._reactor = reactor
        self._endpoint_factory = endpoint_factory
        self._wire = wire
        self._cap = max_connections_per_host
        self._grace = close_grace
        self._pools: dict[Host, HostPool] = {}
        self.closed = False

    def pool(self, host: Host) -> HostPool:
        """The pool of ``host`` (a closing one once the pools are closed)."""
        pool = self._pools.get(host)
        if pool is None:
            pool = self._pools[host] = HostPool(
                self._reactor,
                self._endpoint_factory(host),
                self._wire,
                host,
                self._cap,
                self._grace,
            )
            pool.closing = self.closed
        return pool

    def close(self) -> Deferred:
        """Close every pool (see `HostPool.close`); fires once all are closed."""
        self.closed = True
        closing = [pool.close() for pool in self._pools.values()]
        return defer.gatherResults(closing).addCallback(lambda _: None)

    def idle(self, host: Host) -> int:
        """How many idle connections to ``host`` wait for reuse."""
        pool = self._pools.get(host)
        return len(pool.idle) if pool is not None else 0
