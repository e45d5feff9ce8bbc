"""Option plumbing shared by the two twistd programs, and the way from Logstash-named
settings to endpoints that does not depend on flags.

Flags mirror Logstash's setting names (``--ssl-client-authentication`` is
``ssl_client_authentication``). Every setting is collected into a dict keyed by
the Logstash name, together with the set of names the user gave explicitly,
because some of Logstash's configuration errors are about what was *given*
(any ``ssl_*`` setting while ``ssl_enabled`` is false), not about values. A
setting not given is None (or an empty list) in that dict.

``input_listener`` and ``output_connector`` take such a dict (from flags, or from a library
call) and check it once, with Logstash's rules, into a frozen ``Listener`` or ``Connector``;
these build the endpoints. Every TLS default is applied in the settings objects
(``security/settings.py``), the wire's defaults in ``WIRE_DEFAULTS``.

Messages name settings as ``Message`` placeholders (``errors.py``); ``fail`` and ``flag_words``
render them as the flags the user typed. ``ProgramOptions`` gives every program (the pipeline's
too) ``--version`` (this project's) and a suggestion for a mistyped flag; ``LogstashOptions``
adds the grouped ``--help`` (``tap/help.py``).
"""

from __future__ import annotations

import atexit
import difflib
import os
import re
import sys
from collections.abc import Iterator, Mapping, Set
from contextlib import contextmanager
from dataclasses import dataclass

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python import usage

from twisted_logstash import config
from twisted_logstash.errors import FLAG, ConfigurationError, render
from twisted_logstash.security.auth import Credentials
from twisted_logstash.security.endpoints import (
    DEFAULT_CONNECT_TIMEOUT,
    ClientEndpoints,
    client_endpoint_factory,
    server_endpoint,
)
from twisted_logstash.security.settings import ClientTLSSettings, ServerTLSSettings
from twisted_logstash.transport.hosts import Host

#: what each wire defaults to where INTERFACE.md says "(`lumberjack`: ...)"
WIRE_DEFAULTS = {
    "http": {"port": 9800, "ssl_enabled": True},
    "lumberjack": {"port": 5044, "ssl_enabled": False},
}
#: where an input listens when no host is given: every IPv4 address
DEFAULT_HOST = "0.0.0.0"

BOOLEANS = {"true": True, "false": False}


def _setting(name: str) -> str:
    """A setting's placeholder from its flag (``ssl-enabled``) or its name (``ssl_enabled``)."""
    return "{" + name.replace("-", "_") + "}"


def parse_bool(name: str, value: str) -> bool:
    """``value`` of setting ``name`` (flag or setting spelling) as true or false."""
    try:
        return BOOLEANS[value.strip().lower()]
    except KeyError:
        raise ConfigurationError.about(
            _setting(name) + " takes true or false, not {value!r}", value=value
        ) from None


def parse_int(name: str, value: str, minimum: int = 0) -> int:
    """``value`` of setting ``name`` (flag or setting spelling) as a whole number."""
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError.about(
            _setting(name) + " takes a whole number, not {value!r}", value=value
        ) from None
    if number < minimum:
        raise ConfigurationError.about(
            _setting(name) + " must be at least {minimum}, not {number}",
            minimum=minimum,
            number=number,
        )
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


_GETOPT = re.compile(r"^option --(\S+) (not recognized|not a unique prefix)$")
_NO_SUCH = re.compile(r"^No such option '(\S+)'$")
_NO_VALUE = re.compile(r"^option --(\S+) requires argument$")
_A_VALUE = re.compile(r"^option --(\S+) must not have an argument$")


def suggestion(typed: str, flags: list[str]) -> str:
    """The unknown-flag sentence: ``typed`` and the nearest flag of ``flags`` (a flag it
    begins, the shortest such, or the closest spelling), when one is near enough."""
    typed = typed.lstrip("-")
    begun = sorted((flag for flag in flags if flag.startswith(typed)), key=len)
    near = begun[:1] or difflib.get_close_matches(typed, flags, n=1, cutoff=0.6)
    if near:
        return f"unknown flag --{typed}; did you mean --{near[0]}?"
    return f"unknown flag --{typed}; --help lists the flags"


