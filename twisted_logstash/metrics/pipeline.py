"""The metrics and health of ``logstash-pipeline``: every input's and output's, in one registry.

A pipeline may hold several plugins of the same kind (two ``logstash`` outputs), whose
collectors (``InputCollector``, ``OutputCollector``) would emit the same metric names: every
sample gets a ``plugin`` label (the plugin's ``id``, or ``NAME@LINE:COLUMN`` where the pipeline
names it), one family per name, so the exposition stays valid and a dashboard reads one label
whether the pipeline has one plugin of a kind or several. ``stdin``, ``generator``, ``stdout``
and ``file`` have no collector: their counts are in the program's lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from zope.interface import implementer

from twisted_logstash.metrics.server import IHealth

__all__ = ["PipelineCollector", "PipelineHealth"]

LABEL = "plugin"


class PipelineCollector(Collector):
    """The families of ``collectors`` (``(plugin, collector)`` pairs), merged by name, every
    sample labelled with its plugin."""

    def __init__(self, collectors: Sequence[tuple[str, Collector]]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for plugin, collector in self.collectors:
            for family in collector.collect():
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    labels = {LABEL: plugin, **sample.labels}
                    into.samples.append(sample._replace(labels=labels))
        yield from merged.values()


@implementer(IHealth)
class PipelineHealth:
    """Ok while the pipeline runs and every plugin can take work: 503 while it drains, or
    with the first plugin that cannot (an output whose every host is isolated, an input not
    listening), named."""

    def __init__(self, pipeline, checks: Sequence[tuple[str, IHealth]]) -> None:
        self.pipeline = pipeline
        self.checks = list(checks)

    def health(self) -> tuple[bool, str]:
        if not self.pipeline.running or self.pipeline.fanout.stopping:
            return False, "draining"
        for plugin, check in self.checks:
            ok, why = check.health()
            if not ok:
                return False, f"{plugin}: {why}"
        return True, "ok"
