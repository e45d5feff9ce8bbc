"""One attempt to deliver one payload to one host: the same for both wires.

Written once, so that a deadline, a cancel and a failure read the same whatever the wire:

- **Deadline.** ``timeout`` bounds the whole attempt, from its start: waiting in the pool's
  line, connecting, sending and every answer. One reactor timer: a wire's exchange may set it
  nearer (`extend`: the framed wire waits ``ack_timeout`` for each ACK, keep-alives included),
  but never past the attempt's own deadline, so that a peer that only says it is working (a
  receiver stuck behind keep-alives) cannot hold a batch forever: at the deadline the batch
  fails as retriable and the output moves it to another host. When the timer passes, the wire
  words the reason (`IWire.timed_out`; ``overdue`` tells it which limit passed), the wait or the
  connection in use is aborted, and the attempt fails at once, without waiting for the
  transport to report the abort.
- **Cancel** (`Output.abort_attempts`, on a stop that cannot wait) fails the attempt with
  `CancelledError` and aborts its own connection, or leaves the line, or cancels the connect.
- **A stale reused connection.** A peer may close an idle connection just as an attempt is
  written to it. When a *reused* connection closes before any byte of an answer arrived, the
  attempt is made once more on another connection, within the same deadline. A fresh
  connection that does the same is a plain failure.
- **Failure text.** `describe_failure` names what went wrong on the network, a TLS failure in
  `describe_tls_failure`'s words (as the input logs it), behind ``TLS handshake failed:``.
- **What is probably wrong.** When a fresh connection fails on what the receiver answered (or
  its close, or the TLS check), the exchange asks `diagnosed` for the reason: the
  `transport/diagnosis.py` hint (the flags to change) is added to it, and logged once per host
  and cause at error level; the attempt fails as any other (retried, the host isolated). The
  failure's ``short_reason`` is the reason without the hint: the output's line at each retry
  says that, so the hint's sentence is not repeated at every backoff step.
"""

from __future__ import annotations

from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.errors import DeliveryError, RetriableError
from twisted_logstash.interfaces import IAttempt, IConnectionPool, IWire
from twisted_logstash.security.failures import describe_tls_failure
from twisted_logstash.transport.diagnosis import diagnose
from twisted_logstash.transport.hosts import Host
from twisted_logstash.transport.pool import TRANSMITTER_CLOSED

__all__ = ["Attempt", "describe_failure", "is_tls"]

log = Logger()

_TLS_MODULES = ("OpenSSL", "service_identity", "ssl", "twisted_logstash.security")


