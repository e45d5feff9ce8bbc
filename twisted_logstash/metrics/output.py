"""The output's metrics (``logstash_output_*``) and health, read at scrape time from the
``Output`` (``stats``, ``round_trips``, its queue) and its ``Balancer`` (the per-host record)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from zope.interface import implementer

from twisted_logstash.metrics.families import histogram
from twisted_logstash.metrics.server import IHealth

__all__ = ["OutputCollector", "OutputHealth"]

P = "logstash_output_"


class OutputCollector(Collector):
    """``logstash_output_*`` of ``output`` (a ``pipeline.output.Output``) at each scrape."""

    def __init__(self, output) -> None:
        self.output = output

    def collect(self) -> Iterator[Metric]:
        output = self.output
        s = output.stats
        yield _counter(
            "events_queued_total", "Events accepted from the source or send().", s.queued
        )
        yield _counter(
            "events_attempted_total",
            "Events handed to the wire, once per attempt (a retried event counts again).",
            s.sent,
        )
        yield _counter(
            "events_acknowledged_total", "Events acknowledged by a receiver.", s.acknowledged
        )
        yield _counter(
            "events_dead_lettered_total",
            "Events refused for good and written to the dead-letter file.",
            s.dead_lettered,
        )
        yield _counter(
            "events_dropped_total",
            "Events refused for good that could not be dead-lettered (lost).",
            s.dropped,
        )
        yield _counter(
            "batches_acknowledged_total", "Batches acknowledged by a receiver.", s.batches
        )
        yield _counter("retries_total", "Attempts that failed and were scheduled again.", s.retries)
        yield GaugeMetricFamily(
            P + "batches_in_flight",
            "Batches being attempted or waiting for a retry.",
            value=output.in_flight,
        )
        queue = output.queue
        kind = "disk" if getattr(queue, "durable", False) else "memory"
        depth = GaugeMetricFamily(
            P + "queue_events", "Events in the queue, not acknowledged yet.", labels=["queue"]
        )
        depth.add_metric([kind], queue.pending())
        yield depth
        size = GaugeMetricFamily(
            P + "queue_bytes",
            "Bytes of the events in the queue: the disk queue's stored JSON; for the memory"
            " queue an estimate, its events times the mean JSON size of the events encoded so far.",
            labels=["queue"],
        )
        held_bytes = getattr(queue, "held_bytes", None)
        size.add_metric([kind], held_bytes() if held_bytes is not None else _estimate(output))
        yield size
        transmitter = output.transmitter
        yield _counter(
            "encoded_bytes_total",
            "Bytes of JSON encoded for receivers, before compression (once per batch; retries"
            " reuse the bytes).",
            getattr(transmitter, "json_bytes", 0),
        )
        yield GaugeMetricFamily(
            P + "waiting_events",
            "Events waiting for room in the queue (their source is paused).",
            value=output.pending() - queue.pending(),
        )
        yield from self._hosts(output.balancer)
        yield histogram(
            P + "batch_round_trip_seconds",
            "Seconds from sending a batch to its acknowledgement, per acknowledged batch.",
            output.round_trips,
        )

    def _hosts(self, balancer) -> Iterator[Metric]:
        labels = ["host"]
        isolated = GaugeMetricFamily(
            P + "host_isolated",
            "1 while the host is isolated after a failure (cool-off).",
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            P + "host_in_flight", "Attempts in flight on the host.", labels=labels
        )
        failures = CounterMetricFamily(
            P + "host_failures_total",
            "Failed attempts on the host, by reason.",
            labels=["host", "reason"],
        )
        isolations = CounterMetricFamily(
            P + "host_isolations_total", "Times the host was isolated.", labels=labels
        )
        success = GaugeMetricFamily(
            P + "host_last_success_timestamp_seconds",
            "Unix time of the host's last acknowledged batch (absent before the first).",
            labels=labels,
        )
        for host in balancer.hosts:
            name = str(host)
            record = balancer.record(host)
            isolated.add_metric([name], 1 if balancer.is_cooling_off(host) else 0)
            in_flight.add_metric([name], record.in_flight)
            for reason, count in sorted(record.failures.items()):
                failures.add_metric([name, reason], count)
            isolations.add_metric([name], record.times_isolated)
            if record.last_success is not None:
                success.add_metric([name], record.last_success)
        yield from (isolated, in_flight, failures, isolations, success)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(P + name, documentation, value=value)


@implementer(IHealth)
class OutputHealth:
    """The output's health: ok while it runs and some host is not isolated."""

    def __init__(self, output) -> None:
        self.output = output

    def health(self) -> tuple[bool, str]:
        output = self.output
        if not output.running:
            return False, "draining" if getattr(output, "_stopped", False) else "not started"
        balancer = output.balancer
        if balancer.all_isolated():
            return False, "every host is isolated: " + ", ".join(str(h) for h in balancer.hosts)
        return True, "ok"


def _estimate(output) -> int:
    """The memory queue's bytes, estimated: it holds Python objects, whose size is not measured
    (that would cost a serialization per event); the transmitter measures the JSON it encodes
    once per batch anyway."""
    transmitter = output.transmitter
    events = getattr(transmitter, "json_events", 0)
    if not events:
        return 0
    return round(output.queue.pending() * getattr(transmitter, "json_bytes", 0) / events)
