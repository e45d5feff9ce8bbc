"""``twistd logstash-output``: read events from a source and send them to Logstash inputs,
batched, compressed, balanced over every host, retried, and never dropped silently.

With a finite source (a file, a generator, stdin reaching EOF) the program stops once every event
was acknowledged or dead-lettered. Its exit status (``EXIT_*``, documented in docs/output.md):
0 when every event was acknowledged, or a stop (SIGTERM/SIGINT) left nothing unacknowledged (an
endless source, tcp or generator:0, is stopped that way as a rule); 1 when events were not
delivered (a stop before the end, a receiver that refused our credentials, refused events that
could not be dead-lettered, a queue that failed); 2 for a configuration error, before anything
binds; 3 when everything was handled but some events were dead-lettered.

It ends with one human line (``progress.output_summary``), logs a line every
``--stats-interval`` seconds, and on a terminal shows a live progress line instead
(``--progress``).
"""

from __future__ import annotations

import os
import sys

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from twisted_logstash import config, logs, progress
from twisted_logstash.codecs.bytebound import DEFAULT_BATCH_MAX_BYTES
from twisted_logstash.errors import ConfigurationError, Message
from twisted_logstash.metrics.output import OutputCollector, OutputHealth
from twisted_logstash.metrics.program import OPTIONS as METRICS_OPTIONS
from twisted_logstash.metrics.program import metrics_address, with_metrics
from twisted_logstash.pipeline.deadletter import DeadLetterFile
from twisted_logstash.pipeline.output import ON_REFUSED, CredentialsRefused, OutputStopped
from twisted_logstash.tap.common import (
    Connector,
    LogstashOptions,
    appender,
    check_protocol_flags,
    configuration_errors,
    exit_with,
    flag_words,
    keep_exit_status,
    listen_address,
    lowered,
    output_connector,
    parse_int,
    stop_when_running,
    tls_and_auth_settings,
    wire_of,
)
from twisted_logstash.tap.help import OUTPUT_GROUPS
from twisted_logstash.transport.hosts import parse_hosts

PROGRAM = "logstash-output"

#: exit statuses (docs/output.md, "Exit status")
EXIT_OK = 0
EXIT_UNDELIVERED = 1  # events not delivered, or the program failed
EXIT_CONFIGURATION = 2  # see tap/common.py ``fail``
EXIT_DEAD_LETTERED = 3  # everything handled, but some events went to the dead-letter file
log = Logger(namespace="twisted_logstash.pipeline.output")

#: what ``--compression`` takes on the native wire (Content-Encodings and their spellings)
NATIVE_COMPRESSION = ("gzip", "x-gzip", "deflate", "x-deflate", "snappy", "identity", "none")
#: flags that mean something on one wire only (see ``check_protocol_flags``)
ONLY = {"http": ("username", "password")}
WHY = {
    "username": Message(
        "the framed wire has no authentication; identify with a client certificate "
        "instead ({ssl_certificate} and {ssl_key})"
    )
}


