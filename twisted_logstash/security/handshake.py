"""The server's TLS handshake deadline (``ssl_handshake_timeout``), and the one line that says
why a handshake failed.

``HandshakeTimeoutFactory`` wraps the application factory under TLS: a peer that has not
completed its handshake in time is dropped, and a handshake that fails is logged once, with the
peer's address and the cause in ``describe_tls_failure``'s words.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHandshakeListener, IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.security.failures import (
    CLOSED_DURING_HANDSHAKE,
    describe_peer,
    describe_tls_failure,
)

log = Logger()


def note_refusal(tls_protocol, refusal: str) -> bool:
    """Hand the reason a client certificate was refused to the connection's deadline watcher,
    which logs it in its one line about the failed handshake; False when there is none (the
    caller then logs the reason itself)."""
    watcher = getattr(tls_protocol, "wrappedProtocol", None)
    if not isinstance(watcher, _HandshakeTimeoutProtocol):
        return False
    if watcher.refusal is None:
        watcher.refusal = refusal
    return True


@implementer(IHandshakeListener)
class _HandshakeTimeoutProtocol(ProtocolWrapper):
    """Starts a timer when the peer connects; stops it when the handshake completes.

    It also says why a handshake failed: when the connection is lost before the handshake
    completed, one line names the peer and the cause (``describe_tls_failure`` of the reason,
    or the refused client certificate). Closes after a completed handshake are the
    application's business and are not logged here.
    """

    _timer = None
    _handshake_done = False
    _reported = False
    _closed_here = False
    #: why our verify callback refused the client's certificate (it logs nothing itself)
    refusal: str | None = None

    def makeConnection(self, transport):
        factory = self.factory
        self._timer = factory.reactor.callLater(factory.timeout, self._expired)
        super().makeConnection(transport)

    def handshakeCompleted(self):
        self._handshake_done = True
        self._cancel()
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()

    def connectionLost(self, reason):
        self._cancel()
        if not self._handshake_done and not self._reported:
            self._report(reason)
        super().connectionLost(reason)

    def loseConnection(self):
        self._closed_here = True
        super().loseConnection()

    def abortConnection(self):
        self._closed_here = True
        self.transport.abortConnection()

    def _report(self, reason: Failure) -> None:
        """Log why the handshake failed, once, at warn level (info for a mere TCP probe)."""
        self._reported = True
        if self.refusal is not None:
            cause = self.refusal
        elif self._closed_here or reason.check(ConnectionAborted):
            return  # closed on this side, on purpose (the input stopping): not a peer's failure
        elif reason.check(ConnectionDone, ConnectionLost):
            if not self._hello_received():
                log.info(
                    "{peer} closed the connection before starting a TLS handshake",
                    peer=self._peer(),
                )
                return
            # a client that refuses the server's certificate just goes, without an alert
            cause = CLOSED_DURING_HANDSHAKE
        else:
            cause = describe_tls_failure(reason)
        log.warn("TLS handshake with {peer} failed: {cause}", peer=self._peer(), cause=cause)

    def _hello_received(self) -> bool:
        """Whether OpenSSL read the peer's ClientHello (True when it cannot tell)."""
        get_handle = getattr(self.transport, "getHandle", None)
        try:
            connection = get_handle() if get_handle is not None else None
            return connection is None or connection.client_random() is not None
        except Exception:
            return True

    def _peer(self) -> str:
        return describe_peer(self.transport)

    def _cancel(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expired(self):
        self._timer = None
        self._reported = True  # this line says why; the abort that follows needs no other
        log.info(
            "dropped {peer}: no TLS handshake within {timeout} s",
            peer=self._peer(),
            timeout=self.factory.timeout,
        )
        self.transport.abortConnection()


class HandshakeTimeoutFactory(WrappingFactory):
    """Wrap an application factory under TLS so that slow or silent handshakes are dropped.

    ``timeout`` is in seconds (``ssl_handshake_timeout`` is in milliseconds).
    """

    protocol = _HandshakeTimeoutProtocol
    noisy = False

    def __init__(self, wrappedFactory, reactor: IReactorTime, timeout: float):
        super().__init__(wrappedFactory)
        self.reactor = reactor
        self.timeout = timeout

    def buildProtocol(self, addr):
        """None from the application factory (a refused peer) stays None."""
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        return self.protocol(self, inner)
