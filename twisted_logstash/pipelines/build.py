"""From a checked pipeline to running services: inputs, a fan-out, outputs.

Every plugin is mapped onto the building blocks the programs use, with the programs' own checks:
the ``logstash`` and ``beats`` inputs are ``services.logstash_input`` (the native and the framed
wire), the ``logstash`` and ``lumberjack`` outputs ``services.logstash_output``; ``stdin`` and
``generator`` are the output program's sources, ``stdout`` and ``file`` the input program's
sinks. A mistake found there (a TLS combination Logstash refuses, an unreadable certificate) is
reported at the plugin (or at the setting the message names), as ``FILE:LINE:COLUMN``, before
anything binds.

Semantics are Logstash's (``FanOut``): every event of every input goes to every output, and an
input acknowledges its sender only once every output has the event. ``@metadata`` stays with
the events inside the pipeline; every output leaves it out (``codecs.events.without_metadata``,
applied where events leave the process: the Output and the stdout and file sinks).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.codecs import ndjson
from twisted_logstash.codecs.events import Decorations, prepare, timestamp_now
from twisted_logstash.errors import SETTING, ConfigurationError, DeadLettered, SinkUnavailable
from twisted_logstash.interfaces import IEventSink
from twisted_logstash.pipeline.backoff import Backoff
from twisted_logstash.pipeline.sinks import FileSink, StdoutSink
from twisted_logstash.pipeline.sources import GeneratorSource, LineEvents, StdinSource
from twisted_logstash.pipelines.plugins import Checked, check
from twisted_logstash.pipelines.syntax import Config, PipelineError

__all__ = ["FanOut", "Pipeline", "SourceInput", "build"]

log = Logger(namespace="twisted_logstash.pipelines")

#: settings that only Logstash's syntax has; nothing here uses them
_IGNORED = frozenset({"id", "enable_metric", "codec"})
#: batches a stdin or generator input may have in the outputs at once before it is paused
SOURCE_WINDOW = 4


@implementer(IEventSink)
class FanOut:
    """The sink of every input: hands each batch to every output and fires once all have it.

    An output has the events once its ``deliver`` fired: a network output's receivers
    acknowledged them (or refused them for good: they are in its dead-letter file) or, with
    ``queue => "disk:DIR"``, its disk queue holds them (``Output.hold``); a file or stdout output
    wrote them. If one output fails, the batch fails (the input tells its sender
    to send again; outputs that already had it get it twice: at-least-once, never lost). A slow
    or unreachable output holds the batch, and so the input's back-pressure, rather than
    letting the others run ahead and losing what it cannot take.
    """

    def __init__(self, outputs: list[IEventSink]):
        self.outputs = outputs
        self.stopping = False
        # an Output's ``hold`` fires once a disk queue holds the events (else as ``deliver``)
        self._hand = [getattr(output, "hold", None) or output.deliver for output in outputs]

    def deliver(self, events: list[dict]) -> defer.Deferred:
        if self.stopping:
            return defer.fail(SinkUnavailable("the pipeline is stopping"))
        handed = [
            defer.maybeDeferred(hand, list(events)).addErrback(_dead_lettered_is_had)
            for hand in self._hand
        ]
        if len(handed) == 1:
            return handed[0].addCallback(lambda _: None)
        gathered = defer.gatherResults(handed, consumeErrors=True)
        gathered.addCallbacks(lambda _: None, _first_error)
        return gathered


def _dead_lettered_is_had(failure: Failure) -> None:
    """Events refused for good went to the dead-letter file: that output is done with them (as
    Logstash's DLQ); sent again they would only be refused again."""
    failure.trap(DeadLettered)
    log.warn("events refused for good: {reason}", reason=str(failure.value))


def _first_error(failure: Failure) -> Failure:
    if failure.check(defer.FirstError):
        return failure.value.subFailure
    return failure


class _SinkOutput(service.Service):
    """A stdout or file output: writes each batch before it counts as had."""

    def __init__(self, sink):
        self.sink = sink

    def deliver(self, events: list[dict]) -> defer.Deferred:
        return self.sink.deliver(events)

    def stopService(self):
        super().stopService()
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()

    def undelivered(self) -> int:
        return 0


class SourceInput(service.Service):
    """A stdin or generator input: its events, stamped and decorated, into the fan-out, at most
    ``window`` batches at a time (the source is paused beyond); a batch an output failed is
    handed again after a backoff, so nothing read is lost while the pipeline runs."""

    def __init__(
        self,
        source,
        sink: IEventSink,
        decorations: Decorations,
        reactor,
        window: int = SOURCE_WINDOW,
    ):
        self.source = source
        self.sink = sink
        self.decorations = decorations
        self.reactor = reactor
        self.window = window
        self.finite = source.finite
        self.finished: defer.Deferred = defer.Deferred()
        #: events and batches every output had (the input's counts in the program's lines)
        self.events_had = 0
        self.batches_had = 0
        self._outstanding = 0
        self._backoff = Backoff()

    def startService(self) -> None:
        super().startService()
        self.source.start(self._consume)
        self.source.done.addCallbacks(lambda _: self._check_finished(), self._source_failed)

    def stopService(self):
        super().stopService()
        self.source.stopProducing()

    def _consume(self, events: list[dict], position=None) -> None:
        prepare(events, timestamp_now(self.reactor), self.decorations)
        self._outstanding += 1
        if self._outstanding >= self.window:
            self.source.pauseProducing()
        self._hand(events)

    def _hand(self, events: list[dict]) -> None:
        self.sink.deliver(events).addCallbacks(
            self._had, self._failed, callbackArgs=(len(events),), errbackArgs=(events,)
        )

    def _had(self, _, count: int) -> None:
        self.events_had += count
        self.batches_had += 1
        self._backoff.reset()
        self._outstanding -= 1
        if self._outstanding < self.window and self.running:
            self.source.resumeProducing()
        self._check_finished()

    def _failed(self, failure: Failure, events: list[dict]) -> None:
        if not self.running:
            self._outstanding -= 1
            return
        delay = self._backoff.next()
        log.warn(
            "an output could not take {count} events ({reason}); trying again in {delay:.1f} s",
            count=len(events),
            reason=str(failure.value) or type(failure.value).__name__,
            delay=delay,
        )
        self.reactor.callLater(delay, self._retry, events)

    def _retry(self, events: list[dict]) -> None:
        if self.running:
            self._hand(events)
        else:
            self._outstanding -= 1

    def _check_finished(self) -> None:
        if self.source.ended and not self._outstanding and not self.finished.called:
            self.finished.callback(None)

    def _source_failed(self, failure: Failure) -> None:
        if not self.finished.called:
            self.finished.errback(failure)


class Pipeline(service.Service):
    """The running pipeline: outputs start first and stop last, so that every input always has
    somewhere to put its events; inputs stop (drain) before outputs do.

    When every input is finite (a counted generator, stdin) and all of them ended with every
    event had by every output, the reactor is stopped: the process exits 0, as Logstash does.
    Stopped with events not acknowledged by an output's receivers, it exits 1.
    """

    def __init__(
        self,
        inputs: list,
        outputs: list,
        fanout: FanOut,
        reactor,
        *,
        stop_timeout: float = 10.0,
        exit=None,
        input_ids: list[str] | None = None,
        output_ids: list[str] | None = None,
    ):
        self.inputs = inputs
        self.outputs = outputs
        #: what the metrics and health call each plugin (``plugin_id``), in the same order
        self.input_ids = input_ids or [f"input-{n}" for n in range(1, len(inputs) + 1)]
        self.output_ids = output_ids or [f"output-{n}" for n in range(1, len(outputs) + 1)]
        self.fanout = fanout
        self.reactor = reactor
        self.stop_timeout = stop_timeout
        self.exit_code = 0
        self._exit = exit
        self.finished = False

    def startService(self) -> None:
        super().startService()
        for output in self.outputs:
            output.startService()
        for each in self.inputs:
            each.startService()
        if self.inputs and all(getattr(each, "finite", False) for each in self.inputs):
            done = defer.gatherResults([each.finished for each in self.inputs], consumeErrors=True)
            done.addCallbacks(self._all_done, self._input_failed)

    def _all_done(self, _) -> None:
        """Every input ended and every output has their events; an output with a disk queue
        may still be sending them: stop once it is drained (as Logstash drains its queue)."""
        drains = [output.drain() for output in self.outputs if hasattr(output, "drain")]
        defer.gatherResults(drains, consumeErrors=True).addBoth(self._drained)

    def _drained(self, _) -> None:
        self.finished = True
        if self.running:
            log.info("every input ended and every output delivered its events")
            self._stop_reactor()

    def _input_failed(self, failure: Failure) -> None:
        failure = _first_error(failure)
        log.error("an input failed: {reason}", reason=str(failure.value))
        self._set_exit(1)
        self._stop_reactor()

    def _stop_reactor(self) -> None:
        try:
            self.reactor.stop()
        except ReactorNotRunning:  # a signal is stopping it already
            pass

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        yield defer.DeferredList([defer.maybeDeferred(each.stopService) for each in self.inputs])
        self.fanout.stopping = True
        timer = self.reactor.callLater(self.stop_timeout, self._abandon_attempts)
        try:
            yield defer.DeferredList([defer.maybeDeferred(o.stopService) for o in self.outputs])
        finally:
            if timer.active():
                timer.cancel()
        left = sum(output.undelivered() for output in self.outputs)
        if left:
            log.error("stopped with {count} events not acknowledged by any receiver", count=left)
            self._set_exit(1)
        elif not self.finished and not all(
            i.finished.called for i in self.inputs if getattr(i, "finite", False)
        ):
            log.warn("stopped before every input was read to its end")
            self._set_exit(1)

    def _abandon_attempts(self) -> None:
        for output in self.outputs:
            abort = getattr(output, "abort_attempts", None)
            if abort is not None and abort():
                log.warn(
                    "receivers did not answer within {timeout} s of stopping",
                    timeout=self.stop_timeout,
                )

    def _set_exit(self, code: int) -> None:
        self.exit_code = self.exit_code or code
        if self._exit is not None:
            self._exit(code)


def build(config: Config, reactor=None, environ: Mapping[str, str] | None = None) -> Pipeline:
    """The pipeline ``config`` describes, every plugin checked and every service built (TLS
    files read, files opened), nothing bound yet. PipelineError for the first mistake."""
    import os

    if reactor is None:
        from twisted.internet import reactor
    if environ is None:
        environ = os.environ
    inputs = [check(p, "input", config.source, environ) for p in config.plugins("input")]
    outputs = [check(p, "output", config.source, environ) for p in config.plugins("output")]
    if not inputs:
        raise PipelineError(config.source, 1, 1, "a pipeline needs at least one input")
    if not outputs:
        raise PipelineError(config.source, 1, 1, "a pipeline needs at least one output")
    built_outputs = [_built(_OUTPUT_BUILDERS[c.spec.name], c, reactor) for c in outputs]
    fanout = FanOut(built_outputs)
    built_inputs = [_built(_INPUT_BUILDERS[c.spec.name], c, reactor, fanout) for c in inputs]
    from twisted_logstash.tap.common import exit_with, keep_exit_status

    def exit(code: int) -> None:
        exit_with(code)
        keep_exit_status(reactor)

    return Pipeline(
        built_inputs,
        built_outputs,
        fanout,
        reactor,
        exit=exit,
        input_ids=[plugin_id(c) for c in inputs],
        output_ids=[plugin_id(c) for c in outputs],
    )


def plugin_id(checked: Checked) -> str:
    """A plugin's name in metrics and health: its ``id`` when the pipeline gives one, else
    where it is written (``logstash@3:3``), which tells two plugins of a kind apart."""
    given = checked.values.get("id")
    if given:
        return str(given)
    return f"{checked.plugin.name}@{checked.plugin.line}:{checked.plugin.column}"


def _built(builder: Callable, checked: Checked, *args):
    """What ``builder`` makes of ``checked``; its ConfigurationError as a PipelineError."""
    try:
        return builder(checked, *args)
    except PipelineError:
        raise
    except ConfigurationError as error:
        rename = getattr(builder, "rename", None)
        message = _logstash_words(error.render(SETTING, rename))
        named = [rename.get(name, name) if rename else name for name in error.settings]
        where = next((name for name in named if name in checked.given), None)
        raise checked.error(
            f"{checked.where()}: {message}", where or _named(message, checked)
        ) from None
    except OSError as error:
        raise checked.error(
            f"{checked.where()}: {error.filename or ''}: {error.strerror or error}"
        ) from None


def _named(message: str, checked: Checked) -> str | None:
    """The setting the pipeline wrote that ``message`` names first (the error points there)."""
    found = [
        (match.start(), name)
        for name in checked.given
        for match in [re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", message)]
        if match is not None
    ]
    return min(found)[1] if found else None


def _logstash_words(message: str) -> str:
    """A message of the programs' code as a pipeline user reads it: flags as setting names."""
    return re.sub(r"^logstash_(?:input|output): ", "", message)


def _given(checked: Checked, *, rename: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings the pipeline wrote, by the programs' names."""
    rename = rename or {}
    return {
        rename.get(name, name): checked.values[name]
        for name in checked.given
        if name not in _IGNORED
    }


def _decorations(checked: Checked) -> Decorations:
    values = checked.values
    return Decorations(
        type=values["type"], tags=tuple(values["tags"]), add_field=values["add_field"]
    )


# -- inputs -------------------------------------------------------------------------------------


def _network_input(protocol: str) -> Callable:
    def build_input(checked: Checked, reactor, sink: IEventSink):
        from twisted_logstash.services import logstash_input
        from twisted_logstash.tap.common import listen_address_of
        from twisted_logstash.tap.input import InputProgram

        settings = _given(checked)
        if "ssl_peer_metadata" in settings:
            _peer_metadata(checked, settings)
        service_ = logstash_input(protocol=protocol, sink=sink, reactor=reactor, **settings)
        where = str(listen_address_of(settings, protocol))
        program = InputProgram(service_, reactor, where=where)
        program.finite = False
        program.protocol = protocol  # the wire, for its metrics
        return program

    return build_input


def _peer_metadata(checked: Checked, settings: dict[str, Any]) -> None:
    """The beats input's deprecated ``ssl_peer_metadata => true`` (beats input 6.5 to 6.9) as
    the ``enrich`` it stands for, with its rules and words: not together with ``enrich``, and
    only with client certificates asked for."""
    wanted = settings.pop("ssl_peer_metadata")
    if "enrich" in settings:
        raise checked.error(
            f"{checked.where()}: both `enrich` and (deprecated) ssl_peer_metadata were provided;"
            " use only `enrich`",
            "ssl_peer_metadata",
        )
    log.warn(
        "{where}: `ssl_peer_metadata` is deprecated (obsolete since the beats input 7.0):"
        " use `enrich`",
        where=checked.where(),
    )
    if not wanted:
        return
    values = checked.values
    if values["ssl_enabled"] and values["ssl_client_authentication"] == "none":
        raise checked.error(
            f"{checked.where()}: Configuring ssl_peer_metadata => true requires"
            " ssl_client_authentication => to be configured with 'optional' or 'required'",
            "ssl_peer_metadata",
        )
    settings["enrich"] = ["codec_metadata", "source_metadata", "ssl_peer_metadata"]


def _stdin(checked: Checked, reactor, sink: IEventSink):
    source = _CodecStdin(reactor, codec=checked.values["codec"])
    return SourceInput(source, sink, _decorations(checked), reactor)


def _generator(checked: Checked, reactor, sink: IEventSink):
    values = checked.values
    if values["count"] < 0:
        raise checked.error(f"{checked.where()}: count must not be negative", "count")
    lines = values["lines"] or [values["message"]]
    source = LinesGenerator(values["count"], reactor, lines=lines, codec=values["codec"])
    return SourceInput(source, sink, _decorations(checked), reactor)


def _decoder(codec: str) -> Callable[[bytes], list[dict]]:
    """One line's events under ``codec``: ``json_lines``/``json`` as Logstash's json_lines codec
    (a line that is not JSON is kept with ``_jsonparsefailure``), ``line``/``plain`` the text as
    ``message``."""
    if codec in ("json_lines", "json"):
        return ndjson.decode_line

    def as_message(line: bytes) -> list[dict]:
        if line.endswith(b"\r"):
            line = line[:-1]
        return [{"message": line.decode("utf-8", "replace")}]

    return as_message


class LinesGenerator(GeneratorSource):
    """Logstash's ``generator``: each round hands every line of ``lines`` through the codec,
    each event with the round's ``sequence`` and ``host``; ``count`` rounds (0: endless)."""

    def __init__(self, count: int, reactor=None, *, lines: list[str], codec: str = "plain"):
        super().__init__(count, reactor, slice_size=max(1, 500 // max(1, len(lines))))
        self.lines = [line.encode("utf-8") for line in lines]
        self.decode = _decoder(codec)

    def _tick(self) -> None:
        start = self.sequence
        stop = start + self.slice_size
        if self.count:
            stop = min(stop, self.count)
        host = self.host_name
        events = []
        for n in range(start, stop):
            for line in self.lines:
                for event in self.decode(line):
                    event["sequence"] = n
                    event.setdefault("host", {"name": host})
                    events.append(event)
        self.sequence = stop
        self._emit(events)
        if self.count and self.sequence >= self.count:
            self._end()


class _CodecLines(LineEvents):
    """Lines read with a codec instead of the sources' lenient reading."""

    def __init__(self, max_line_length: int, decode: Callable[[bytes], list[dict]]):
        super().__init__(max_line_length)
        self.decode = decode

    def feed(self, data: bytes) -> list[dict]:
        decode = self.decode
        return [event for line in self.lines(data) if line.strip() for event in decode(line)]

    def finish(self) -> list[dict]:
        rest = self.rest()
        return self.decode(rest) if rest.strip() else []


class _CodecStdin(StdinSource):
    """``stdin`` with ``codec => line`` (every line is a ``message``) or ``json_lines``."""

    def __init__(self, reactor=None, *, codec: str = "line"):
        super().__init__(reactor)
        self.decode = _decoder(codec)

    def _begin(self) -> None:
        super()._begin()
        self._stdio.protocol.decoder = _CodecLines(self.max_line_length, self.decode)


# -- outputs ------------------------------------------------------------------------------------


def _logstash_output(checked: Checked, reactor):
    from twisted_logstash.services import logstash_output

    settings = _given(checked)
    hosts = settings.pop("hosts")
    return logstash_output(hosts=hosts, protocol="http", reactor=reactor, **settings)


def _lumberjack_output(checked: Checked, reactor):
    from twisted_logstash.services import logstash_output

    settings = _given(checked)
    port = settings.pop("port")
    hosts = [f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in settings.pop("hosts")]
    settings["ssl_enabled"] = True
    settings["ssl_certificate_authorities"] = [settings.pop("ssl_certificate")]
    settings["batch_size"] = checked.values["flush_size"]
    settings["batch_delay"] = checked.values["idle_flush_time"] * 1000
    settings.pop("flush_size", None)
    settings.pop("idle_flush_time", None)
    return logstash_output(hosts=hosts, protocol="lumberjack", reactor=reactor, **settings)


#: in the words of this plugin, whose CA (the certificate it trusts) is `ssl_certificate`
_lumberjack_output.rename = {"ssl_certificate_authorities": "ssl_certificate"}


def _stdout(checked: Checked, reactor):
    return _SinkOutput(StdoutSink())


def _file(checked: Checked, reactor):
    path = checked.values["path"]
    if "%{" in path:
        raise checked.error(
            f"{checked.where()}: a path with %{{field}} references is not supported here", "path"
        )
    return _SinkOutput(FileSink(path))


_INPUT_BUILDERS = {
    "logstash": _network_input("http"),
    "beats": _network_input("lumberjack"),
    "stdin": _stdin,
    "generator": _generator,
}
_OUTPUT_BUILDERS = {
    "logstash": _logstash_output,
    "lumberjack": _lumberjack_output,
    "stdout": _stdout,
    "file": _file,
}
