"""The programs' log: ``--log-level`` and ``--log-format``, for our lines and Twisted's, and
the log file's rotation (``--log-rotate-length``, ``--log-max-rotated``).

twistd starts its log observer after ``makeService``, from the application's ``ILogObserver``
component when it has one (``twisted.application.app.AppLogger.start``). The programs' top
services set that component when they are given their application (``attach``), so the level
and the format apply from twistd's first line on, with no observer of twistd's to undo. Where
the lines go is still twistd's choice: standard output under ``-n`` (or ``--logfile=-``), the file
of ``--logfile``, ``twistd.log`` for a daemon. A user's ``--logger`` or ``--syslog`` is left
alone: that observer gets every line, as the user asked.

Twisted's lines about its own machinery (a factory's repr "starting on" a port, a factory starting
or stopping, the reactor class, the main loop ending) say nothing a user of the programs acts on:
they are debug lines here, whatever Twisted logged them at. (A port closed stays: a stop's
progress.)

Under ``--logfile FILE`` (and for a daemon's ``twistd.log``) SIGUSR1 works as a log rotation
tool expects (docs/operations.md, "Log files and rotation"). twistd itself would install its
SIGUSR1 handler only with its own observer, which the programs replace, so without ours SIGUSR1
killed them. ``ReopenableLogFile`` tells the two cases apart: when FILE was moved away (or
replaced by a new file, logrotate's ``create``), it reopens FILE, creating it if need be; when
FILE is still the file being written, it rotates it itself as twistd does (FILE becomes FILE.1).
The lines before the signal end in the old file, with one line saying where the log goes on;
the ones after start the new one: the swap happens between two lines, under the file's lock.

The file rotates by size as twistd's does, at 1,000,000 bytes, keeping every rotated file, unless
``--log-rotate-length`` (0: never by size, for logrotate) and ``--log-max-rotated`` (the N newest
rotated files kept, SIGUSR1's rotation included) say otherwise. Without a log file they are
accepted and unused, as twistd leaves ``--logfile`` unused under ``--syslog``: one set of flags
serves ``-n`` while trying and the daemon after.

``--log-format json`` writes one JSON object a line (not RFC 7464's record separators, which
line-reading shippers choke on), with ECS's names for what a shipper indexes: ``@timestamp``,
``log.level``, ``log.logger`` (the namespace), ``message`` (the line as text), the event's own
fields under ``fields`` and a failure's traceback as ``error.stack_trace``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    PredicateResult,
    formatEvent,
    textFileLogObserver,
)
from twisted.python import threadable
from twisted.python.logfile import LogFile
from zope.interface import implementer

from twisted_logstash.errors import ConfigurationError

log = Logger(namespace="twisted_logstash.logs")

#: ``--log-level`` values, lowest first
LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}
FORMATS = ("text", "json")

#: twistd's log file rotation: at 1,000,000 bytes, keeping every rotated file
DEFAULT_ROTATE_LENGTH = 1_000_000

#: the rows of the programs' option lists
OPTIONS = [
    ["log-level", None, None, "debug, info, warn or error: lines below it are hidden [info]"],
    ["log-format", None, None, "text, or json (one object a line, for log shippers) [text]"],
    [
        "log-rotate-length",
        None,
        None,
        "with a log file only (--logfile FILE, a daemon's twistd.log): the size at which"
        " it is rotated (FILE becomes FILE.1), as 10mb or 1048576; 0: never by size, for"
        " logrotate [1000000, twistd's]",
    ],
    [
        "log-max-rotated",
        None,
        None,
        "with a log file only: the rotated files kept (FILE.1 to FILE.N), older ones"
        " removed at a rotation [all, twistd's]",
    ],
]

#: Twisted's own lines that are debug here (see the module docstring)
_CHATTER = re.compile(
    r"\S+ starting on \d+"
    r"|(?:Starting|Stopping) factory .*"
    r"|Main loop terminated\."
    r"|reactor class: .*",
    re.DOTALL,
)


@dataclass(frozen=True)
class LogSettings:
    """What ``--log-level``, ``--log-format``, ``--log-rotate-length`` and
    ``--log-max-rotated`` asked for. The last two are the log file's (``destination``): with
    the log on standard output, or twistd's ``--logger``/``--syslog``, they are accepted and
    unused, as twistd's own ``--logfile`` is under ``--syslog``."""

    level: LogLevel = LogLevel.info
    format: str = "text"
    #: bytes at which the log file is rotated; 0: never by size (LogFile's ``rotateLength``)
    rotate_length: int = DEFAULT_ROTATE_LENGTH
    #: rotated files kept, the oldest removed at a rotation; None: every one
    #: (LogFile's ``maxRotatedFiles``)
    max_rotated: int | None = None

    @classmethod
    def from_flags(
        cls,
        level: str | None,
        format: str | None,
        rotate_length: str | None = None,
        max_rotated: str | None = None,
    ) -> LogSettings:
        """The flags' values, checked (None: the default)."""
        name = (level or "info").strip().lower()
        if name == "warning":
            name = "warn"
        if name not in LEVELS:
            raise ConfigurationError(f"--log-level takes debug, info, warn or error, not {level!r}")
        kind = (format or "text").strip().lower()
        if kind not in FORMATS:
            raise ConfigurationError(f"--log-format takes text or json, not {format!r}")
        return cls(
            LEVELS[name],
            kind,
            DEFAULT_ROTATE_LENGTH if rotate_length is None else _rotate_length(rotate_length),
            None if max_rotated is None else _max_rotated(max_rotated),
        )

    def observer(self, stream: IO[str] | Callable[[], IO[str]]) -> ILogObserver:
        """An observer writing lines at ``level`` and above on ``stream`` (or on what the
        callable returns when a line comes: ``sys.stdout`` as it is then)."""
        json_lines = self.format == "json"
        inner = JsonLineObserver(stream) if json_lines else _TextObserver(stream)
        return FilteringLogObserver(inner, [level_filter(self.level)])


