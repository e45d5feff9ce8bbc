"""One call to get the input or the output the programs run, for programs that embed them.

``logstash_input(protocol=..., sink=..., **settings)`` and ``logstash_output(hosts=...,
protocol=..., **settings)`` take Logstash's setting names (``ssl_certificate``,
``ssl_client_authentication``, ``max_pending_requests``...; every flag of ``twistd
logstash-input``/``logstash-output`` with ``-`` written ``_``) and return the very services the
programs build, checked by the same code with the same sentences: a mistake is a
``ConfigurationError`` before anything binds or connects. Where a program's message names the
flag (``--ssl-key``), the library's names the setting (`` `ssl_key` ``): one wording per rule,
rendered for each front end (``errors.Message``).

Values may be given as Python values: ``True``/``False``, numbers, lists for list settings
(``ssl_certificate_authorities``, ``ssl_supported_protocols``, ``tags``, ``hosts``), a dict for
``add_field``. Unlike the programs, the library never reads ``LOGSTASH_PASSWORD``: a password is
given as ``password`` or ``password_file``.

The values are handed to the programs' own option parser rather than to a second copy of its
rules: one set of checks, so that the library and the programs cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from twisted_logstash import config
from twisted_logstash.errors import SETTING, ConfigurationError, render
from twisted_logstash.interfaces import IEventSink
from twisted_logstash.pipeline.sinks import CallableSink

__all__ = ["logstash_input", "logstash_output"]

#: settings whose flag may be repeated: a list becomes one flag per item
_REPEATED = frozenset({"ssl_certificate_authorities", "add_field", "hosts"})
#: what a library caller gives as an object, not as a flag
_NOT_FLAGS = frozenset({"protocol", "sink", "source", "hosts"})


def logstash_input(
    protocol: str = "http",
    sink: IEventSink | Callable[[list[dict]], Any] | str = "stdout",
    *,
    reactor=None,
    **settings: Any,
):
    """The input service (an ``InputService``, an ``IService``) for ``protocol`` (``http``, the
    native wire, or ``lumberjack``, the framed wire), handing each batch to ``sink``: an
    ``IEventSink``, a callable taking a list of events (it may return a Deferred), or one of the
    program's sink names (``stdout``, ``file:PATH``, ``null``). Add it to your application
    (``setServiceParent``) or call ``startService()``; ``stopService()`` drains."""
    from twisted_logstash.tap import input as program

    with _setting_words():
        options = _parsed(program.Options(), "logstash_input", protocol, settings)
        values, explicit, warnings = program.settings_from(options, environ={})
        values.update(_as_given(settings))
        values["sink"] = _sink(sink)
        service, more = program.build(values, explicit, reactor)
    _warn(warnings + more)
    return service


def logstash_output(
    hosts: str | Iterable[str],
    protocol: str = "http",
    *,
    reactor=None,
    **settings: Any,
):
    """The output service (an ``Output``, an ``IService`` and an ``IEventSink``) sending to
    ``hosts`` (``host``, ``host:port``, ``[v6]:port``; a list or a comma list) over
    ``protocol``. ``output.send(events)`` returns a Deferred that fires once a receiver
    acknowledged them (or fails once they were refused for good and dead-lettered). The
    output's queue (``queue="disk:DIR"`` too) is closed when the service stops."""
    from twisted_logstash.tap import output as program

    settings = {**settings, "hosts": [hosts] if isinstance(hosts, str) else list(hosts)}
    if "source" in settings:
        raise ConfigurationError(
            "logstash_output: 'source' is for the program; call output.send(events) instead"
        )
    with _setting_words():
        options = _parsed(program.Options(), "logstash_output", protocol, settings)
        values, explicit, warnings = program.settings_from(options, environ={})
        output, more = program.build_output(values, explicit, reactor, close_queue=True)
    _warn(warnings + more)
    return output


@contextmanager
def _setting_words() -> Iterator[None]:
    """A ConfigurationError leaves the library naming settings (`` `ssl_key` ``), not the
    programs' flags, whichever way its message was written."""
    try:
        yield
    except ConfigurationError as error:
        error.style = SETTING
        raise


def _parsed(options, where: str, protocol: str, settings: Mapping[str, Any]):
    """``options`` parsed from ``settings`` as the program parses its command line."""
    known = {long.replace("-", "_") for long, *_ in options.optParameters}
    known |= set(options.repeatable) | ({"hosts"} if hasattr(options, "opt_hosts") else set())
    argv = [f"--protocol={protocol}"]
    for name, value in settings.items():
        if name not in known or (name in _NOT_FLAGS and name != "hosts"):
            raise ConfigurationError(
                f"{where}: unknown setting {name!r}; known: {', '.join(sorted(known - _NOT_FLAGS))}"
            )
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        argv += [f"{flag}={item}" for item in _flag_values(name, value)]
    from twisted.python import usage

    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        raise ConfigurationError(f"{where}: {e}") from None
    return options


def _flag_values(name: str, value: Any) -> list[str]:
    """The flag value(s) a Python value stands for."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, Mapping):
        return [f"{key}={item}" for key, item in value.items()]
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [str(item) for item in value]
        return items if name in _REPEATED else [",".join(items)]
    return [str(value)]


def _as_given(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``tags`` and ``add_field`` as the caller gave them, once the flags made of them were
    checked: a flag reads a comma list and KEY=VALUE, so a tag holding a comma or a field name
    holding ``=`` would be cut there (a pipeline's ``tags => ["a,b"]`` is one tag)."""
    given: dict[str, Any] = {}
    tags = settings.get("tags")
    if isinstance(tags, (list, tuple)):
        given["tags"] = [str(tag) for tag in tags]
    fields = settings.get("add_field")
    if isinstance(fields, Mapping):
        given["add_field"] = [(str(key).strip(), str(value)) for key, value in fields.items()]
    return given


def _sink(sink) -> IEventSink:
    if isinstance(sink, str) or IEventSink.providedBy(sink):
        return sink
    if callable(sink):
        return CallableSink(sink)
    raise ConfigurationError(
        "sink: an IEventSink, a callable taking a list of events, or 'stdout', 'file:PATH' "
        f"or 'null', not {type(sink).__name__}"
    )


def _warn(warnings: Iterable[str]) -> None:
    from twisted.logger import Logger

    log = Logger(namespace="twisted_logstash")
    for warning in warnings:
        if warning != config.WARN_PASSWORD_FLAG:  # no process list to see it in here
            log.warn("{warning}", warning=render(warning, SETTING))
