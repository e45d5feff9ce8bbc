"""Helpers to build metric families from plain numbers."""

from __future__ import annotations

from prometheus_client.metrics_core import HistogramMetricFamily

from twisted_logstash.transport.inputstats import Timings


def histogram(name: str, documentation: str, timings: Timings) -> HistogramMetricFamily:
    """A histogram family from ``Timings`` (buckets made cumulative here, at scrape time)."""
    buckets = []
    running = 0
    for bound, count in zip(timings.bounds, timings.counts, strict=False):
        running += count
        buckets.append((f"{bound:g}", running))
    running += timings.counts[-1]
    buckets.append(("+Inf", running))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=timings.total)
