"""``twistd logstash-pipeline``: run a Logstash pipeline file (``-f FILE``) or string
(``-e STRING``): inputs, outputs, and the events of every input in every output.

The file is Logstash's syntax (``twisted_logstash/pipelines/``). Everything is parsed, checked
and built in ``makeService``, before twistd starts the reactor: a mistake is one line on stderr
naming ``FILE:LINE:COLUMN``, and exit status 2 with nothing bound. ``-t`` checks and exits, as
Logstash's ``--config.test_and_exit``.

It is operated as the two other programs are (issue 14), with their pieces: ``--log-level`` and
``--log-format`` (also in Logstash's spelling, ``--log.level`` and ``--log.format``), a line of
counts every ``--stats-interval`` seconds and one human line at the end (``progress``), metrics
and health for every plugin on ``--metrics-port`` (``metrics/pipeline.py``), and the exit
statuses of ``logstash-output`` (``EXIT_*``): 0 when every event was had by every output (or a
SIGTERM/SIGINT left nothing unacknowledged), 1 when events were not delivered or an input
failed, 2 for a configuration error, 3 when an output dead-lettered events.
"""

from __future__ import annotations

import sys

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage

from twisted_logstash import logs, progress
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.metrics.program import OPTIONS as METRICS_OPTIONS
from twisted_logstash.metrics.program import metrics_address
from twisted_logstash.tap.common import (
    ProgramOptions,
    configuration_errors,
    exit_with,
    keep_exit_status,
)
from twisted_logstash.tap.input import log_beside_events

PROGRAM = "logstash-pipeline"

#: exit statuses, as ``logstash-output``'s (docs/output.md, "Exit status")
EXIT_OK = 0
EXIT_UNDELIVERED = 1
EXIT_CONFIGURATION = 2
EXIT_DEAD_LETTERED = 3

#: Logstash's ``--log.level`` values as ours (Logstash's trace and fatal have no twisted level)
LOGSTASH_LEVELS = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "error": "error",
    "fatal": "error",
}
#: Logstash's ``--log.format`` values as ours
LOGSTASH_FORMATS = {"plain": "text", "json": "json"}

#: the ``--help`` groups (``tap/help.py``): the pipeline is where the sources and sinks are
PIPELINE_GROUPS: dict[str, tuple[str, ...]] = {
    "Source and sink": ("path.config", "config.string", "config.test_and_exit"),
    "Operation": (
        "metrics-port",
        "metrics-host",
        "stats-interval",
        "log-level",
        "log.level",
        "log-format",
        "log.format",
        "log-rotate-length",
        "log-max-rotated",
        "help",
        "version",
    ),
}


class Options(ProgramOptions):
    synopsis = "(-f FILE | -e STRING) [-t] [options]"
    longdesc = (
        "Run a Logstash pipeline: inputs logstash, beats, stdin, generator; outputs logstash, "
        "lumberjack, stdout, file; with Logstash's settings. See docs/pipelines.md."
    )
    optParameters = [
        ["path.config", "f", None, "the pipeline file"],
        ["config.string", "e", None, "the pipeline, given inline"],
        *METRICS_OPTIONS,
        progress.STATS_OPTION,
        *logs.OPTIONS,
        [
            "log.level",
            None,
            None,
            "Logstash's spelling: trace, debug, info, warn, error or fatal (trace is debug,"
            " fatal is error)",
        ],
        ["log.format", None, None, "Logstash's spelling: plain (text) or json"],
    ]
    optFlags = [["config.test_and_exit", "t", "check the pipeline (and its files) and exit"]]

    def postOptions(self):
        if bool(self["path.config"]) == bool(self["config.string"]):
            raise usage.UsageError("give the pipeline with one of -f FILE or -e STRING")

    def getUsage(self, width: int | None = None) -> str:
        from twisted_logstash.tap.help import grouped_usage

        return grouped_usage(self, PIPELINE_GROUPS, width)


def log_settings(options: Options) -> logs.LogSettings:
    """``--log-level``/``--log-format``, or Logstash's ``--log.level``/``--log.format`` (one
    spelling of each), and ``--log-rotate-length``/``--log-max-rotated`` (ours alone: Logstash
    has no such settings), checked."""
    level = _logstash_spelling(options, "log-level", "log.level", LOGSTASH_LEVELS)
    kind = _logstash_spelling(options, "log-format", "log.format", LOGSTASH_FORMATS)
    return logs.LogSettings.from_flags(
        level, kind, options["log-rotate-length"], options["log-max-rotated"]
    )