class Options(LogstashOptions):
    synopsis = "--hosts HOST[,HOST...] [options]"
    longdesc = (
        "Send events from a source to Logstash `logstash` inputs (--protocol http, the default) "
        "or `beats` inputs (--protocol lumberjack), load-balanced over every host."
    )
    optParameters = [
        ["protocol", None, None, "http (native wire, default) or lumberjack (framed wire)"],
        ["ssl-enabled", None, None, "true or false [default: true, lumberjack: false]"],
        ["ssl-truststore-path", None, None, "PKCS#12 trust store"],
        ["ssl-truststore-password", None, None, "password of --ssl-truststore-path"],
        ["ssl-verification-mode", None, None, "full (default: chain and hostname/IP) or none"],
        ["ssl-certificate", None, None, "PEM client certificate for mutual TLS"],
        ["ssl-key", None, None, "PKCS#8 PEM client key (may be encrypted)"],
        ["ssl-key-passphrase", None, None, "passphrase of an encrypted --ssl-key"],
        ["ssl-keystore-path", None, None, "PKCS#12 keystore holding the client identity"],
        ["ssl-keystore-password", None, None, "password of --ssl-keystore-path"],
        ["ssl-supported-protocols", None, None, "comma list [default: TLSv1.2,TLSv1.3]"],
        ["ssl-cipher-suites", None, None, "comma list of cipher suites"],
        ["username", None, None, "basic auth user"],
        ["password", None, None, "basic auth password (prefer --password-file)"],
        ["password-file", None, None, "file whose first line is the password"],
        ["source", None, None, "stdin (default), file:PATH, tcp:PORT or generator:COUNT"],
        ["batch-size", None, None, "events per batch [125]"],
        [
            "batch-max-bytes",
            None,
            None,
            f"bytes of encoded JSON per batch; a bigger batch is cut [{DEFAULT_BATCH_MAX_BYTES}]",
        ],
        ["batch-delay", None, None, "milliseconds to wait for a full batch [50]"],
        ["max-in-flight", None, None, "batches in flight at once over all hosts [4]"],
        ["compression", None, None, "gzip (default), snappy, deflate or none"],
        ["compression-level", None, None, "level for gzip/deflate/zlib [gzip 1, lumberjack 3]"],
        ["queue", None, None, "memory (default) or disk:DIR"],
        ["queue-max-events", None, None, "events held before the source is paused [memory: 4096]"],
        ["queue-max-bytes", None, None, "disk queue: bytes held before the source is paused [1gb]"],
        [
            "queue-retry-timeout",
            None,
            None,
            "seconds a failing queue write (a full disk) is retried before the program stops [300]",
        ],
        ["queue-sync", None, None, "disk queue: normal (kill -9 safe) or full (fsync) [normal]"],
        ["dead-letter", None, None, "file for refused batches [dead-letter.ndjson]"],
        ["cooloff", None, None, "seconds a failed host is isolated [60]"],
        ["timeout", None, None, "seconds for one attempt before it counts as failed [60]"],
        ["stop-timeout", None, None, "seconds a stop waits for attempts in flight [10]"],
        *METRICS_OPTIONS,
        [
            "on-refused",
            None,
            None,
            "when a receiver refuses our credentials (401/403): stop, the events staying"
            " undelivered, or continue, dead-lettering them [stop]",
        ],
        ["progress", None, None, "live progress on stderr: auto (on a terminal), always, never"],
        *logs.OPTIONS,
        progress.STATS_OPTION,
    ]
    repeatable = ("hosts", "ssl_certificate_authorities")
    help_groups = OUTPUT_GROUPS
    wire_only = ONLY

    opt_hosts = appender("hosts", "host, host:port, [v6] or [v6]:port; comma list or repeated")
    opt_ssl_certificate_authorities = appender(
        "ssl_certificate_authorities", "PEM CA file trusted for the server (repeatable)"
    )


