"""``twistd logstash-input``: receive events on the native wire (HTTP) or the framed wire
(Lumberjack), with Logstash's flags.

Everything is checked in ``makeService``, before twistd starts the reactor, so a configuration
error is one line on stderr and exit status 2 with nothing bound. The input cannot listen: 1. A
stop (SIGTERM, SIGINT) drains the input and exits 0. It logs its counts every
``--stats-interval`` seconds and ends with one line saying what it received.
"""

from __future__ import annotations

import os
import re
import sys

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from twisted_logstash import logs, progress
from twisted_logstash.codecs.events import (
    DEFAULT_ECS,
    ECS_MODES,
    Decorations,
    Enrichment,
    resolve_enrich,
)
from twisted_logstash.errors import ConfigurationError, Message
from twisted_logstash.metrics.input import InputCollector, InputHealth
from twisted_logstash.metrics.program import OPTIONS as METRICS_OPTIONS
from twisted_logstash.metrics.program import metrics_address, with_metrics
from twisted_logstash.metrics.workers import WorkersHealth, WorkerStats
from twisted_logstash.pipeline.sinks import sink_from_string
from twisted_logstash.security.auth import Credentials
from twisted_logstash.security.endpoints import DEFAULT_BACKLOG
from twisted_logstash.tap.common import (
    LogstashOptions,
    appender,
    check_protocol_flags,
    configuration_errors,
    exit_with,
    flag_words,
    input_listener,
    keep_exit_status,
    listen_address,
    listen_address_of,
    lowered,
    parse_bool,
    parse_int,
    split_list,
    stop_when_running,
    tls_and_auth_settings,
    wire_of,
)
from twisted_logstash.tap.help import INPUT_GROUPS
from twisted_logstash.transport.inputservice import InputService
from twisted_logstash.transport.server import DEFAULT_MAX_HELD_BYTES
from twisted_logstash.transport.workers import (
    REPORT_FD,
    WorkerPool,
    adopted_endpoint,
    cores,
)

PROGRAM = "logstash-input"
log = Logger(namespace="twisted_logstash.transport.inputservice")

#: flags that mean something on one wire only; given for the other, they are an error rather
#: than silently ignored (a username on the framed wire would protect nothing)
ONLY = {
    "http": (
        "username",
        "password",
        "max_pending_requests",
        "max_content_length",
        "header_timeout",
        "body_timeout",
        "idle_timeout",
        "sink_timeout",
    ),
    "lumberjack": ("client_inactivity_timeout",),
}
WHY = {
    "username": Message(
        "the framed wire has no authentication; require client certificates instead "
        "({ssl_client_authentication:required})"
    ),
}