#: a length of 0 (``0``, ``0b``, ``0.0kb``...): never rotate by size
_ZERO = re.compile(r"\s*0+(?:\.0+)?\s*(?:[kmgtp]?b)?\s*", re.IGNORECASE)


def _rotate_length(text: str) -> int:
    """``--log-rotate-length``: a size as ``--queue-max-bytes`` reads one (``10mb``, plain
    bytes), or 0."""
    from twisted_logstash.pipeline.diskqueue import parse_bytes

    if _ZERO.fullmatch(text):
        return 0
    try:
        return parse_bytes(text, "--log-rotate-length")
    except ConfigurationError:
        raise ConfigurationError(
            "--log-rotate-length takes a size such as 10mb or 1048576, or 0 (never rotate by"
            f" size), not {text!r}"
        ) from None


def _max_rotated(text: str) -> int:
    """``--log-max-rotated``: a whole number of files, at least 1."""
    try:
        count = int(text.strip())
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigurationError(
            f"--log-max-rotated takes a number of files, at least 1, not {text!r}"
        )
    return count


def level_of(event: Mapping) -> LogLevel:
    """The level a line is shown at: its own, or debug for Twisted's chatter."""
    level = event.get("log_level", LogLevel.info)
    if level is LogLevel.info and _is_chatter(event):
        return LogLevel.debug
    return level


def _is_chatter(event: Mapping) -> bool:
    namespace = event.get("log_namespace", "")
    if namespace.startswith("twisted_logstash"):
        return False
    text = event.get("log_format")
    if text is None:  # a legacy log.msg: its text is the message itself
        text = " ".join(str(m) for m in event.get("message", ()))
    return bool(_CHATTER.fullmatch(text) or _CHATTER.fullmatch(_text(event)))


def _text(event: Mapping) -> str:
    try:
        return formatEvent(event)
    except Exception:
        return ""


def level_filter(threshold: LogLevel) -> Callable[[Mapping], PredicateResult]:
    """A predicate for ``FilteringLogObserver``: lines under ``threshold`` are dropped."""

    def predicate(event: Mapping) -> PredicateResult:
        if level_of(event) < threshold:
            return PredicateResult.no
        return PredicateResult.maybe

    return predicate


