"""Operating ``logstash-pipeline`` (issue 14 for the third program), without processes: its
periodic and final lines and its exit status on a ``Clock``, one registry for every plugin's
metrics (a ``plugin`` label tells them apart), its health, and the log flags in both spellings
(ours and Logstash's). The real processes are in ``test_pipeline_operating_programs.py``."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
from support_transmitter import OK, TERMINAL, FakeTransmitter
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from zope.interface import implementer

from twisted_logstash.codecs.events import Decorations
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.metrics.pipeline import PipelineCollector, PipelineHealth
from twisted_logstash.metrics.server import IHealth
from twisted_logstash.pipeline.deadletter import DeadLetterFile
from twisted_logstash.pipeline.output import Output
from twisted_logstash.pipeline.sources import GeneratorSource
from twisted_logstash.pipelines.build import FanOut, Pipeline, SourceInput
from twisted_logstash.tap.help import flags_of, grouped
from twisted_logstash.tap.pipeline import PIPELINE_GROUPS, Options, PipelineProgram, log_settings
from twisted_logstash.transport.hosts import Host

A = Host("a.example", 9800)


def _output(clock, fake, **kw):
    output = Output(fake, [A], clock, batch_delay=0, **kw)
    output.log = Logger(observer=lambda event: None)
    return output


def _program(clock, outputs, count=5, **kw):
    fanout = FanOut(outputs)
    source = GeneratorSource(count, clock, slice_size=2, host_name="h")
    feeding = SourceInput(source, fanout, Decorations(), clock)
    pipeline = Pipeline([feeding], outputs, fanout, clock)
    exits: list[int] = []
    program = PipelineProgram(pipeline, clock, exit=exits.append, **kw)
    lines: list[str] = []
    program.log = Logger(observer=lambda event: lines.append(formatEvent(event)))
    clock.running = True
    stopped: list[bool] = []
    clock.stop = lambda: stopped.append(True)
    return program, lines, exits, stopped


def _run(clock, program, stopped):
    program.startService()
    for _ in range(20):
        clock.advance(0.1)
    assert stopped == [True]


def test_a_finite_pipeline_logs_its_counts_every_interval_and_ends_with_one_line():
    clock = Clock()
    output = _output(clock, FakeTransmitter(clock, default=OK))
    program, lines, exits, stopped = _program(clock, [output], stats_interval=5)
    _run(clock, program, stopped)  # 2 s
    clock.advance(3)
    assert lines[-1].startswith(
        "receiving: 5 events acknowledged in 3 batches (+5 in 5.0 s, 1.0 events/s)"
        "; sending: 5 events acknowledged (+5 in 5.0 s, 1.0 events/s), 5 read,"
    ), lines
    program.stopService()
    assert lines[-1] == (
        "received: 5 events acknowledged (3 batches) in 5.0 s (1.0 events/s)"
        "; sent: 5 events acknowledged in 5.0 s (1.0 events/s), 0 dead-lettered, 0 retries"
    )
    assert exits == []  # 0: twistd's own status
    assert program.exit_code == 0


def test_stats_interval_0_logs_no_periodic_line():
    clock = Clock()
    output = _output(clock, FakeTransmitter(clock, default=OK))
    program, lines, _, stopped = _program(clock, [output], stats_interval=0)
    _run(clock, program, stopped)
    clock.advance(60)
    assert not any(line.startswith("receiving:") for line in lines), lines


def test_a_pipeline_that_dead_lettered_exits_3(tmp_path):
    clock = Clock()
    dead = DeadLetterFile(str(tmp_path / "dead.ndjson"), clock)
    output = _output(clock, FakeTransmitter(clock, default=TERMINAL), dead_letter=dead)
    program, lines, exits, stopped = _program(clock, [output])
    _run(clock, program, stopped)
    program.stopService()
    assert exits == [3]
    assert "5 dead-lettered" in lines[-1]


def test_a_stop_with_nothing_unacknowledged_keeps_twistd_from_dying_by_the_signal():
    clock = Clock()
    clock._exitSignal = 15  # twistd's record of the SIGTERM it will re-send
    output = _output(clock, FakeTransmitter(clock, default=OK))
    program, _, exits, stopped = _program(clock, [output])
    _run(clock, program, stopped)
    program.stopService()
    assert clock._exitSignal is None
    assert exits == []


# -- metrics and health ---------------------------------------------------------------------


class Fixed:
    def __init__(self, value):
        self.value = value

    def collect(self):
        yield CounterMetricFamily("logstash_output_events_total", "Events.", value=self.value)
        family = CounterMetricFamily("logstash_output_failures", "By host.", labels=["host"])
        family.add_metric(["h:1"], self.value)
        yield family
        yield HistogramMetricFamily(
            "logstash_output_seconds", "Time.", buckets=[("1", 1), ("+Inf", 2)], sum_value=3
        )


def test_one_registry_serves_every_plugin_with_a_plugin_label():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector([("logstash@3:3", Fixed(1)), ("logstash@4:3", Fixed(2))]))
    text = generate_latest(registry).decode()
    assert text.count("# TYPE logstash_output_events_total counter") == 1, text
    assert 'logstash_output_events_total{plugin="logstash@3:3"} 1.0' in text
    assert 'logstash_output_events_total{plugin="logstash@4:3"} 2.0' in text
    assert 'logstash_output_failures_total{host="h:1",plugin="logstash@4:3"} 2.0' in text
    assert 'logstash_output_seconds_bucket{le="+Inf",plugin="logstash@3:3"} 2.0' in text


@implementer(IHealth)
class Says:
    def __init__(self, ok, why="ok"):
        self.answer = (ok, why)

    def health(self):
        return self.answer


class Running:
    running = True

    class fanout:  # noqa: N801
        stopping = False


def test_health_is_503_while_draining_or_when_a_plugin_cannot_take_work():
    pipeline = Running()
    checks = [("beats@1:9", Says(True)), ("logstash@2:10", Says(True))]
    assert PipelineHealth(pipeline, checks).health() == (True, "ok")
    checks[1] = ("logstash@2:10", Says(False, "every host is isolated: a:9800"))
    assert PipelineHealth(pipeline, checks).health() == (
        False,
        "logstash@2:10: every host is isolated: a:9800",
    )
    pipeline.running = False
    assert PipelineHealth(pipeline, []).health() == (False, "draining")


# -- flags ----------------------------------------------------------------------------------


def parsed(*argv: str) -> Options:
    options = Options()
    options.parseOptions(["-e", "input { stdin { } } output { stdout { } }", *argv])
    return options


@pytest.mark.parametrize(
    ("argv", "level", "kind"),
    [
        ((), LogLevel.info, "text"),
        (("--log-level", "debug", "--log-format", "json"), LogLevel.debug, "json"),
        (("--log.level", "trace"), LogLevel.debug, "text"),
        (("--log.level", "fatal"), LogLevel.error, "text"),
        (("--log.level=WARN", "--log.format=plain"), LogLevel.warn, "text"),
        (("--log.format", "json"), LogLevel.info, "json"),
    ],
)
def test_log_flags_in_both_spellings(argv, level, kind):
    settings = log_settings(parsed(*argv))
    assert (settings.level, settings.format) == (level, kind)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("--log.level", "verbose"),
            "--log.level takes trace, debug, info, warn, error or fatal, not 'verbose'",
        ),
        (("--log.format", "xml"), "--log.format takes plain or json, not 'xml'"),
        (("--log-level", "loud"), "--log-level takes debug, info, warn or error, not 'loud'"),
        (
            ("--log-level", "debug", "--log.level", "info"),
            "give one of --log-level and --log.level",
        ),
    ],
)
def test_a_wrong_log_flag_names_the_flag_as_typed(argv, message):
    with pytest.raises(ConfigurationError) as caught:
        log_settings(parsed(*argv))
    assert str(caught.value) == message


def test_help_puts_the_operation_flags_in_their_group():
    groups = dict(grouped(Options(), PIPELINE_GROUPS))
    assert "Other" not in groups
    assert {
        "metrics-port",
        "metrics-host",
        "stats-interval",
        "log-level",
        "log-format",
        "log.level",
        "log.format",
    } <= set(groups["Operation"])
    assert set(flags_of(Options())) == {f for flags in groups.values() for f in flags}
    assert "Operation:" in Options().getUsage()


def test_every_network_plugin_of_a_built_pipeline_has_its_metrics_under_its_plugin_label():
    from twisted_logstash.pipelines.build import build
    from twisted_logstash.pipelines.syntax import parse
    from twisted_logstash.tap.pipeline import _with_metrics

    text = """input {
  beats { host => "127.0.0.1" port => 0 }
  logstash { host => "127.0.0.1" port => 0 ssl_enabled => false id => "native" }
  generator { count => 1 }
}
output {
  logstash { hosts => "127.0.0.1:1" ssl_enabled => false }
  stdout { }
}"""
    clock = Clock()
    program = PipelineProgram(build(parse(text, "t.conf"), clock), clock)
    served = _with_metrics(program, ("127.0.0.1", 0), clock)
    registry = served.metrics.registry
    text = generate_latest(registry).decode()
    assert 'logstash_input_windows_total{plugin="beats@2:3"} 0.0' in text
    assert 'logstash_input_requests_total{plugin="native"} 0.0' in text
    assert 'logstash_output_events_queued_total{plugin="logstash@7:3"} 0.0' in text
    assert "generator" not in text and "stdout" not in text
    assert [plugin for plugin, _ in served.metrics.health.checks] == [
        "beats@2:3",
        "native",
        "logstash@7:3",
    ]
