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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from twisted.internet.error import CannotListenError
from twisted.python import usage

from twisted_logstash import config
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.transport.hosts import Host

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


def wire_of(options: usage.Options) -> tuple[str, dict]:
    """The chosen ``--protocol`` and its wire defaults (``WIRE_DEFAULTS``)."""
    protocol = (options["protocol"] or "http").lower()
    if protocol not in WIRE_DEFAULTS:
        raise ConfigurationError(f"--protocol takes http or lumberjack, not {protocol!r}")
    return protocol, WIRE_DEFAULTS[protocol]


def check_protocol_flags(
    protocol: str, explicit: set[str], only: Mapping[str, tuple[str, ...]], why: Mapping[str, str]
) -> None:
    """ConfigurationError for a flag given that the chosen wire does not have.

    ``only`` maps a wire to the settings it alone has; ``why`` gives the reason to print for a
    setting instead of the plain "only with --protocol ...".
    """
    for other, names in only.items():
        if other == protocol:
            continue
        for name in names:
            if name in explicit:
                flag = "--" + name.replace("_", "-")
                reason = why.get(name)
                raise ConfigurationError(
                    f"{flag} is not available with --protocol {protocol}"
                    + (f": {reason}" if reason else f" (only with --protocol {other})")
                )


def tls_and_auth_settings(
    options: usage.Options, defaults: dict, environ: Mapping[str, str]
) -> tuple[dict, list[str]]:
    """The settings both programs share (TLS identity and tuning, basic auth), and warnings
    about how the password was given."""
    # LOGSTASH_PASSWORD is the default of --password for a --username, nothing more: exported
    # for another program, it must not turn on (or break) authentication here
    password, warnings = config.read_password(
        options["password"], options["password_file"], environ if options["username"] else {}
    )
    ssl_enabled = options["ssl_enabled"]
    settings = {
        "ssl_enabled": (
            parse_bool("ssl-enabled", ssl_enabled) if ssl_enabled else defaults["ssl_enabled"]
        ),
        "ssl_certificate": options["ssl_certificate"],
        "ssl_key": options["ssl_key"],
        "ssl_key_passphrase": options["ssl_key_passphrase"],
        "ssl_keystore_path": options["ssl_keystore_path"],
        "ssl_keystore_password": options["ssl_keystore_password"],
        "ssl_certificate_authorities": list(options["ssl_certificate_authorities"]),
        "ssl_supported_protocols": split_list(
            [options["ssl_supported_protocols"] or "TLSv1.2,TLSv1.3"]
        ),
        "ssl_cipher_suites": split_list([options["ssl_cipher_suites"] or ""]),
        "username": options["username"],
        "password": password,
    }
    return settings, warnings


def listen_address(error: CannotListenError) -> str:
    """Where a listen failed, as ``host:port`` or ``[v6]:port`` (no interface: every address)."""
    return str(Host(error.interface or "0.0.0.0", error.port))


def stop_when_running(reactor) -> None:
    """Stop the reactor from ``startService``, which runs before the reactor does."""
    reactor.callWhenRunning(reactor.stop)


@contextmanager
def configuration_errors(program: str) -> Iterator[None]:
    """Turn a ConfigurationError, or an OSError from a file the settings name, into ``fail``."""
    try:
        yield
    except ConfigurationError as e:
        fail(program, e)
    except OSError as e:
        fail(program, ConfigurationError(f"{e.filename or ''}: {e.strerror or e}"))


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