def _stream_of(stream) -> IO[str]:
    return stream() if callable(stream) and not hasattr(stream, "write") else stream


#: what every line is written inside (``guard_writes``)
_guard: list[Callable[[], AbstractContextManager] | None] = [None]


def guard_writes(guard: Callable[[], AbstractContextManager] | None) -> None:
    """Write every line inside ``guard()`` from now on (None: plainly again): a live progress
    line on the same terminal is cleared before a line and drawn again after it."""
    _guard[0] = guard


def _guarded() -> AbstractContextManager:
    guard = _guard[0]
    return guard() if guard is not None else nullcontext()


@implementer(ILogObserver)
class _TextObserver:
    """twistd's own text lines (``TIME [namespace#level] text``), on a stream found per line."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._observers: dict[int, ILogObserver] = {}

    def __call__(self, event: Mapping) -> None:
        stream = _stream_of(self._stream)
        observer = self._observers.get(id(stream))
        if observer is None:
            observer = self._observers[id(stream)] = textFileLogObserver(stream)
        with _guarded():
            observer(event)


@implementer(ILogObserver)
class JsonLineObserver:
    """One JSON object a line; see the module docstring for the names."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def __call__(self, event: Mapping) -> None:
        stream = _stream_of(self._stream)
        line = json_line(event)
        with _guarded():
            stream.write(line)
            stream.flush()


def json_line(event: Mapping) -> str:
    """``event`` as one line of JSON, newline included."""
    seconds = event.get("log_time") or time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    record = {
        "@timestamp": f"{stamp}.{int(seconds * 1000) % 1000:03d}Z",
        "log.level": level_of(event).name,
        "log.logger": event.get("log_namespace") or event.get("system") or "-",
        "message": _text(event),
    }
    fields = {
        key: _plain(value)
        for key, value in event.items()
        if not key.startswith("log_") and key not in _LEGACY_KEYS
    }
    if fields:
        record["fields"] = fields
    failure = event.get("log_failure")
    if failure is not None:
        record["error.stack_trace"] = failure.getTraceback()
        record["error.message"] = str(failure.value)
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


#: keys of legacy ``log.msg`` events, not fields of the line
_LEGACY_KEYS = frozenset(
    {"message", "format", "system", "time", "isError", "why", "failure", "printed"}
)


def _plain(value: object) -> object:
    """A field as JSON can hold it: numbers, strings, booleans and None as they are, bytes
    decoded, anything else as its text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def twistd_leaves_logging_alone(twistd_options: Mapping | None) -> bool:
    """True when the user chose the observer with twistd's ``--logger`` or ``--syslog``."""
    if not twistd_options:
        return False
    return bool(twistd_options.get("logger") or twistd_options.get("syslog"))


def destination(twistd_options: Mapping | None, settings: LogSettings | None = None) -> IO[str]:
    """Where twistd would write its log: ``sys.stdout`` as it is now (after ``makeService``:
    the input may have pointed it to standard error; before twistd redirects it into the log)
    under ``-n`` or with ``--logfile=-``; else the ``--logfile`` (``twistd.log`` for a daemon),
    opened as twistd opens it (a ``ReopenableLogFile``), rotated as ``settings`` say (twistd's
    1,000,000 bytes and every rotated file kept, by default)."""
    options = twistd_options or {}
    name = options.get("logfile") or ""
    if name == "-" or (not name and (options.get("nodaemon") or not options)):
        return sys.stdout
    settings = settings or LogSettings()
    return ReopenableLogFile.fromFullPath(
        name or "twistd.log",
        rotateLength=settings.rotate_length,
        maxRotatedFiles=settings.max_rotated,
    )


