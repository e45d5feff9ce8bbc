"""Option plumbing shared by the two twistd programs.

Flags mirror Logstash's setting names (``--ssl-client-authentication`` is
``ssl_client_authentication``). Every setting is collected into a dict keyed by
the Logstash name, together with the set of names the user gave explicitly,
because some of Logstash's configuration errors are about what was *given*
(any ``ssl_*`` setting while ``ssl_enabled`` is false), not about values.
"""

from __future__ import annotations

import atexit
import os
import sys

from twisted.python import usage

from twisted_logstash.errors import ConfigurationError

#: what each wire defaults to where INTERFACE.md says "(`lumberjack`: ...)"
WIRE_DEFAULTS = {
    "http": {"port": 9800, "ssl_enabled": True},
    "lumberjack": {"port": 5044, "ssl_enabled": False},
}

BOOLEANS = {"true": True, "false": False}


def parse_bool(name: str, value: str) -> bool:
    try:
        return BOOLEANS[value.strip().lower()]
    except KeyError:
        raise ConfigurationError(f"--{name} takes true or false, not {value!r}")


def parse_int(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError(f"--{name} takes a whole number, not {value!r}")
    if number < minimum:
        raise ConfigurationError(f"--{name} must be at least {minimum}, not {number}")
    return number


def split_list(values: list[str]) -> list[str]:
    """Flags given as comma lists, repeated, or both."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def appender(key: str, doc: str):
    """An ``opt_`` method for a flag that may be repeated."""

    def opt(self, value):
        self.setdefault(key, []).append(value)

    opt.__doc__ = doc
    return opt


class LogstashOptions(usage.Options):
    """Options whose flags map to Logstash settings.

    ``optParameters`` default to None so that ``explicit`` can tell what the
    user typed; real defaults are applied after validation.
    """

    #: keys of flags that may be repeated (their ``opt_`` methods use appender)
    repeatable: tuple[str, ...] = ()

    def __init__(self):
        super().__init__()
        for key in self.repeatable:
            self[key] = []

    def postOptions(self):
        """Make every flag readable by its Logstash name (``ssl-enabled`` -> ``ssl_enabled``)."""
        for long, *_ in self.optParameters:
            self[long.replace("-", "_")] = self.get(long)

    def explicit(self) -> set[str]:
        """Logstash names of the settings given on the command line."""
        given = {long.replace("-", "_") for long, *_ in self.optParameters}
        given = {key for key in given if self.get(key) is not None}
        return given | {key for key in self.repeatable if self.get(key)}


def fail(program: str, error: Exception) -> None:
    """A configuration error: one clear line and a non-zero exit, before binding."""
    sys.stderr.write(f"twistd {program}: configuration error: {error}\n")
    sys.stderr.flush()
    raise SystemExit(2)


_exit_code = 0


def exit_with(code: int) -> None:
    """Make the twistd process exit with ``code`` once it has shut down.

    twistd always exits 0 after its reactor stopped; a program that must report failure (an
    output stopped with events undelivered) sets the status here. The atexit hook runs after
    twistd's own shutdown and cleanup, flushes the standard streams and exits with the code.
    """
    global _exit_code
    if code and not _exit_code:
        atexit.register(_exit_now)
    _exit_code = _exit_code or code


def keep_exit_status(reactor) -> None:
    """Let the status given to ``exit_with`` stand when a signal stopped the reactor.

    After a SIGTERM/SIGINT, twistd re-sends the signal to itself once it has shut down (so the
    parent sees "killed by SIGTERM"); that would end the process before the atexit hook and hide
    a failure status. Called while the reactor shuts down, this makes twistd return normally.
    """
    if getattr(reactor, "_exitSignal", None) is not None:
        reactor._exitSignal = None


def _exit_now() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_code)