def _logstash_spelling(options: Options, ours: str, theirs: str, values: dict) -> str | None:
    given = options[theirs]
    if given is None:
        return options[ours]
    if options[ours] is not None:
        raise ConfigurationError(f"give one of --{ours} and --{theirs}")
    value = values.get(given.strip().lower())
    if value is None:
        *most, last = values
        raise ConfigurationError(f"--{theirs} takes {', '.join(most)} or {last}, not {given!r}")
    return value


def read_config(options: Options):
    """The parsed pipeline the options name; ConfigurationError if the file cannot be read."""
    from twisted_logstash.pipelines.syntax import parse

    path = options["path.config"]
    if path is None:
        return parse(options["config.string"], "config string")
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as error:
        raise ConfigurationError(f"{path}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: is not UTF-8 text") from None
    return parse(text, path)


def _is_output(output) -> bool:
    """A ``logstash`` or ``lumberjack`` output (an ``Output``), not a stdout or file sink."""
    return hasattr(output, "stats") and hasattr(output, "balancer")


class PipelineProgram(logs.ProgramLogs, service.MultiService):
    """The pipeline as a program: sets the log observer, logs its counts every
    ``stats_interval`` seconds, ends with one line, and chooses the exit status (``EXIT_*``).

    The counts are the pipeline's plugins' own: an input's, what its senders were acknowledged
    (``logstash``, ``beats``: their ``InputStats``) or what every output had (``stdin``,
    ``generator``); the outputs', their ``OutputStats`` (``logstash``, ``lumberjack``), summed.
    """

    log = Logger(namespace="twisted_logstash.pipelines")

    def __init__(
        self,
        pipeline,
        reactor,
        exit=exit_with,
        *,
        stats_interval: float = 0,
        log_settings: logs.LogSettings | None = None,
        twistd_options=None,
    ):
        super().__init__()
        self.pipeline = pipeline
        self._reactor = reactor
        self._exit = exit
        self.exit_code = EXIT_OK
        self.stats_interval = stats_interval
        self.log_settings = log_settings
        self.twistd_options = twistd_options
        self.started_at: float | None = None
        self.summary: str | None = None
        self._report: progress.PeriodicReport | None = None
        pipeline.setServiceParent(self)

    def outputs(self) -> list:
        return [output for output in self.pipeline.outputs if _is_output(output)]

    def counts(self) -> tuple[progress.InputCounts, progress.OutputCounts | None]:
        """The inputs' counts summed, and the outputs' (None: only stdout and file outputs)."""
        inputs = [_input_counts(each) for each in self.pipeline.inputs]
        known = [c.connections for c in inputs if c.connections is not None]
        accepted = [c.connections_total for c in inputs if c.connections_total is not None]
        received = progress.InputCounts(
            events=sum(c.events for c in inputs),
            batches=sum(c.batches for c in inputs),
            connections=sum(known) if known else None,
            connections_total=sum(accepted) if accepted else None,
        )
        outputs = [progress.output_counts(output) for output in self.outputs()]
        if not outputs:
            return received, None
        sent = progress.OutputCounts(
            **{
                name: sum(getattr(c, name) for c in outputs)
                for name in ("read", "acknowledged", "dead_lettered", "dropped", "retries")
            },
            undelivered=sum(c.undelivered for c in outputs),
        )
        return received, sent

    def startService(self) -> None:
        super().startService()
        self.started_at = self._reactor.seconds()
        self._report = progress.PeriodicReport(
            self._reactor,
            self.stats_interval,
            self.counts,
            _interval_line,
            lambda line: self.log.info("{line}", line=line),
        )
        self._report.start()

    @defer.inlineCallbacks
    def stopService(self):
        # a stop by SIGTERM/SIGINT ends with the status chosen here, not by the signal
        keep_exit_status(self._reactor)
        if self._report is not None:
            self._report.stop()
            self._report = None
        yield super().stopService()
        # the pipeline said what was left, and gave the process status 1 for it
        self.exit_code = self.pipeline.exit_code
        outputs = self.outputs()
        dropped = sum(output.stats.dropped for output in outputs)
        if dropped:
            self.log.error(
                "{count} events were refused and could not be dead-lettered: they are lost",
                count=dropped,
            )
            self._set_exit(EXIT_UNDELIVERED)
        if any(output.stats.dead_lettered for output in outputs):
            self._set_exit(EXIT_DEAD_LETTERED)
        if self.started_at is not None:
            self._final_line()
        if self.exit_code:
            self._exit(self.exit_code)

    def _final_line(self) -> None:
        elapsed = self._reactor.seconds() - self.started_at
        received, sent = self.counts()
        self.summary = progress.input_summary(received, elapsed)
        fields = {k: v for k, v in vars(received).items() if v is not None}
        if sent is not None:
            isolations = [i for output in self.outputs() for i in output.balancer.isolations()]
            self.summary += "; " + progress.output_summary(sent, elapsed, isolations)
            fields.update((k, v) for k, v in vars(sent).items() if v is not None)
        # the counts as fields too, for --log-format json
        self.log.info("{summary}", summary=self.summary, elapsed=round(elapsed, 3), **fields)

    def _set_exit(self, code: int) -> None:
        """Keep the most serious status: undelivered (1) over dead-lettered (3)."""
        if code == EXIT_UNDELIVERED or not self.exit_code:
            self.exit_code = code