def settings_from(options: Options, environ=os.environ) -> tuple[dict, set[str], list[str]]:
    """Logstash-named settings, the names the user gave, and warnings about the password.

    The TLS settings are as given (None when not): ``output_connector`` applies their defaults
    when ``build`` checks them.
    """
    explicit = options.explicit()
    protocol, defaults = wire_of(options)
    if not options["hosts"]:
        raise ConfigurationError.about("{hosts} is required (host, host:port, [v6] or [v6]:port)")
    if "password_file" in explicit:
        explicit.add("password")
    check_protocol_flags(protocol, explicit, ONLY, WHY)
    shared, warnings = tls_and_auth_settings(options, environ)
    compression = (options["compression"] or ("gzip" if protocol == "http" else "zlib")).lower()
    settings = {
        **shared,
        "protocol": protocol,
        "hosts": parse_hosts(options["hosts"], defaults["port"]),
        "ssl_truststore_path": options["ssl_truststore_path"],
        "ssl_truststore_password": options["ssl_truststore_password"],
        "ssl_verification_mode": lowered(options["ssl_verification_mode"]),
        "source": options["source"] or "stdin",
        "batch_size": parse_int("batch-size", options["batch_size"] or "125", 1),
        "batch_max_bytes": parse_int(
            "batch-max-bytes", options["batch_max_bytes"] or str(DEFAULT_BATCH_MAX_BYTES), 1
        ),
        "batch_delay": parse_int("batch-delay", options["batch_delay"] or "50", 0) / 1000.0,
        "max_in_flight": parse_int("max-in-flight", options["max_in_flight"] or "4", 1),
        "compression": compression,
        "compression_level": (
            parse_int("compression-level", options["compression_level"], 0)
            if options["compression_level"]
            else None
        ),
        "queue": options["queue"] or "memory",
        # None when not given: 4096 for the memory queue, no event bound for the disk queue
        "queue_max_events": (
            parse_int("queue-max-events", options["queue_max_events"], 1)
            if options["queue_max_events"]
            else None
        ),
        "queue_max_bytes": options["queue_max_bytes"],
        "queue_retry_timeout": float(
            parse_int("queue-retry-timeout", options["queue_retry_timeout"] or "300", 1)
        ),
        "queue_sync": (options["queue_sync"] or "normal").lower(),
        "dead_letter": options["dead_letter"] or "dead-letter.ndjson",
        "cooloff": float(parse_int("cooloff", options["cooloff"] or "60", 0)),
        "timeout": float(parse_int("timeout", options["timeout"] or "60", 1)),
        "stop_timeout": float(parse_int("stop-timeout", options["stop_timeout"] or "10", 0)),
        # None when not given: the program stops (``build``), the library continues
        "on_refused": (
            _choice("on-refused", options["on_refused"], ON_REFUSED)
            if options["on_refused"]
            else None
        ),
        "progress": _choice("progress", options["progress"] or "auto", progress.PROGRESS_CHOICES),
        "stats_interval": progress.stats_interval_of(options["stats_interval"]),
        "logs": logs.LogSettings.from_flags(
            options["log_level"],
            options["log_format"],
            options["log_rotate_length"],
            options["log_max_rotated"],
        ),
    }
    return settings, explicit, warnings


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> str:
    chosen = value.strip().lower()
    if chosen not in choices:
        listed = ", ".join(choices[:-1]) + " or " + choices[-1]
        raise ConfigurationError(f"--{flag} takes {listed}, not {value!r}")
    return chosen


def make_transmitter(settings: dict, reactor, connector: Connector | None = None):
    """The wire's transmitter, connecting through TLS or plain TCP endpoints.

    ``connector`` holds the checked TLS settings and credentials (``build`` has it); without
    it, ``settings`` are checked here.
    """
    if connector is None:
        connector = output_connector(settings, protocol=settings["protocol"])
    level = settings["compression_level"]
    if level is not None and not 0 <= level <= 9:
        raise ConfigurationError.about("{compression_level} takes 0 to 9, not {level}", level=level)
    if settings["protocol"] == "http" and settings["compression"] not in NATIVE_COMPRESSION:
        raise ConfigurationError.about(
            "{compression} {value} is not available on the native wire ({protocol:http}):"
            " it takes gzip, deflate, snappy or none",
            value=settings["compression"],
        )
    endpoints = connector.endpoints(reactor)
    if settings["protocol"] == "lumberjack":
        from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter

        # the framed wire compresses windows with zlib (`C` frames), nothing else: gzip,
        # deflate and snappy are the native wire's Content-Encodings
        if settings["compression"] not in ("zlib", "none"):
            raise ConfigurationError.about(
                "{compression} {value} is not available on the framed wire"
                " ({protocol:lumberjack}): it takes zlib or none",
                value=settings["compression"],
            )
        level = settings["compression_level"]
        if settings["compression"] == "none":
            level = None
        elif level is None:
            level = 3
        return LumberjackTransmitter(
            reactor, endpoints, compression_level=level, timeout=settings["timeout"]
        )
    from twisted_logstash.codecs.compression import normalize
    from twisted_logstash.wires.native.client import HttpTransmitter

    return HttpTransmitter(
        reactor,
        endpoints,
        compression=normalize(settings["compression"]),
        level=settings["compression_level"],
        username=connector.credentials.username,
        password=connector.credentials.password,
        timeout=settings["timeout"],
    )


