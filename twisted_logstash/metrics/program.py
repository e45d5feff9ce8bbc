"""``--metrics-port`` and ``--metrics-host`` of both programs: their check, and the endpoint
wrapped around a program (``WithMetrics``)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector
from twisted.application import service
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.metrics.server import (
    DEFAULT_METRICS_HOST,
    IHealth,
    MetricsService,
    WithMetrics,
)

__all__ = ["OPTIONS", "metrics_address", "with_metrics"]

#: the two flags, the same on both programs
OPTIONS = [
    [
        "metrics-port",
        None,
        None,
        "serve Prometheus metrics on /metrics and health on /health at this port (0: any"
        " free port, logged) [off]",
    ],
    ["metrics-host", None, None, "address of the metrics port [127.0.0.1]"],
]

log = Logger()


def metrics_address(options) -> tuple[str, int] | None:
    """``(host, port)`` from ``--metrics-host`` and ``--metrics-port``; None when
    ``--metrics-port`` was not given."""
    port_text = options.get("metrics_port")
    host = options.get("metrics_host")
    if port_text is None:
        if host is not None:
            raise ConfigurationError("--metrics-host needs --metrics-port")
        return None
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigurationError(
            f"--metrics-port takes a whole number, not {port_text!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"--metrics-port must be from 0 to 65535, not {port}")
    host = (host if host is not None else DEFAULT_METRICS_HOST).strip()
    if not host:
        raise ConfigurationError("--metrics-host takes an address, not an empty string")
    return host, port


def with_metrics(
    program: service.IService,
    collector: Collector,
    health: IHealth,
    address: tuple[str, int],
    reactor,
    *,
    stop: Callable[[int], None],
) -> WithMetrics:
    """``program`` with a metrics endpoint on ``address`` serving ``collector`` (in a registry
    of its own) and ``health``. If the port cannot be bound the program logs why and stops
    with status 1 (``stop``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    host, port = address

    def cannot_listen(failure: Failure) -> None:
        log.error(
            "cannot listen on {host}:{port} for --metrics-port: {reason}",
            host=host,
            port=port,
            reason=_reason(failure),
        )
        stop(1)

    metrics = MetricsService(registry, health, host, port, reactor, cannot_listen=cannot_listen)
    return WithMetrics(program, metrics)


def _reason(failure: Failure) -> str:
    error = failure.value
    socket_error = getattr(error, "socketError", None)
    return str(socket_error) if socket_error is not None else failure.getErrorMessage()