def is_tls(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the TLS layer (OpenSSL, the name check, our TLS code)."""
    module = type(exc).__module__
    return any(module == name or module.startswith(name + ".") for name in _TLS_MODULES)


def describe_failure(failure: Failure | BaseException) -> str:
    """A short reason naming what went wrong on the network."""
    exc = failure.value if isinstance(failure, Failure) else failure
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, error.DNSLookupError):
        return f"DNS lookup failed: {exc}"
    if is_tls(exc):
        return f"TLS handshake failed: {describe_tls_failure(exc, client=True)}"
    if isinstance(exc, error.ConnectionDone):
        return "closed by the server"
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@implementer(IAttempt)
class Attempt:
    """One transmit: get a connection from the pool, run the wire's exchange, within a deadline.

    ``result`` fires None once the exchange settles it well, or fails with a `DeliveryError`
    (or `CancelledError` when cancelled).
    """

    __slots__ = (
        "_final",
        "_hinted",
        "_pending",
        "_pool",
        "_reactor",
        "_retried",
        "_reused",
        "_stopped",
        "_timer",
        "_wire",
        "connection",
        "deadline",
        "host",
        "overdue",
        "payload",
        "result",
    )

    def __init__(
        self,
        reactor: IReactorTime,
        pool: IConnectionPool,
        wire: IWire,
        host: Host,
        payload,
        timeout: float,
    ) -> None:
        self.host = host
        self.payload = payload
        self.connection = None
        self.result = Deferred(self._cancel)
        self._pool = pool
        self._wire = wire
        self._reactor = reactor
        self.deadline = reactor.seconds() + timeout
        self.overdue = False
        self._final = True  # the timer is armed at the deadline itself
        self._hinted: tuple[str, str] | None = None  # (reason with its hint, reason alone)
        self._pending: Deferred | None = None
        self._reused = False
        self._retried = False
        self._stopped: str | None = None
        self._timer = None
        if pool.closing:
            self.result.errback(RetriableError(TRANSMITTER_CLOSED, host))
            return
        self._timer = reactor.callLater(timeout, self._expire)
        connection = pool.take_idle()
        if connection is not None:
            self._send(connection, True)
        else:
            self._acquire()

    # -- getting a connection ---------------------------------------------------------------------

    def _acquire(self) -> None:
        self._pending = pending = self._pool.acquire()
        pending.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, pair) -> None:
        self._pending = None
        connection, reused = pair
        if self._stopped is not None or self.result.called:
            self._pool.release(connection)
        elif not connection.connected:
            self._fail(RetriableError("connection closed before the request", self.host))
        else:
            self._send(connection, reused)

    def _connect_failed(self, failure: Failure) -> None:
        self._pending = None
        if self._stopped is not None:
            reason = self._stopped
        elif self._pool.closing:
            reason = TRANSMITTER_CLOSED
        elif failure.check(RetriableError):
            reason = failure.value.reason
        else:
            reason = describe_failure(failure)
        self._fail(RetriableError(reason, self.host))

    def _send(self, connection, reused: bool) -> None:
        self.connection = connection
        self._reused = reused
        connection.carry(self)

    # -- IAttempt: what the exchange settles it with ----------------------------------------------

    def succeed(self) -> None:
        self._pool.bare_closes = 0
        self._release()
        self._cancel_timer()
        if not self.result.called:
            self.result.callback(None)

    def fail(self, problem: Exception) -> None:
        self._release()
        self._fail(problem)

    def drop(self, problem: Exception) -> None:
        connection = self._detach()
        if connection is not None:
            connection.abort()
        self._fail(problem)

    def extend(self, seconds: float) -> None:
        timer = self._timer
        if timer is not None:
            now = self._reactor.seconds()
            left = self.deadline - now
            self._final = seconds >= left
            delay = max(0.0, left) if self._final else seconds
            if now + delay < timer.getTime():
                # Sooner: a new call rather than reset(), whose search of the reactor's heap
                # misses a call armed this turn and formats its repr for the ValueError.
                timer.cancel()
                self._timer = self._reactor.callLater(delay, self._expire)
            else:
                timer.reset(delay)

    def diagnosed(
        self,
        reason: str,
        answer: bytes | None = None,
        closed: bool = False,
        silent: bool = False,
        error: BaseException | None = None,
    ) -> str:
        """``reason``, with what is probably wrong added when the connection is a fresh one
        (a reused one already spoke with this receiver) and `diagnose` knows: the hint is
        logged once per host and cause. A hint drawn from a bare close is given from the
        second such close in a row to the host (a stopping receiver closes once). ``answer``,
        ``closed``, ``silent`` and ``error`` are what the exchange saw, as `diagnose` takes
        them. The failure made of it gets the reason alone as its ``short_reason``."""
        connection = self.connection
        protocol = getattr(self._wire, "protocol", None)
        if self._reused or connection is None or protocol is None:
            return reason
        hint = diagnose(
            self.host,
            protocol,
            connection.tls,
            answer=answer,
            closed=closed,
            handshaken=connection.handshaken,
            silent=silent,
            error=error,
        )
        if hint is None:
            return reason
        pool = self._pool
        if hint.bare:
            closes = pool.bare_closes = getattr(pool, "bare_closes", 0) + 1
            if closes < 2:
                return reason  # once may be a receiver stopping: say it the second time
        hinted = getattr(pool, "hinted", None)
        if hinted is not None and hint.cause not in hinted:
            hinted.add(hint.cause)
            log.error("{hint}", hint=hint.text, host=str(self.host), cause=hint.cause)
        hinted = f"{reason}; {hint.text}"
        self._hinted = (hinted, reason)
        return hinted

    # -- called by the connection -----------------------------------------------------------------

    def connection_lost(self, connection, reason: Failure) -> None:
        """The connection carrying this attempt ended before the exchange settled it."""
        if self._reused and not self._retried and not connection.heard and not self.result.called:
            self.connection = None
            self._retried = True
            log.debug(
                "reused connection to {host} closed before any answer byte; retrying once on"
                " another connection",
                host=str(self.host),
            )
            self._acquire()
            return
        connection.exchange.lost(reason, self)
        self.connection = None

    # -- deadline and cancellation ----------------------------------------------------------------

    def _expire(self) -> None:
        self._timer = None
        self.overdue = self._final
        connection = self.connection
        reason = self._wire.timed_out(self, None if connection is None else connection.exchange)
        self._stop(reason)
        # Do not depend on the transport reporting the abort: the verdict is due now.
        self._fail(RetriableError(reason, self.host))

    def _cancel(self, _: Deferred) -> None:
        self._cancel_timer()
        self.result.errback(defer.CancelledError())
        self._stop("cancelled")

    def _stop(self, reason: str) -> None:
        """Give up: cancel the wait for a connection, or abort the connection in use."""
        self._stopped = reason
        if self._pending is not None:
            self._pending.cancel()
        else:
            connection = self._detach()
            if connection is not None:
                connection.abort()

    # -- settling ---------------------------------------------------------------------------------

    def _detach(self):
        connection, self.connection = self.connection, None
        if connection is not None and connection.attempt is self:
            connection.attempt = None
        return connection

    def _release(self) -> None:
        connection = self._detach()
        if connection is not None:
            self._pool.release(connection)

    def _fail(self, problem: Exception) -> None:
        self._cancel_timer()
        hinted = self._hinted
        # the failure made of the reason `diagnosed` gave (hint added): the reason alone too
        if isinstance(problem, DeliveryError) and hinted and problem.reason == hinted[0]:
            problem.short_reason = hinted[1]
        if not self.result.called:
            self.result.errback(problem)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