def make_queue(settings: dict, reactor):
    spec = settings["queue"]
    capacity = settings.get("queue_max_events")
    max_bytes = settings.get("queue_max_bytes")
    sync = settings.get("queue_sync", "normal")
    if sync not in ("normal", "full"):
        raise ConfigurationError(f"--queue-sync takes normal or full, not {sync!r}")
    if spec == "memory":
        if sync != "normal":
            raise ConfigurationError("--queue-sync applies to --queue disk:DIR only")
        if max_bytes is not None:
            raise ConfigurationError(
                "--queue-max-bytes applies to --queue disk:DIR only "
                "(the memory queue is bounded by --queue-max-events)"
            )
        from twisted_logstash.pipeline.queue import DEFAULT_CAPACITY, MemoryQueue

        return MemoryQueue(capacity or DEFAULT_CAPACITY)
    if spec.startswith("disk:") and spec[5:]:
        from twisted_logstash.pipeline.diskqueue import DEFAULT_MAX_BYTES, DiskQueue, parse_bytes

        limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
        if isinstance(limit, str):
            limit = parse_bytes(limit)
        return DiskQueue(spec[5:], capacity=capacity, reactor=reactor, sync=sync, max_bytes=limit)
    raise ConfigurationError(f"--queue takes memory or disk:DIR, not {spec!r}")