class Options(LogstashOptions):
    synopsis = "[options]"
    longdesc = (
        "Receive events from a Logstash `logstash` output (--protocol http, the default) or from "
        "Beats and Logstash's `lumberjack` output (--protocol lumberjack), and hand them to a sink."
    )
    optParameters = [
        ["protocol", None, None, "http (native wire, default) or lumberjack (framed wire)"],
        ["host", None, None, "address to listen on [default: 0.0.0.0]"],
        ["port", None, None, "port to listen on [default: 9800, lumberjack: 5044]"],
        ["endpoint", None, None, "a Twisted server endpoint string; replaces host/port/ssl"],
        ["ssl-enabled", None, None, "true or false [default: true, lumberjack: false]"],
        ["ssl-certificate", None, None, "PEM certificate (chain) of the server"],
        ["ssl-key", None, None, "PKCS#8 PEM key of the server (may be encrypted)"],
        ["ssl-key-passphrase", None, None, "passphrase of an encrypted --ssl-key"],
        ["ssl-keystore-path", None, None, "PKCS#12 keystore holding the server identity"],
        ["ssl-keystore-password", None, None, "password of --ssl-keystore-path"],
        ["ssl-client-authentication", None, None, "none (default), optional or required"],
        ["ssl-handshake-timeout", None, None, "milliseconds [default: 10000]"],
        ["ssl-supported-protocols", None, None, "comma list [default: TLSv1.2,TLSv1.3]"],
        ["ssl-cipher-suites", None, None, "comma list of cipher suites"],
        ["username", None, None, "require basic auth with this user"],
        ["password", None, None, "basic auth password (prefer --password-file)"],
        ["password-file", None, None, "file whose first line is the password"],
        ["type", None, None, "set `type` on events that lack one"],
        ["tags", None, None, "comma list of tags added to every event"],
        [
            "enrich",
            None,
            None,
            "what events get in [@metadata] about their sender: comma list of source_metadata,"
            " ssl_peer_metadata, codec_metadata, or all, or none [lumberjack:"
            " codec_metadata,source_metadata; http: none]",
        ],
        [
            "ecs-compatibility",
            None,
            None,
            "names of those [@metadata] fields: disabled, v1 or v8 [v8]",
        ],
        ["max-pending-requests", None, None, "requests waiting for the sink before 429 [200]"],
        ["max-content-length", None, None, "largest body in bytes before 413 [104857600]"],
        ["max-connections", None, None, "connections at once (both wires) [1000]"],
        [
            "max-held-bytes",
            None,
            None,
            "bytes the input holds at most (bodies, windows, events, answers) before it stops"
            " reading (both wires) [268435456]",
        ],
        [
            "sink-timeout",
            None,
            None,
            "seconds a request's events may wait on the sink before 429 [10]",
        ],
        ["header-timeout", None, None, "seconds for a request head to arrive [30]"],
        ["body-timeout", None, None, "seconds for a request body to arrive [60]"],
        ["idle-timeout", None, None, "seconds a keep-alive connection may idle [60]"],
        ["client-inactivity-timeout", None, None, "lumberjack: seconds idle before close [60]"],
        ["sink", None, None, "stdout (default), file:PATH or null"],
        ["sink-fsync", None, None, "file sink: fsync each batch before acknowledging [false]"],
        [
            "workers",
            None,
            None,
            "processes accepting on the port, each with every limit: a number, or auto"
            " (one per core) [1: this process alone]",
        ],
        *METRICS_OPTIONS,
        *logs.OPTIONS,
        progress.STATS_OPTION,
    ]
    repeatable = ("ssl_certificate_authorities", "add_field")
    help_groups = INPUT_GROUPS
    wire_only = ONLY

    opt_ssl_certificate_authorities = appender(
        "ssl_certificate_authorities", "PEM CA file trusted for client certificates (repeatable)"
    )
    opt_add_field = appender("add_field", "KEY=VALUE added to every event (repeatable)")


