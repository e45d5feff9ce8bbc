"""The input as a Twisted service, for either wire.

It listens on any server endpoint (plain TCP, ``logstash-tls:...``, or whatever a program passes)
with any receiving factory. Stopping is graceful: stop listening, let the requests in flight be
answered (``IInput.drain()`` of the factory), and only after ``drain_timeout`` drop what is left
(``IInput.abort()``), so that a restart does not turn a batch the sink already took into a silent
loss.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from twisted_logstash.interfaces import IInput

__all__ = ["InputService"]

log = Logger()


class InputService(service.Service):
    """Listen with ``factory`` on ``endpoint`` while running.

    After ``startService``, ``listening`` is the Deferred of ``endpoint.listen`` (it fails if the
    port cannot be bound) and ``port`` the ``IListeningPort`` once it fired. ``stopService``
    returns a Deferred that fires once the port is closed and the factory drained (or the drain
    was cut short after ``drain_timeout`` seconds).
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: Factory,
        reactor=None,
        *,
        drain_timeout: float = 10.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.endpoint = endpoint
        self.factory = factory
        self.reactor = reactor
        self.drain_timeout = drain_timeout
        self.port: IListeningPort | None = None
        self.listening: defer.Deferred | None = None

    def startService(self) -> None:
        super().startService()
        self.listening = self.endpoint.listen(self.factory)
        self.listening.addCallback(self._listened)

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        address = port.getHost()
        log.info(
            "input listening on {host}:{port}",
            host=getattr(address, "host", address),
            port=getattr(address, "port", ""),
        )
        return port

    def stopService(self) -> defer.Deferred:
        super().stopService()
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        listening = self.listening
        if listening is not None and not listening.called:
            listening.cancel()  # a listen still under way is given up
        stopped = None
        if self.port is not None:
            port, self.port = self.port, None
            stopped = defer.maybeDeferred(port.stopListening)
        # a factory that is not an IInput has nothing to drain: closing the port is all
        draining = IInput(self.factory, None)
        # draining starts at once, so that an answer leaving now already says Connection: close
        drained = draining.drain() if draining is not None else None
        if drained is not None:
            drained.addTimeout(self.drain_timeout, self.reactor)
        if stopped is not None:
            await stopped
        if drained is None:
            return
        try:
            await drained
        except defer.TimeoutError:
            log.warn(
                "requests still in flight after {timeout} s; dropping their connections",
                timeout=self.drain_timeout,
            )
            draining.abort()