def version() -> str:
    """This project's version, as installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("twisted-logstash")
    except PackageNotFoundError:  # pragma: no cover - run from a tree never installed
        return "unknown"


class ProgramOptions(usage.Options):
    """What every program's options have: ``--version`` says this project's version (not
    Twisted's: ``twistd --version`` still does), and a mistyped flag is answered with the
    nearest one."""

    def opt_version(self):
        """Print the version of twisted-logstash and exit."""
        print(f"twisted-logstash {version()}")
        sys.exit(0)

    def parseOptions(self, options=None):
        try:
            super().parseOptions(options)
        except usage.UsageError as error:
            message = str(error)
            for pattern, said in ((_NO_VALUE, "needs a value"), (_A_VALUE, "takes no value")):
                flag = pattern.match(message)
                if flag is not None:
                    raise usage.UsageError(f"--{flag.group(1)} {said}") from None
            unknown = _GETOPT.match(message) or _NO_SUCH.match(message)
            if unknown is None:
                raise
            from twisted_logstash.tap.help import flags_of

            raise usage.UsageError(suggestion(unknown.group(1), flags_of(self))) from None


class LogstashOptions(ProgramOptions):
    """Options whose flags map to Logstash settings.

    ``optParameters`` default to None so that ``explicit`` can tell what the
    user typed; real defaults are applied after validation.
    """

    #: keys of flags that may be repeated (their ``opt_`` methods use appender)
    repeatable: tuple[str, ...] = ()
    #: the ``--help`` groups: flag names by group (``tap/help.py``); None, one plain list
    help_groups: dict[str, tuple[str, ...]] | None = None

    def __init__(self):
        super().__init__()
        for key in self.repeatable:
            self[key] = []

    def postOptions(self):
        """Make every flag readable by its Logstash name (``ssl-enabled`` -> ``ssl_enabled``)."""
        for long, *_ in self.optParameters:
            self[long.replace("-", "_")] = self.get(long)

    def getUsage(self, width: int | None = None) -> str:
        if self.help_groups is None:
            return super().getUsage(width)
        from twisted_logstash.tap.help import grouped_usage

        return grouped_usage(self, self.help_groups, width)

    def explicit(self) -> set[str]:
        """Logstash names of the settings given on the command line."""
        given = {long.replace("-", "_") for long, *_ in self.optParameters}
        given = {key for key in given if self.get(key) is not None}
        return given | {key for key in self.repeatable if self.get(key)}


def wire_of(options: usage.Options) -> tuple[str, dict]:
    """The chosen ``--protocol`` and its wire defaults (``WIRE_DEFAULTS``)."""
    protocol = (options["protocol"] or "http").lower()
    return protocol, _wire(protocol)


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
                reason = why.get(name)
                raise ConfigurationError.about(
                    _setting(name)
                    + f" is not available with {{protocol:{protocol}}}"
                    + (": {reason}" if reason else f" (only with {{protocol:{other}}})"),
                    reason=reason or "",
                )


def tls_and_auth_settings(
    options: usage.Options, environ: Mapping[str, str]
) -> tuple[dict, list[str]]:
    """The settings both programs share (TLS identity and tuning, basic auth) as given, and
    warnings about how the password was given. Defaults are not applied here: see
    ``input_listener`` and ``output_connector``."""
    # LOGSTASH_PASSWORD is the default of --password for a --username, nothing more: exported
    # for another program, it must not turn on (or break) authentication here
    password, warnings = config.read_password(
        options["password"], options["password_file"], environ if options["username"] else {}
    )
    ssl_enabled = options["ssl_enabled"]
    settings = {
        "ssl_enabled": parse_bool("ssl-enabled", ssl_enabled) if ssl_enabled else None,
        "ssl_certificate": options["ssl_certificate"],
        "ssl_key": options["ssl_key"],
        "ssl_key_passphrase": options["ssl_key_passphrase"],
        "ssl_keystore_path": options["ssl_keystore_path"],
        "ssl_keystore_password": options["ssl_keystore_password"],
        "ssl_certificate_authorities": list(options["ssl_certificate_authorities"]),
        "ssl_supported_protocols": split_list([options["ssl_supported_protocols"] or ""]),
        "ssl_cipher_suites": split_list([options["ssl_cipher_suites"] or ""]),
        "username": options["username"],
        "password": password,
    }
    return settings, warnings


def lowered(value: str | None) -> str | None:
    """A choice flag's value in lower case (flags are case-insensitive); None when not given."""
    return value.lower() if value else None


def _wire(protocol: str) -> dict:
    if protocol not in WIRE_DEFAULTS:
        raise ConfigurationError.about(
            "{protocol} takes http or lumberjack, not {value!r}", value=protocol
        )
    return WIRE_DEFAULTS[protocol]


def _explicit(settings: Mapping, explicit: Set[str] | None) -> Set[str]:
    if explicit is not None:
        return explicit
    return {name for name in settings if config.is_given(settings, name)}


def listen_address_of(settings: Mapping, protocol: str = "http") -> Host:
    """Where an input listens: ``host`` (``DEFAULT_HOST``) and ``port`` (the wire's)."""
    port = settings.get("port")
    if port is None:
        port = _wire(protocol)["port"]
    return Host(settings.get("host") or DEFAULT_HOST, port)


@dataclass(frozen=True)
class Listener:
    """An input's checked address, TLS and basic-auth credentials: what its endpoint and its
    factory are built from."""

    address: Host
    tls: ServerTLSSettings
    credentials: Credentials
    #: settings that work but are unsafe (``Message``: rendered as flags or settings)
    warnings: tuple[str, ...]

    def endpoint(self, reactor) -> IStreamServerEndpoint:
        """The server endpoint (TLS contexts are built, and their files read, here)."""
        return server_endpoint(reactor, self.address.host, self.address.port, self.tls)


@dataclass(frozen=True)
class Connector:
    """An output's checked TLS and basic-auth credentials: what its endpoints and its
    transmitter are built from."""

    tls: ClientTLSSettings
    credentials: Credentials
    #: settings that work but are unsafe (``Message``: rendered as flags or settings)
    warnings: tuple[str, ...]

    def endpoints(self, reactor, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> ClientEndpoints:
        """Each host's client endpoint (the TLS context is built, and its files read, here)."""
        return client_endpoint_factory(reactor, self.tls, timeout)


def input_listener(
    settings: Mapping, explicit: Set[str] | None = None, *, protocol: str = "http"
) -> Listener:
    """An input's Logstash-named settings, checked: credentials, then TLS (Logstash's rules
    and messages, ConfigurationError for the first broken one).

    ``settings`` may hold any of the input's settings (``host``, ``port``, ``ssl_*``,
    ``username``, ``password``; others are ignored); a missing or None one takes its default
    (``ssl_enabled`` and ``port`` the wire's). ``explicit`` names the settings the user gave
    (None: every one that holds a value).
    """
    explicit = _explicit(settings, explicit)
    values = {**settings, "ssl_enabled": config.ssl_on(settings, _wire(protocol)["ssl_enabled"])}
    credentials = Credentials.for_input(values)
    tls = ServerTLSSettings.from_settings(values, explicit)
    return Listener(
        address=listen_address_of(settings, protocol),
        tls=tls,
        credentials=credentials,
        warnings=(*credentials.warnings, *tls.warnings),
    )


def output_connector(
    settings: Mapping, explicit: Set[str] | None = None, *, protocol: str = "http"
) -> Connector:
    """An output's Logstash-named settings, checked: credentials, then TLS (Logstash's rules
    and messages, ConfigurationError for the first broken one). See ``input_listener``."""
    explicit = _explicit(settings, explicit)
    values = {**settings, "ssl_enabled": config.ssl_on(settings, _wire(protocol)["ssl_enabled"])}
    credentials = Credentials.for_output(values)
    tls = ClientTLSSettings.from_settings(values, explicit)
    return Connector(
        tls=tls,
        credentials=credentials,
        warnings=(*credentials.warnings, *tls.warnings),
    )


def listen_address(error: CannotListenError) -> str:
    """Where a listen failed, as ``host:port`` or ``[v6]:port`` (no interface: every address)."""
    return str(Host(error.interface or DEFAULT_HOST, error.port))


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


def flag_words(message: str) -> str:
    """A message (a ``Message``, or plain text) as a program's user reads it: settings named
    as the flags they typed."""
    return render(message, FLAG)


def fail(program: str, error: Exception) -> None:
    """A configuration error: one clear line and a non-zero exit, before binding; its
    settings named as the flags the user typed."""
    text = error.render(FLAG) if isinstance(error, ConfigurationError) else str(error)
    sys.stderr.write(f"twistd {program}: configuration error: {text}\n")
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