def settings_from(options: Options, environ=os.environ) -> tuple[dict, set[str], list[str]]:
    """Logstash-named settings, the names the user gave, and warnings about the password.

    The address and TLS settings are as given (None when not): ``input_listener`` applies
    their defaults when ``build`` checks them.
    """
    explicit = options.explicit()
    protocol, _ = wire_of(options)
    if "password_file" in explicit:
        explicit.add("password")
    check_protocol_flags(protocol, explicit, ONLY, WHY)
    shared, warnings = tls_and_auth_settings(options, environ)
    settings = {
        **shared,
        "protocol": protocol,
        "host": options["host"],
        "port": _port(options["port"]) if options["port"] else None,
        "endpoint": options["endpoint"],
        "ssl_client_authentication": lowered(options["ssl_client_authentication"]),
        "ssl_handshake_timeout": (
            parse_int("ssl-handshake-timeout", options["ssl_handshake_timeout"], 1)
            if options["ssl_handshake_timeout"]
            else None
        ),
        "type": options["type"],
        "tags": split_list([options["tags"] or ""]),
        "enrich": split_list([options["enrich"]]) if options["enrich"] is not None else None,
        "ecs_compatibility": _ecs(options["ecs_compatibility"]),
        "add_field": [_key_value(item) for item in options["add_field"]],
        "max_pending_requests": parse_int(
            "max-pending-requests", options["max_pending_requests"] or "200", 1
        ),
        "max_content_length": parse_int(
            "max-content-length", options["max_content_length"] or "104857600", 1
        ),
        "max_connections": parse_int("max-connections", options["max_connections"] or "1000", 1),
        "max_held_bytes": parse_int(
            "max-held-bytes", options["max_held_bytes"] or str(DEFAULT_MAX_HELD_BYTES), 1
        ),
        "sink_timeout": parse_int("sink-timeout", options["sink_timeout"] or "10", 1),
        "header_timeout": parse_int("header-timeout", options["header_timeout"] or "30", 1),
        "body_timeout": parse_int("body-timeout", options["body_timeout"] or "60", 1),
        "idle_timeout": parse_int("idle-timeout", options["idle_timeout"] or "60", 1),
        "client_inactivity_timeout": parse_int(
            "client-inactivity-timeout", options["client_inactivity_timeout"] or "60", 1
        ),
        "sink": options["sink"] or "stdout",
        "sink_fsync": (
            parse_bool("sink-fsync", options["sink_fsync"]) if options["sink_fsync"] else False
        ),
        "workers": parse_workers(options["workers"]),
        "stats_interval": progress.stats_interval_of(options["stats_interval"]),
        "logs": logs.LogSettings.from_flags(
            options["log_level"],
            options["log_format"],
            options["log_rotate_length"],
            options["log_max_rotated"],
        ),
    }
    if settings["workers"] > 1 and settings["endpoint"] is not None:
        raise ConfigurationError.about(
            "{workers} needs {host} and {port}: an {endpoint} cannot be shared by processes"
        )
    return settings, explicit, warnings


def _ecs(value: str | None) -> str | None:
    if value is None:
        return None
    mode = value.strip().lower()
    if mode not in ECS_MODES:
        raise ConfigurationError.about(
            "{ecs_compatibility} takes {modes}, not {value!r}",
            modes=", ".join(ECS_MODES),
            value=value,
        )
    return mode


def enrichment_of(settings: dict, listener) -> tuple[Enrichment, list[str]]:
    """What the input records about senders (``--enrich``, ``--ecs-compatibility``, as the
    beats input's ``enrich`` and ``ecs_compatibility``), and a warning when ``ssl_peer_metadata``
    was asked for where it records nothing: as in Logstash, only with TLS and client
    certificates asked for (``--ssl-client-authentication optional`` or ``required``). With an
    ``--endpoint`` (``listener`` None) it is recorded wherever the connection is TLS."""
    protocol = settings["protocol"]
    try:
        active = resolve_enrich(settings.get("enrich"), protocol)
    except ValueError as error:
        raise ConfigurationError(str(error).replace("`enrich`", "--enrich")) from None
    warnings = []
    peer = "ssl_peer_metadata" in active
    if peer and listener is not None:
        tls = listener.tls
        if not tls.ssl_enabled or tls.ssl_client_authentication == "none":
            peer = False
            if "ssl_peer_metadata" in (settings.get("enrich") or ()):
                warnings.append(
                    "--enrich ssl_peer_metadata records nothing unless --ssl-enabled is true and"
                    " --ssl-client-authentication is optional or required"
                )
    enrichment = Enrichment(
        source_metadata="source_metadata" in active,
        ssl_peer_metadata=peer,
        ecs_compatibility=settings.get("ecs_compatibility") or DEFAULT_ECS,
        plugin="beats" if protocol == "lumberjack" else "logstash",
    )
    return enrichment, warnings


def parse_workers(value: str | None) -> int:
    """``--workers``: a whole number of at least 1, or ``auto`` (the cores this process may
    run on); not given, 1."""
    if value is None:
        return 1
    if value.strip().lower() == "auto":
        return cores()
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError.about(
            "{workers} takes a whole number of at least 1 or auto, not {value!r}", value=value
        ) from None
    if number < 1:
        raise ConfigurationError.about(
            "{workers} must be at least 1 (or auto), not {number}", number=number
        )
    return number