class OutputProgram(logs.ProgramLogs, service.MultiService):
    """The output plus its source: stops the reactor once a finite source was fully delivered
    (or a receiver refused our credentials), reports how the run goes and how it went, and
    chooses the exit status (``EXIT_*``)."""

    log = Logger(namespace="twisted_logstash.pipeline.output")

    def __init__(
        self,
        output,
        source,
        reactor,
        exit=exit_with,
        stop_timeout: float = 10.0,
        *,
        stats_interval: float = 0,
        progress_choice: str = "never",
        log_settings: logs.LogSettings | None = None,
        twistd_options=None,
        stream=None,
    ):
        super().__init__()
        self.stop_timeout = stop_timeout
        self._exit = exit
        self.exit_code = EXIT_OK
        self.output = output
        self.source = source
        self._reactor = reactor
        self.finished = False
        self.refused: CredentialsRefused | None = None
        self.log_settings = log_settings
        self.twistd_options = twistd_options
        self.stream = stream if stream is not None else sys.stderr
        self.stats_interval = stats_interval
        self.progress_choice = progress_choice
        self.started_at: float | None = None
        self.summary: str | None = None
        self._report = None
        output.setServiceParent(self)

    def counts(self) -> progress.OutputCounts:
        return progress.output_counts(self.output, self.source)

    def startService(self):
        super().startService()
        self.started_at = self._reactor.seconds()
        try:
            self.output.attach(self.source)
        except CannotListenError as e:  # a tcp source whose port is taken
            self.log.error(
                "cannot listen on {where}: {reason}",
                where=listen_address(e),
                reason=str(e.socketError),
            )
            self._set_exit(EXIT_UNDELIVERED)
            stop_when_running(self._reactor)
            return
        failed = getattr(self.output, "failed", None)
        if failed is not None:
            failed.addErrback(self._queue_failed)
        done = self.source.done  # ISource: fires when a finite source ended
        done.addCallback(lambda _: self.output.drain())
        done.addCallbacks(self._delivered, self._source_failed)
        self._start_report()

    def _start_report(self) -> None:
        finite = bool(getattr(self.source, "finite", False))
        if progress.wants_progress(self.progress_choice, finite, self.stream):
            self._report = progress.ProgressLine(self._reactor, self.counts, self.stream)
        else:
            self._report = progress.PeriodicReport(
                self._reactor,
                self.stats_interval,
                self.counts,
                progress.output_interval_line,
                lambda line: self.log.info("{line}", line=line),
            )
        self._report.start()

    def _delivered(self, _):
        self.finished = True
        self.log.info("source finished and every event was handled")
        self._stop_reactor()

    def _queue_failed(self, failure):
        """The output gave up: its queue failed (a disk full for too long, an unreadable
        queue), or a receiver refused our credentials. Stop with an error; nothing was
        skipped."""
        if failure.check(CredentialsRefused):
            refused = failure.value
            self.refused = refused
            self.log.error(
                "the receiver at {host} refused our credentials ({status}): check --username"
                " and --password (or --password-file); stopping without dead-lettering",
                host=str(refused.host),
                status=refused.status,
            )
        else:
            self.log.error("stopping: {reason}", reason=str(failure.value))
        self._set_exit(EXIT_UNDELIVERED)
        self._stop_reactor()

    def _source_failed(self, failure):
        if failure.check(OutputStopped):
            return  # stopped before the end: stopService says what was left
        self.log.failure("the source failed", failure)
        self._set_exit(EXIT_UNDELIVERED)
        self._stop_reactor()

    @defer.inlineCallbacks
    def stopService(self):
        # a stop by SIGTERM/SIGINT ends with the status chosen here, not by the signal
        keep_exit_status(self._reactor)
        if self._report is not None:
            self._report.stop()
            self._report = None
        # Attempts in flight may finish (their events then count as delivered), but a receiver
        # that does not answer must not hold the stop for the whole attempt timeout.
        timer = self._reactor.callLater(self.stop_timeout, self._abandon_attempts)
        try:
            yield super().stopService()
        finally:
            if timer.active():
                timer.cancel()
        left = self.output.undelivered() if hasattr(self.output, "undelivered") else 0
        # A disk queue folds its write-ahead log back and releases its directory lock.
        yield self.output.queue.close()
        if left:
            # the output said how many, and whether they stay in a queue or are lost
            self._set_exit(EXIT_UNDELIVERED)
        elif not self.finished and self._finite() and self.refused is None:
            self.log.warn("stopped before the source was read to its end")
            self._set_exit(EXIT_UNDELIVERED)
        stats = getattr(self.output, "stats", None)
        dropped = getattr(stats, "dropped", 0)
        if dropped:
            # refused for good and not in the dead-letter file either: handled, but lost
            self.log.error(
                "{count} events were refused and could not be dead-lettered: they are lost",
                count=dropped,
            )
            self._set_exit(EXIT_UNDELIVERED)
        if getattr(stats, "dead_lettered", 0):
            self._set_exit(EXIT_DEAD_LETTERED)
        if stats is not None and self.started_at is not None:
            self._final_line()
        if self.exit_code:
            self._exit(self.exit_code)

    def _final_line(self) -> None:
        elapsed = self._reactor.seconds() - self.started_at
        isolations = getattr(getattr(self.output, "balancer", None), "isolations", None)
        counts = self.counts()
        self.summary = progress.output_summary(
            counts, elapsed, isolations() if isolations is not None else ()
        )
        # the counts as fields too, for --log-format json
        fields = {k: v for k, v in vars(counts).items() if v is not None}
        self.log.info("{summary}", summary=self.summary, elapsed=round(elapsed, 3), **fields)

    def _stop_reactor(self) -> None:
        if getattr(self._reactor, "running", False):  # a test's Clock does not run
            self._reactor.stop()

    def _abandon_attempts(self) -> None:
        abort = getattr(self.output, "abort_attempts", None)
        count = abort() if abort is not None else 0
        if count:
            self.log.warn(
                "receivers did not answer within {timeout} s of stopping: abandoning {count} "
                "attempts in flight (their events stay unacknowledged)",
                timeout=_seconds(self.stop_timeout),
                count=count,
            )

    def _finite(self) -> bool:
        """A source with an end (a file, stdin, a counted generator): stopping before it is
        a failure. An endless one (tcp, generator:0) is stopped by a signal as a rule."""
        return self.source.finite

    def _set_exit(self, code: int) -> None:
        """Keep the most serious status: undelivered (1) over dead-lettered (3). The process
        is given it once the program stopped (``stopService``)."""
        if code == EXIT_UNDELIVERED or not self.exit_code:
            self.exit_code = code