class ReopenableLogFile(LogFile):
    """twistd's log file (the same rotation by size, the same SIGUSR1 rotation while nobody
    moved it, both keeping ``maxRotatedFiles``), which a rotation tool may also move away:
    ``reopen_or_rotate`` then opens a fresh file at the same path (see the module
    docstring)."""

    synchronized = ["reopen_or_rotate"]

    def moved(self) -> bool:
        """Whether the path no longer names the file being written (moved, or replaced)."""
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return True
        return not os.path.samestat(here, os.fstat(self._file.fileno()))

    def reopen_or_rotate(self) -> str:
        """Reopen the path if the file was moved, else rotate it as twistd does. Returns
        ``"reopened"`` or ``"rotated"``; raises ``OSError`` when neither can be done (the lines
        go on to the file written so far)."""
        if not self.moved():
            if not os.access(self.directory, os.W_OK):  # twistd's rotate() would do nothing
                raise PermissionError(errno.EACCES, "cannot write in its directory", self.path)
            self.rotate()
            return "rotated"
        previous, mode = self._file, self.defaultMode
        if os.path.exists(self.path):
            self.defaultMode = None  # a file the tool made (``create MODE``): its mode stays
        try:
            self._openFile()  # on failure, self._file is still the previous file
        finally:
            self.defaultMode = mode
        previous.close()
        return "reopened"


threadable.synchronize(ReopenableLogFile)


def reopen(logfile: ReopenableLogFile) -> None:
    """What SIGUSR1 does (in the reactor thread): the last line of the old file says where
    the log goes on, the first of the new one what happened."""
    log.info("SIGUSR1: the log goes on in a new {path}", path=logfile.path)
    try:
        done = logfile.reopen_or_rotate()
    except OSError as e:
        log.error(
            "SIGUSR1: cannot open {path} ({error}); the log stays in the file it was in",
            path=logfile.path,
            error=e.strerror or str(e),
        )
        return
    if done == "reopened":
        log.info("SIGUSR1: log file {path} reopened", path=logfile.path)
    else:
        log.info("SIGUSR1: log file rotated: the lines before are in {path}.1", path=logfile.path)


def reopen_on_sigusr1(logfile: ReopenableLogFile, reactor=None) -> bool:
    """Have SIGUSR1 reopen (or rotate) ``logfile``, unless SIGUSR1 has a handler already (as
    twistd leaves one it finds) other than ours for an earlier file (the observer given last
    is the one twistd uses). True when the handler was installed."""
    sigusr1 = getattr(signal, "SIGUSR1", None)
    if sigusr1 is None:
        return False
    current = signal.getsignal(sigusr1)
    if current not in (None, signal.SIG_DFL) and getattr(current, "reopens", None) is None:
        return False

    def on_signal(number, frame) -> None:
        nonlocal reactor
        if reactor is None:
            from twisted.internet import reactor
        reactor.callFromThread(reopen, logfile)

    on_signal.reopens = logfile
    signal.signal(sigusr1, on_signal)
    return True


def attach(application, settings: LogSettings, twistd_options: Mapping | None) -> None:
    """Give ``application`` (the object twistd passes to ``setServiceParent``) the observer
    for ``settings``, unless the user chose one with ``--logger`` or ``--syslog``; when it
    writes to a file, SIGUSR1 reopens that file (``reopen_on_sigusr1``)."""
    set_component = getattr(application, "setComponent", None)
    if set_component is None or twistd_leaves_logging_alone(twistd_options):
        return
    stream = destination(twistd_options, settings)
    set_component(ILogObserver, settings.observer(stream))
    if isinstance(stream, ReopenableLogFile):
        reopen_on_sigusr1(stream)


class ProgramLogs:
    """What each program's top service does with its log flags: when twistd makes it a child
    of its application (``setServiceParent``), it gives the application the observer of
    ``--log-level``/``--log-format`` (``attach``). ``WithMetrics`` calls ``attach_logs`` for
    the program it wraps. A service that is not the program itself (``standalone`` false,
    ``log_settings`` None) leaves logging alone."""

    log_settings: LogSettings | None = None
    twistd_options: Mapping | None = None
    standalone = True

    def setServiceParent(self, parent):
        self.attach_logs(parent)
        return super().setServiceParent(parent)

    def attach_logs(self, application) -> None:
        if self.standalone and self.log_settings is not None:
            attach(application, self.log_settings, self.twistd_options)