def _port(value: str) -> int:
    port = parse_int("port", value, 0)
    if port > 65535:
        raise ConfigurationError.about("{port} must be from 0 to 65535, not {port_}", port_=port)
    return port


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigurationError.about("{add_field} takes KEY=VALUE, not {item!r}", item=item)
    return key.strip(), value


def build(settings: dict, explicit: set[str], reactor=None, *, worker_fd: int | None = None):
    """The input service for checked settings (no I/O but opening the sink and TLS files).

    ``worker_fd``: build one worker of ``--workers N`` instead, which adopts the listening
    socket the parent made (that descriptor) rather than binding its own, shares its sink with
    the other workers (``shared``); what it acknowledged is counted by its factory
    (``factory.stats``, read by ``progress.input_counts`` and the metrics).
    """
    if reactor is None:
        from twisted.internet import reactor
    listener = None
    warnings = []
    # with --endpoint the user's string says everything about TLS; it is not checked here
    credentials = Credentials(settings["username"], settings["password"])
    if settings["endpoint"] is None:
        listener = input_listener(settings, explicit, protocol=settings["protocol"])
        warnings = list(listener.warnings)
        credentials = listener.credentials
    sink = settings["sink"]  # a program's sink name, or the library's IEventSink
    fsync = settings.get("sink_fsync", False)
    if fsync and not (isinstance(sink, str) and sink.startswith("file:")):
        raise ConfigurationError.about("{sink_fsync} is for the file sink ({sink:file:PATH})")
    if isinstance(sink, str):
        try:
            sink = sink_from_string(sink, fsync=fsync, shared=worker_fd is not None)
        except ConfigurationError as error:
            raise ConfigurationError.about("{sink}: {reason}", reason=str(error)) from None
    decorations = Decorations(
        type=settings["type"],
        tags=tuple(settings["tags"]),
        add_field=tuple(settings["add_field"]),
    )
    enrichment, more = enrichment_of(settings, listener)
    warnings += more
    if settings["protocol"] == "lumberjack":
        from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory

        factory = LumberjackInputFactory(
            sink,
            reactor,
            client_inactivity_timeout=float(settings["client_inactivity_timeout"]),
            decorations=decorations,
            max_connections=settings["max_connections"],
            max_held_bytes=settings["max_held_bytes"],
        )
    else:
        from twisted_logstash.wires.native.server import HttpInputFactory

        factory = HttpInputFactory(
            sink,
            reactor,
            username=credentials.username,
            password=credentials.password,
            decorations=decorations,
            max_pending_requests=settings["max_pending_requests"],
            max_content_length=settings["max_content_length"],
            max_connections=settings["max_connections"],
            max_held_bytes=settings["max_held_bytes"],
            sink_timeout=float(settings["sink_timeout"]),
            header_timeout=float(settings["header_timeout"]),
            body_timeout=float(settings["body_timeout"]),
            idle_timeout=float(settings["idle_timeout"]),
        )
    factory.enrichment = enrichment or None  # nothing to record: no work per batch at all
    if listener is not None and worker_fd is not None:
        endpoint = adopted_endpoint(reactor, worker_fd, listener.address.host, listener.tls)
        return InputService(endpoint, factory), warnings
    if listener is not None:
        # built from the checked settings: the reason alone, about flags the user knows
        return InputService(listener.endpoint(reactor), factory), warnings
    description = settings["endpoint"]
    try:
        endpoint = serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as e:  # a ConfigurationError too
        # the string's own parameters are settings (ssl_key=...): its message names them so
        raise ConfigurationError.about(
            "{endpoint} {description!r}: {reason}", description=redact(description), reason=str(e)
        ) from None
    return InputService(endpoint, factory), warnings


