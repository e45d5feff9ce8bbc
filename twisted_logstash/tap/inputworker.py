"""One worker process of ``twistd logstash-input --workers N``; the parent starts it as

    python -m twisted_logstash.tap.inputworker --worker=K --parent=PID -- FLAGS...

with the listening socket at descriptor 3, a pipe from the parent on standard input and its
standard error relayed into the parent's log (``transport/workers.py``). FLAGS are the input's
own, checked again here exactly as the parent checked them, so every flag, TLS setting, auth
and limit is the same in every worker.

A worker is a single input without twistd: SIGTERM (or the parent's end) drains it as
``InputService`` drains a single input (stop accepting, finish the batches in flight, then exit
0). It ignores SIGINT: a terminal's Ctrl+C reaches the parent too, which drains every worker
with SIGTERM (the parent starts it with SIGINT and SIGTERM blocked, so that neither cuts it down
while it imports). It then logs how many events it acknowledged and the CPU time it used. It
logs its counts every ``--stats-interval`` seconds too, and hides lines under ``--log-level``
before they reach the parent (which formats what it relays as ``--log-format`` asks).

It ignores SIGUSR1 as well (blocked from its start too): its lines go through the parent, which
reopens its ``--logfile`` on SIGUSR1 (``logs.py``), and a SIGUSR1 sent to every process of the
program (``systemctl kill``, ``kill -USR1 -PGID``) must leave the worker running.
"""

from __future__ import annotations

import resource
import signal
import sys

from twisted.logger import FilteringLogObserver, Logger, globalLogBeginner
from twisted.python import usage

from twisted_logstash import progress
from twisted_logstash.errors import FLAG, ConfigurationError
from twisted_logstash.logs import LogSettings, level_filter
from twisted_logstash.tap.input import Options, build, settings_from
from twisted_logstash.transport.workers import (
    STARTUP_SIGNALS,
    WORKER_FD,
    ParentWatch,
    die_with_parent,
    worker_log_observer,
)

log = Logger(namespace="twisted_logstash.tap.inputworker")


class Arguments(usage.Options):
    optParameters = [
        ["worker", None, None, "this worker's number"],
        ["parent", None, None, "the parent's process id"],
        ["report-fd", None, None, "descriptor to report counts on (the parent's --metrics-port)"],
    ]

    def parseArgs(self, *flags: str) -> None:
        self["flags"] = list(flags)


def main(argv: list[str] | None = None) -> int:
    arguments = Arguments()
    arguments.parseOptions(sys.argv[1:] if argv is None else argv)
    die_with_parent(int(arguments["parent"]))
    from twisted.internet import defer, reactor

    status = [0]
    stopping = [False]

    def stop() -> None:
        if stopping[0]:
            return
        stopping[0] = True
        if reactor.running:
            reactor.stop()
        else:
            reactor.callWhenRunning(reactor.stop)

    def on_signal(number, frame) -> None:
        reactor.callFromThread(stop)

    # at once: a stop that comes while the worker starts drains it as well
    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl+C is the parent's to handle (a pending one is discarded by SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # so is SIGUSR1: the parent reopens the log file the worker's lines are relayed into
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STARTUP_SIGNALS)
    # lines under --log-level are hidden once the flags are read; until then, every one shows
    threshold = [LogSettings().level]
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(worker_log_observer(sys.stderr), [_at_least(threshold)])],
        redirectStandardIO=False,
        discardBuffer=True,
    )
    try:
        options = Options()
        options.parseOptions(arguments["flags"])
        settings, explicit, _ = settings_from(options)
        threshold[0] = settings["logs"].level
        service, _ = build(settings, explicit, reactor, worker_fd=WORKER_FD)
    except (ConfigurationError, usage.UsageError, OSError) as e:
        text = e.render(FLAG) if isinstance(e, ConfigurationError) else str(e)
        log.error("configuration error: {error}", error=text)
        return 2
    report = progress.PeriodicReport(
        reactor,
        settings["stats_interval"],
        lambda: progress.input_counts(service.factory),
        progress.input_interval_line,
    )

    def parent_gone() -> None:
        if not stopping[0]:
            log.warn("the parent process is gone; draining")
        stop()

    def cannot_listen(failure) -> None:
        log.failure("cannot accept on the inherited socket", failure)
        status[0] = 1
        stop()

    reporter = None
    if arguments["report-fd"] is not None:
        from twisted_logstash.metrics.workers import StatsReporter

        reporter = StatsReporter(service.factory.stats, int(arguments["report-fd"]), reactor)

    async def drain() -> None:
        report.stop()
        await service.stopService()
        if reporter is not None:
            reporter.stop()  # the last counts, before the parent sees this worker end
        counted = progress.input_counts(service.factory)
        usage_ = resource.getrusage(resource.RUSAGE_SELF)
        log.info(
            "stopped: {events} events acknowledged in {batches} batches, "
            "{cpu:.2f} s of CPU ({user:.2f} s user)",
            events=counted.events,
            batches=counted.batches,
            cpu=usage_.ru_utime + usage_.ru_stime,
            user=usage_.ru_utime,
        )

    reactor.addReader(ParentWatch(parent_gone))
    service.startService()
    service.listening.addErrback(cannot_listen)
    if reporter is not None:
        reporter.start()
    report.start()
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.ensureDeferred(drain()))
    reactor.run(installSignalHandlers=False)
    return status[0]


def _at_least(threshold: list):
    """A filter predicate hiding lines under ``threshold[0]`` (set once the flags are read)."""

    def predicate(event):
        return level_filter(threshold[0])(event)

    return predicate


if __name__ == "__main__":
    sys.exit(main())
