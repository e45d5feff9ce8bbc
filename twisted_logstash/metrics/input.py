"""The input's metrics (``logstash_input_*``) and health, read from its ``InputStats``.

One collector serves a single input (the stats of its factory) and the parent of ``--workers``
(the sum of its workers, ``metrics/workers.py``) alike: it is given a callable that returns the
``InputStats`` to expose at each scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from zope.interface import implementer

from twisted_logstash.metrics.families import histogram
from twisted_logstash.metrics.server import IHealth
from twisted_logstash.transport.inputstats import InputStats

__all__ = ["InputCollector", "InputHealth"]

P = "logstash_input_"


class InputCollector(Collector):
    """``logstash_input_*`` from ``stats()`` at each scrape. ``protocol`` (``http`` or
    ``lumberjack``) names the batches: requests on the native wire, windows on the framed
    one. ``workers``, if given, returns how many worker processes are alive."""

    def __init__(
        self,
        stats: Callable[[], InputStats],
        protocol: str,
        workers: Callable[[], int] | None = None,
    ) -> None:
        self.stats = stats
        self.protocol = protocol
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        s = self.stats()
        yield _counter(
            "events_received_total", "Events received and handed to the sink.", s.events_received
        )
        yield _counter(
            "events_acknowledged_total",
            "Events acknowledged to their sender (the sink took them).",
            s.events_acknowledged,
        )
        yield _counter(
            "events_refused_total",
            "Events of batches the sink failed (answered 500/503, or closed unACKed).",
            s.events_refused,
        )
        refused = CounterMetricFamily(
            P + "refused_total",
            "Requests or windows refused, by status: the HTTP status answered (native wire), "
            "or closed (the connection closed without an ACK: the framed wire's refusal).",
            labels=["status"],
        )
        for status, count in sorted(s.refused.items()):
            refused.add_metric([status], count)
        yield refused
        yield _counter(
            "too_many_requests_total",
            "Requests answered 429 (too many waiting, the input full, or the sink too slow).",
            s.refused.get("429", 0),
        )
        if self.protocol == "lumberjack":
            yield _counter("windows_total", "Windows handed to the sink.", s.batches)
        else:
            yield _counter(
                "requests_total", "Requests whose events were handed to the sink.", s.batches
            )
        yield _counter("received_bytes_total", "Bytes read from senders.", s.bytes_in)
        yield _counter("sent_bytes_total", "Bytes written to senders (answers, ACKs).", s.bytes_out)
        yield GaugeMetricFamily(
            P + "connections_open", "Connections open now.", value=s.connections_open
        )
        yield _counter("connections_total", "Connections accepted.", s.connections_total)
        yield _counter(
            "connections_refused_total",
            "Connections refused because --max-connections were open.",
            s.connections_refused,
        )
        yield histogram(
            P + "sink_seconds",
            "How long the sink took per batch, from handing it over to its answer.",
            s.sink,
        )
        if self.workers is not None:
            yield GaugeMetricFamily(
                P + "workers", "Worker processes alive (--workers).", value=self.workers()
            )


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(P + name, documentation, value=value)


@implementer(IHealth)
class InputHealth:
    """A single input's health: ok while its port is bound and it is not draining."""

    def __init__(self, input_service) -> None:
        self.input = input_service

    def health(self) -> tuple[bool, str]:
        service = self.input
        if not service.running or getattr(service.factory, "draining", False):
            return False, "draining"
        if service.port is None:
            return False, "not listening yet"
        return True, "ok"