class InputProgram(logs.ProgramLogs, service.MultiService):
    """The input service as a program: when it cannot listen (the port is taken, not
    permitted), it says why in one log line and the process exits 1, instead of running on
    with nothing bound.

    ``standalone``: the process's top service (``twistd logstash-input``, not an input of a
    pipeline): it sets the log observer (``log_settings``), logs its counts every
    ``stats_interval`` seconds, ends with one line saying what it received, and a stop by a
    signal exits 0 rather than by the signal."""

    def __init__(
        self,
        input_service: InputService,
        reactor,
        exit=exit_with,
        where: str = "",
        *,
        standalone: bool = False,
        stats_interval: float = 0,
        log_settings: logs.LogSettings | None = None,
        twistd_options=None,
    ):
        super().__init__()
        self.where = where or repr(input_service.endpoint)
        self.input = input_service
        self._reactor = reactor
        self._exit = exit
        self.standalone = standalone
        self.stats_interval = stats_interval
        self.log_settings = log_settings
        self.twistd_options = twistd_options
        self.started_at: float | None = None
        self.summary: str | None = None
        self._report: progress.PeriodicReport | None = None
        input_service.setServiceParent(self)

    def counts(self) -> progress.InputCounts:
        return progress.input_counts(getattr(self.input, "factory", None))

    def startService(self) -> None:
        super().startService()
        self.started_at = self._reactor.seconds()
        listening = self.input.listening
        if listening is not None:
            listening.addErrback(self._cannot_listen)
        if self.standalone and getattr(self.input, "factory", None) is not None:
            self._report = progress.PeriodicReport(
                self._reactor, self.stats_interval, self.counts, progress.input_interval_line
            )
            self._report.start()

    def stopService(self):
        if self.standalone:
            keep_exit_status(self._reactor)
        if self._report is not None:
            self._report.stop()
            self._report = None
        stopped = defer.maybeDeferred(super().stopService)
        if self.standalone and getattr(self.input, "factory", None) is not None:
            stopped.addCallback(self._final_line)
        return stopped

    def _final_line(self, result):
        elapsed = self._reactor.seconds() - (self.started_at or self._reactor.seconds())
        counts = self.counts()
        self.summary = progress.input_summary(counts, elapsed)
        fields = {k: v for k, v in vars(counts).items() if v is not None}
        log.info("{summary}", summary=self.summary, elapsed=round(elapsed, 3), **fields)
        return result

    def _cannot_listen(self, failure) -> None:
        error = failure.value
        if isinstance(error, CannotListenError):
            where, reason = listen_address(error), str(error.socketError)
        else:
            where, reason = self.where, str(error) or type(error).__name__
        log.error("cannot listen on {where}: {reason}", where=where, reason=reason)
        self._exit(1)
        stop_when_running(self._reactor)


_SECRET = re.compile(r"((?:password|passphrase)=)((?:\\.|[^:\\])*)", re.IGNORECASE)


def redact(description: str) -> str:
    """An endpoint string fit for a message: passwords and passphrases replaced by ``***``."""
    return _SECRET.sub(r"\1***", description)


def log_beside_events(options: Options) -> None:
    """With ``--sink stdout`` under ``twistd -n`` and no ``--logfile``, send the log to stderr.

    Standard output then carries the events alone, one JSON object a line, ready for a pipe;
    without this twistd would log on it too and mix its lines into the ndjson. twistd takes
    ``sys.stdout`` for its log when logging starts, which is after ``makeService``; the sink
    already holds the real standard output by then. An explicit ``--logfile`` (``-`` too),
    ``--logger`` or ``--syslog`` is left as the user chose.
    """
    parent = getattr(options, "parent", None)
    if parent is None or not parent.get("nodaemon"):
        return
    if parent.get("logfile") or parent.get("logger") or parent.get("syslog"):
        return
    sys.stdout = sys.stderr