def _seconds(value: float) -> str:
    return f"{value:g}"


def build_output(settings: dict, explicit: set[str], reactor=None, *, close_queue=False):
    """The Output for checked settings, and warnings; no source (see ``build``)."""
    if reactor is None:
        from twisted.internet import reactor
    from twisted_logstash.pipeline.output import Output

    connector = output_connector(settings, explicit, protocol=settings["protocol"])
    warnings = list(connector.warnings)
    dead_letter = DeadLetterFile(settings["dead_letter"], reactor)
    try:
        dead_letter.check()
    except OSError as error:
        raise ConfigurationError.about(
            "{dead_letter} {path}: cannot be opened ({why})",
            path=settings["dead_letter"],
            why=config.why(error),
        ) from None
    output = Output(
        make_transmitter(settings, reactor, connector),
        settings["hosts"],
        reactor,
        batch_size=settings["batch_size"],
        batch_max_bytes=settings["batch_max_bytes"],
        batch_delay=settings["batch_delay"],
        max_in_flight=settings["max_in_flight"],
        queue=make_queue(settings, reactor),
        dead_letter=dead_letter,
        cooloff=settings["cooloff"],
        stamp=True,  # events from files, stdin, tcp, the generator or send() go out as Logstash's
        close_queue=close_queue,
        queue_retry_timeout=settings.get("queue_retry_timeout", 300.0),
        # the library's output goes on as before unless asked (it has no program to stop)
        on_refused=settings.get("on_refused") or "continue",
    )
    return output, warnings


def build(settings: dict, explicit: set[str], reactor=None):
    """The program: the Output and its source."""
    if reactor is None:
        from twisted.internet import reactor
    from twisted_logstash.pipeline.resume import resume
    from twisted_logstash.pipeline.sources import source_from_string

    settings = {**settings, "on_refused": settings.get("on_refused") or "stop"}
    output, warnings = build_output(settings, explicit, reactor)
    source = source_from_string(settings["source"], reactor)
    # a file source on a disk queue reads on from the position stored with the queued events
    resume(source, output.queue)
    program = OutputProgram(
        output,
        source,
        reactor,
        stop_timeout=settings["stop_timeout"],
        stats_interval=settings.get("stats_interval", 0),
        progress_choice=settings.get("progress", "never"),
        log_settings=settings.get("logs"),
    )
    return program, warnings


def makeService(options: Options):
    with configuration_errors(PROGRAM):
        settings, explicit, warnings = settings_from(options)
        metrics = metrics_address(options)
        program, more = build(settings, explicit)
    program.twistd_options = getattr(options, "parent", None)
    for warning in warnings + more:
        log.warn("{warning}", warning=flag_words(warning))
    if metrics is None:
        return program
    return _with_metrics(program, metrics)


def _with_metrics(program: OutputProgram, address: tuple[str, int]):
    """``--metrics-port``: the program with its metrics endpoint (``metrics/program.py``)."""
    from twisted.internet import reactor

    def stop(code: int) -> None:
        exit_with(code)
        stop_when_running(reactor)

    output = program.output
    collector = OutputCollector(output)
    return with_metrics(program, collector, OutputHealth(output), address, reactor, stop=stop)
