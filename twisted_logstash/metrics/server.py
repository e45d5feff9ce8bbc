"""The metrics endpoint: a small twisted.web site serving ``/metrics`` and ``/health``.

``/metrics`` is prometheus_client's own exposition (``generate_latest``) of one program's
``CollectorRegistry``: never the process-wide ``REGISTRY``, so that tests and several services
in one process stay apart. ``/health`` asks an ``IHealth``: 200 ``ok`` while the service can
take work, 503 and a short reason otherwise (draining, every host isolated).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import Interface, implementer

__all__ = ["DEFAULT_METRICS_HOST", "IHealth", "MetricsService", "WithMetrics", "metrics_site"]

log = Logger()

DEFAULT_METRICS_HOST = "127.0.0.1"


class IHealth(Interface):
    """Whether a service can take work now."""

    def health() -> tuple[bool, str]:
        """``(True, "ok")`` while the service runs and can take work; ``(False, reason)``
        otherwise, the reason a few words (``"draining"``)."""


@implementer(IHealth)
class AlwaysHealthy:
    """The health of a program that has nothing to say (``ok`` while it answers)."""

    def health(self) -> tuple[bool, str]:
        return True, "ok"


class _Metrics(Resource):
    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request) -> bytes:
        body = generate_latest(self.registry)
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return body


class _Health(Resource):
    isLeaf = True

    def __init__(self, health: IHealth) -> None:
        super().__init__()
        self.health = health

    def render_GET(self, request) -> bytes:
        ok, reason = self.health.health()
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        if not ok:
            request.setResponseCode(503)
        return (reason + "\n").encode("utf-8")


class _Root(Resource):
    """``/metrics`` and ``/health``; anything else is 404."""

    def getChild(self, path: bytes, request) -> Resource:
        return notFound()


class _QuietSite(Site):
    """A site that writes no access line per scrape, nor a line per start and stop."""

    noisy = False

    def log(self, request) -> None:
        pass

    def logPrefix(self) -> str:
        return "metrics"


def metrics_site(registry: CollectorRegistry, health: IHealth) -> Site:
    """The site: ``/metrics`` and ``/health`` (anything else is 404)."""
    root = _Root()
    root.putChild(b"metrics", _Metrics(registry))
    root.putChild(b"health", _Health(health))
    return _QuietSite(root)


class MetricsService(service.Service):
    """Serve ``registry`` and ``health`` on ``host``:``port`` (0: a free port, logged) while
    running.

    ``listening`` is the Deferred of the listen (the ``IListeningPort``), ``port`` the port
    once bound. ``cannot_listen``, if given, is called with the Failure when the port cannot
    be bound (a program stops then); otherwise the failure is logged.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health: IHealth,
        host: str = DEFAULT_METRICS_HOST,
        port: int = 0,
        reactor=None,
        *,
        cannot_listen: Callable[[Failure], None] | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.registry = registry
        self.health = health
        self.host = host
        self.port_number = port
        self.reactor = reactor
        self.cannot_listen = cannot_listen
        self.port: IListeningPort | None = None
        self.listening: defer.Deferred | None = None

    def startService(self) -> None:
        super().startService()
        host = self.host.strip("[]")
        kind = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
        endpoint = kind(self.reactor, self.port_number, interface=host)
        self.listening = endpoint.listen(metrics_site(self.registry, self.health))
        self.listening.addCallbacks(self._listened, self._failed)

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        address = port.getHost()
        shown = f"[{address.host}]" if ":" in address.host else address.host
        log.info(
            "metrics on http://{host}:{port}/metrics, health on /health",
            host=shown,
            port=address.port,
        )
        return port

    def _failed(self, failure: Failure) -> None:
        if self.cannot_listen is not None:
            self.cannot_listen(failure)
        else:
            log.error(
                "cannot serve metrics on {host}:{port}: {reason}",
                host=self.host,
                port=self.port_number,
                reason=failure.getErrorMessage(),
            )

    def stopService(self) -> defer.Deferred:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)


class WithMetrics(service.MultiService):
    """A program and its metrics endpoint: the endpoint starts first and stops last, so that
    ``/health`` answers 503 while the program drains (and ``/metrics`` has the last counts)."""

    def __init__(self, program: service.IService, metrics: MetricsService) -> None:
        super().__init__()
        self.program = program
        self.metrics = metrics
        metrics.setServiceParent(self)
        program.setServiceParent(self)

    def setServiceParent(self, parent):
        """twistd's application: the program sets its log observer on it, as it does when it
        runs without metrics (``attach_logs``, ``logs.attach``)."""
        attach_logs = getattr(self.program, "attach_logs", None)
        if attach_logs is not None:
            attach_logs(parent)
        return super().setServiceParent(parent)

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        stopped = defer.maybeDeferred(self.program.stopService)

        def then_metrics(result):
            done = defer.maybeDeferred(self.metrics.stopService)
            return done.addBoth(lambda _: result)

        return stopped.addBoth(then_metrics)

    def __getattr__(self, name: str):
        # the program's own attributes (exit_code, output, input ...) stay reachable
        if name == "program":
            raise AttributeError(name)
        return getattr(self.program, name)