class WorkersProgram(InputProgram):
    """``--workers N`` (N > 1): the parent, a ``WorkerPool`` as a program. A stop (SIGTERM,
    SIGINT) drains every worker; the parent then exits 0, or 1 if a worker had to be killed
    or ended badly, instead of twistd's re-sent signal."""

    def stopService(self):
        keep_exit_status(self._reactor)
        stopped = defer.maybeDeferred(super().stopService)

        def status(result):
            if self.input.failed:
                self._exit(1)
            return result

        return stopped.addBoth(status)


def worker_argv(options: Options, number: int, *, report: bool = False) -> list[str]:
    """The command line of worker ``number``: this interpreter, the worker's entry point and
    every flag as the user gave it but ``--workers`` (the worker checks them again, as this
    process did, and gets the same settings)."""
    argv = [
        sys.executable,
        "-m",
        "twisted_logstash.tap.inputworker",
        f"--worker={number}",
        f"--parent={os.getpid()}",
        *([f"--report-fd={REPORT_FD}"] if report else []),
        "--",
    ]
    for long, *_ in Options.optParameters:
        value = options.get(long)
        if value is not None and long not in ("workers", "metrics-port", "metrics-host"):
            argv.append(f"--{long}={value}")
    for key in Options.repeatable:
        flag = "--" + key.replace("_", "-")
        argv.extend(f"{flag}={value}" for value in options[key])
    return argv


def makeService(options: Options):
    with configuration_errors(PROGRAM):
        settings, explicit, warnings = settings_from(options)
        metrics = metrics_address(options)
        # with --workers too: every flag, TLS file and the sink are checked here, once
        input_service, more = build(settings, explicit)
    if settings["sink"] == "stdout":
        log_beside_events(options)
    from twisted.internet import reactor

    for warning in warnings + more:
        log.warn("{warning}", warning=flag_words(warning))
    if settings["endpoint"] is not None:
        where = redact(settings["endpoint"])
    else:
        where = str(listen_address_of(settings, settings["protocol"]))
    twistd_options = getattr(options, "parent", None)
    if settings["workers"] == 1:
        program = InputProgram(
            input_service,
            reactor,
            where=where,
            standalone=True,
            stats_interval=settings["stats_interval"],
            log_settings=settings["logs"],
            twistd_options=twistd_options,
        )
        if metrics is None:
            return program
        factory = input_service.factory
        return _with_metrics(
            program,
            InputCollector(lambda: factory.stats, settings["protocol"]),
            InputHealth(input_service),
            metrics,
            reactor,
        )
    close = getattr(input_service.factory.sink, "close", None)
    if close is not None:
        close()  # the parent writes nothing: its workers open the sink each
    address = listen_address_of(settings, settings["protocol"])
    # each worker reports its counts to this process (pool.reports.total(): their sum), for
    # the metrics and the parent's own lines
    reports = WorkerStats()
    pool = WorkerPool(
        settings["workers"],
        lambda number: worker_argv(options, number, report=True),
        address.host,
        address.port,
        reactor,
        backlog=DEFAULT_BACKLOG,
        inherit_stdout=settings["sink"] == "stdout",
        stop_timeout=input_service.drain_timeout + 5.0,
        reports=reports,
    )
    # each worker logs its own counts (tap/inputworker.py); the parent relays them
    program = WorkersProgram(
        pool,
        reactor,
        where=where,
        standalone=True,
        log_settings=settings["logs"],
        twistd_options=twistd_options,
    )
    if metrics is None:
        return program
    collector = InputCollector(reports.total, settings["protocol"], lambda: len(pool.workers))
    return _with_metrics(program, collector, WorkersHealth(pool), metrics, reactor)


def _with_metrics(program, collector, health, address, reactor):
    """``--metrics-port``: the program with its metrics endpoint (``metrics/program.py``)."""

    def stop(code: int) -> None:
        exit_with(code)
        stop_when_running(reactor)

    return with_metrics(program, collector, health, address, reactor, stop=stop)