def _input_counts(each) -> progress.InputCounts:
    factory = getattr(getattr(each, "input", None), "factory", None)
    if factory is not None:  # a logstash or beats input (an InputProgram)
        return progress.input_counts(factory)
    return progress.InputCounts(
        events=getattr(each, "events_had", 0), batches=getattr(each, "batches_had", 0)
    )


def _interval_line(before, now, seconds: float) -> str:
    line = progress.input_interval_line(before[0], now[0], seconds)
    if now[1] is not None:
        line += "; " + progress.output_interval_line(before[1], now[1], seconds)
    return line


def makeService(options: Options):
    from twisted.internet import reactor

    from twisted_logstash.pipelines.build import build

    with configuration_errors(PROGRAM):
        settings = log_settings(options)
        stats_interval = progress.stats_interval_of(options["stats-interval"])
        metrics = metrics_address(
            {"metrics_port": options["metrics-port"], "metrics_host": options["metrics-host"]}
        )
        config = read_config(options)
        pipeline = build(config, reactor)
    if options["config.test_and_exit"]:
        sys.stdout.write("Configuration OK\n")
        sys.stdout.flush()
        raise SystemExit(0)
    if config.plugins("output") and any(p.name == "stdout" for p in config.plugins("output")):
        log_beside_events(options)
    program = PipelineProgram(
        pipeline,
        reactor,
        stats_interval=stats_interval,
        log_settings=settings,
        twistd_options=getattr(options, "parent", None),
    )
    if metrics is None:
        return program
    return _with_metrics(program, metrics, reactor)


def _with_metrics(program: PipelineProgram, address: tuple[str, int], reactor):
    """``--metrics-port``: one registry for every ``logstash``/``beats`` input and every
    ``logstash``/``lumberjack`` output, each sample labelled with its plugin
    (``metrics/pipeline.py``); ``/health`` 503 while the pipeline drains or a plugin cannot take
    work."""
    from twisted_logstash.metrics.input import InputCollector, InputHealth
    from twisted_logstash.metrics.output import OutputCollector, OutputHealth
    from twisted_logstash.metrics.pipeline import PipelineCollector, PipelineHealth
    from twisted_logstash.metrics.program import with_metrics
    from twisted_logstash.tap.common import stop_when_running

    pipeline = program.pipeline
    collectors, checks = [], []
    for plugin, each in zip(pipeline.input_ids, pipeline.inputs, strict=True):
        service_ = getattr(each, "input", None)
        factory = getattr(service_, "factory", None)
        if factory is None:
            continue  # stdin, generator: counted in the lines only
        protocol = getattr(each, "protocol", "http")  # the wire: batches are requests or windows
        collectors.append((plugin, InputCollector(_stats_of(factory), protocol)))
        checks.append((plugin, InputHealth(service_)))
    for plugin, output in zip(pipeline.output_ids, pipeline.outputs, strict=True):
        if _is_output(output):
            collectors.append((plugin, OutputCollector(output)))
            checks.append((plugin, OutputHealth(output)))

    def stop(code: int) -> None:
        exit_with(code)
        stop_when_running(reactor)

    health = PipelineHealth(pipeline, checks)
    return with_metrics(program, PipelineCollector(collectors), health, address, reactor, stop=stop)


def _stats_of(factory):
    return lambda: factory.stats
