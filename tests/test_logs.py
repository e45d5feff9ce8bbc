"""The programs' log (twisted_logstash/logs.py): levels, Twisted's chatter, JSON lines, and the
observer a program gives twistd's application."""

import io
import json
import os
import signal
import stat
import sys
import threading
from unittest.mock import patch

import pytest
from twisted.application import service
from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure

from twisted_logstash import logs
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.logs import LogSettings, ReopenableLogFile, attach, json_line, level_of


def emitted(settings: LogSettings, emit) -> str:
    stream = io.StringIO()
    publisher = LogPublisher(settings.observer(stream))
    emit(Logger(namespace="twisted_logstash.test", observer=publisher))
    return stream.getvalue()


def every_level(log: Logger) -> None:
    log.debug("a debug line")
    log.info("an info line")
    log.warn("a warn line")
    log.error("an error line")


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", ["debug", "info", "warn", "error"]),
        ("info", ["info", "warn", "error"]),
        ("WARN", ["warn", "error"]),
        ("warning", ["warn", "error"]),
        ("error", ["error"]),
    ],
)
def test_log_level_hides_what_is_below_it(level, shown):
    text = emitted(LogSettings.from_flags(level, None), every_level)
    assert [line.split(" ")[-2] for line in text.splitlines()] == shown
    assert all(f"[twisted_logstash.test#{name}]" in text for name in shown)


@pytest.mark.parametrize(
    "text",
    [
        "LumberjackInputFactory starting on 5044",
        "Starting factory <twisted.web.client._HTTP11ClientFactory object at 0x7f>",
        "Stopping factory <OneShotFactory at 0x7f>",
        "Main loop terminated.",
        "reactor class: twisted.internet.epollreactor.EPollReactor.",
    ],
)
def test_twisteds_chatter_is_debug(text):
    legacy = {"log_level": LogLevel.info, "log_namespace": "log_legacy", "message": (text,)}
    assert level_of(legacy) is LogLevel.debug
    new = {"log_level": LogLevel.info, "log_namespace": "twisted.x", "log_format": text}
    assert level_of(new) is LogLevel.debug
    ours = {"log_level": LogLevel.info, "log_namespace": "twisted_logstash.x", "log_format": text}
    assert level_of(ours) is LogLevel.info


def test_other_twisted_lines_keep_their_level():
    event = {
        "log_level": LogLevel.info,
        "log_namespace": "log_legacy",
        "message": ("(TCP Port 5 Closed)",),
    }
    assert level_of(event) is LogLevel.info
    warn = {"log_level": LogLevel.warn, "log_namespace": "t", "log_format": "Starting factory x"}
    assert level_of(warn) is LogLevel.warn


def test_json_lines_carry_time_level_logger_message_and_fields():
    text = emitted(
        LogSettings.from_flags("info", "json"),
        lambda log: log.info("sent {count} to {host}", count=3, host=b"h:1", where=object()),
    )
    (line,) = text.splitlines()
    record = json.loads(line)
    assert record["log.level"] == "info"
    assert record["log.logger"] == "twisted_logstash.test"
    assert record["message"] == "sent 3 to b'h:1'"
    assert record["fields"]["count"] == 3
    assert record["fields"]["host"] == "h:1"
    assert isinstance(record["fields"]["where"], str)
    assert record["@timestamp"].endswith("Z") and "T" in record["@timestamp"]


def test_a_failure_is_one_json_line_with_its_traceback():
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        failure = Failure()
    event = {
        "log_level": LogLevel.critical,
        "log_namespace": "n",
        "log_format": "it broke",
        "log_failure": failure,
        "log_time": 0.5,
    }
    line = json_line(event)
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert record["@timestamp"] == "1970-01-01T00:00:00.500Z"
    assert "ZeroDivisionError" in record["error.stack_trace"]
    assert record["message"] == "it broke"


@pytest.mark.parametrize(
    ("level", "format", "message"),
    [
        ("loud", None, "--log-level takes debug, info, warn or error, not 'loud'"),
        (None, "xml", "--log-format takes text or json, not 'xml'"),
    ],
)
def test_bad_values_name_the_flag(level, format, message):
    with pytest.raises(ConfigurationError) as caught:
        LogSettings.from_flags(level, format)
    assert str(caught.value) == message


def test_attach_gives_the_application_an_observer_unless_twistd_was_told_one(tmp_path, sigusr1):
    settings = LogSettings()
    application = service.Application("test")
    attach(application, settings, {"nodaemon": True, "logfile": None})
    assert application.getComponent(ILogObserver) is not None

    for chosen in ({"logger": lambda: print}, {"syslog": True}):
        application = service.Application("test")
        attach(application, settings, {"nodaemon": True, **chosen})
        assert application.getComponent(ILogObserver, None) is None

    application = service.Application("test")
    path = tmp_path / "program.log"
    attach(application, LogSettings.from_flags("warn", None), {"logfile": str(path)})
    observer = application.getComponent(ILogObserver)
    log = Logger(namespace="n", observer=observer)
    log.info("hidden")
    log.warn("shown")
    assert "shown" in path.read_text() and "hidden" not in path.read_text()


# -- --logfile and SIGUSR1 (docs/operations.md, "Log files and rotation") -------------------


@pytest.fixture
def sigusr1():
    """SIGUSR1's handler as it was before the test, put back after it."""
    before = signal.getsignal(signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGUSR1, before)


def test_a_moved_file_is_reopened_at_its_path_with_nothing_lost(tmp_path):
    path = tmp_path / "program.log"
    logfile = ReopenableLogFile.fromFullPath(str(path))
    logfile.write("one\n")
    os.rename(path, tmp_path / "program.log.1")
    assert logfile.moved()
    logfile.write("two\n")  # a line between the move and the signal: still in the moved file
    assert logfile.reopen_or_rotate() == "reopened"
    logfile.write("three\n")
    assert (tmp_path / "program.log.1").read_text() == "one\ntwo\n"
    assert path.read_text() == "three\n"
    assert not logfile.moved()


def test_a_file_made_by_the_tool_is_written_on_and_keeps_its_mode(tmp_path):
    path = tmp_path / "program.log"
    path.write_text("")
    os.chmod(path, 0o644)
    logfile = ReopenableLogFile.fromFullPath(str(path))
    logfile.write("one\n")
    os.rename(path, tmp_path / "program.log.1")
    path.write_text("")  # logrotate's ``create 0600``
    os.chmod(path, 0o600)
    assert logfile.moved()
    assert logfile.reopen_or_rotate() == "reopened"
    logfile.write("two\n")
    assert path.read_text() == "two\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_file_nobody_moved_is_rotated_as_twistd_does(tmp_path):
    path = tmp_path / "program.log"
    logfile = ReopenableLogFile.fromFullPath(str(path))
    logfile.write("one\n")
    assert not logfile.moved()
    assert logfile.reopen_or_rotate() == "rotated"
    logfile.write("two\n")
    assert (tmp_path / "program.log.1").read_text() == "one\n"
    assert path.read_text() == "two\n"


def test_a_path_that_cannot_be_opened_leaves_the_log_in_the_moved_file(tmp_path):
    directory = tmp_path / "logs"
    directory.mkdir()
    logfile = ReopenableLogFile.fromFullPath(str(directory / "program.log"))
    os.rename(directory, tmp_path / "moved")
    with pytest.raises(OSError):
        logfile.reopen_or_rotate()
    logfile.write("still here\n")
    assert (tmp_path / "moved" / "program.log").read_text() == "still here\n"


def test_lines_written_by_another_thread_during_the_reopen_are_all_kept_in_order(tmp_path):
    path = tmp_path / "program.log"
    logfile = ReopenableLogFile.fromFullPath(str(path))
    written = threading.Event()
    lines = 20000

    def write():
        for n in range(lines):
            logfile.write(f"{n}\n")
            if n == lines // 10:
                written.set()

    writer = threading.Thread(target=write)
    writer.start()
    written.wait(30)
    os.rename(path, tmp_path / "program.log.1")
    logfile.reopen_or_rotate()
    writer.join(30)
    both = (tmp_path / "program.log.1").read_text() + path.read_text()
    assert both.split() == [str(n) for n in range(lines)]


class CallsFromThread:
    """The part of a reactor a signal handler uses: what it was asked to call, to run later."""

    def __init__(self):
        self.calls = []

    def callFromThread(self, f, *args):
        self.calls.append((f, args))

    def run(self):
        calls, self.calls = self.calls, []
        for f, args in calls:
            f(*args)


def test_sigusr1_reopens_the_file_in_the_reactor_thread_saying_so_in_both_files(tmp_path, sigusr1):
    path = tmp_path / "program.log"
    logfile = ReopenableLogFile.fromFullPath(str(path))
    publisher = LogPublisher(LogSettings().observer(logfile))
    reactor = CallsFromThread()
    assert logs.reopen_on_sigusr1(logfile, reactor)
    with patch.object(logs, "log", Logger(namespace="twisted_logstash.logs", observer=publisher)):
        Logger(observer=publisher).info("before")
        os.rename(path, tmp_path / "program.log.1")
        signal.raise_signal(signal.SIGUSR1)
        assert not path.exists()  # nothing done in the handler itself
        reactor.run()
        Logger(observer=publisher).info("after")
    moved = (tmp_path / "program.log.1").read_text().splitlines()
    fresh = path.read_text().splitlines()
    assert "before" in moved[-2] and f"SIGUSR1: the log goes on in a new {path}" in moved[-1]
    assert f"SIGUSR1: log file {path} reopened" in fresh[0] and "after" in fresh[1]


def test_attach_has_sigusr1_reopen_a_file_but_not_standard_output(tmp_path, sigusr1):
    attach(service.Application("test"), LogSettings(), {"nodaemon": True, "logfile": "-"})
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    attach(service.Application("test"), LogSettings(), {"logfile": str(tmp_path / "a.log")})
    assert callable(signal.getsignal(signal.SIGUSR1))


def test_a_handler_of_sigusr1_already_there_is_left_alone(tmp_path, sigusr1):
    def mine(number, frame):
        pass

    signal.signal(signal.SIGUSR1, mine)
    logfile = ReopenableLogFile.fromFullPath(str(tmp_path / "program.log"))
    assert not logs.reopen_on_sigusr1(logfile)
    assert signal.getsignal(signal.SIGUSR1) is mine


def test_the_file_given_last_is_the_one_sigusr1_reopens(tmp_path, sigusr1):
    first = ReopenableLogFile.fromFullPath(str(tmp_path / "first.log"))
    last = ReopenableLogFile.fromFullPath(str(tmp_path / "last.log"))
    assert logs.reopen_on_sigusr1(first) and logs.reopen_on_sigusr1(last)
    assert signal.getsignal(signal.SIGUSR1).reopens is last


# -- --log-rotate-length and --log-max-rotated (docs/operations.md) ---------------------------


def test_the_rotation_defaults_are_twistds():
    settings = LogSettings.from_flags(None, None)
    assert settings.rotate_length == 1_000_000
    assert settings.max_rotated is None
    assert settings == LogSettings()


@pytest.mark.parametrize(
    ("length", "bytes_"),
    [("2000", 2000), ("10mb", 10 << 20), ("64KB", 64 << 10), (" 1gb ", 1 << 30), ("0", 0)],
)
def test_the_rotate_length_reads_sizes_as_the_other_byte_flags(length, bytes_):
    assert LogSettings.from_flags(None, None, rotate_length=length).rotate_length == bytes_


def test_max_rotated_is_a_count():
    assert LogSettings.from_flags(None, None, max_rotated="5").max_rotated == 5
    assert LogSettings.from_flags(None, None, max_rotated=" 1 ").max_rotated == 1


@pytest.mark.parametrize(
    ("length", "rotated", "message"),
    [
        (
            "-1",
            None,
            "--log-rotate-length takes a size such as 10mb or 1048576, or 0 (never rotate by"
            " size), not '-1'",
        ),
        (
            "big",
            None,
            "--log-rotate-length takes a size such as 10mb or 1048576, or 0 (never rotate by"
            " size), not 'big'",
        ),
        (
            "",
            None,
            "--log-rotate-length takes a size such as 10mb or 1048576, or 0 (never rotate by"
            " size), not ''",
        ),
        (None, "0", "--log-max-rotated takes a number of files, at least 1, not '0'"),
        (None, "-3", "--log-max-rotated takes a number of files, at least 1, not '-3'"),
        (None, "all", "--log-max-rotated takes a number of files, at least 1, not 'all'"),
        (None, "2.5", "--log-max-rotated takes a number of files, at least 1, not '2.5'"),
    ],
)
def test_bad_rotation_values_name_the_flag(length, rotated, message):
    with pytest.raises(ConfigurationError) as caught:
        LogSettings.from_flags(None, None, rotate_length=length, max_rotated=rotated)
    assert str(caught.value) == message


def test_the_log_file_is_built_with_the_rotation_settings(tmp_path):
    settings = LogSettings.from_flags(None, None, rotate_length="2000", max_rotated="3")
    logfile = logs.destination({"logfile": str(tmp_path / "program.log")}, settings)
    assert isinstance(logfile, ReopenableLogFile)
    assert (logfile.rotateLength, logfile.maxRotatedFiles) == (2000, 3)
    default = logs.destination({"logfile": str(tmp_path / "other.log")})
    assert (default.rotateLength, default.maxRotatedFiles) == (1_000_000, None)


def test_attach_writes_through_a_file_with_the_rotation_settings(tmp_path, sigusr1):
    path = tmp_path / "program.log"
    application = service.Application("test")
    settings = LogSettings.from_flags(None, None, rotate_length="200", max_rotated="1")
    attach(application, settings, {"logfile": str(path)})
    log = Logger(namespace="n", observer=application.getComponent(ILogObserver))
    for n in range(20):
        log.info("line {n} of a log that outgrows 200 bytes", n=n)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["program.log", "program.log.1"]
    assert "line 19 " in path.read_text()


def rotated_names(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


def test_rotation_by_size_keeps_at_most_max_rotated_files(tmp_path):
    path = tmp_path / "program.log"
    settings = LogSettings.from_flags(None, None, rotate_length="100", max_rotated="2")
    logfile = logs.destination({"logfile": str(path)}, settings)
    for n in range(100):  # 100 lines of 10 bytes: about ten rotations
        logfile.write(f"line {n:04d}\n")
    logfile.close()
    assert rotated_names(tmp_path) == ["program.log", "program.log.1", "program.log.2"]
    # the newest lines are kept, in order, the oldest removed
    kept = "".join((tmp_path / name).read_text() for name in ("program.log.2", "program.log.1"))
    kept += path.read_text()
    numbers = [int(line.split()[1]) for line in kept.splitlines()]
    assert numbers == list(range(numbers[0], 100)) and numbers[0] > 0


def test_length_0_never_rotates_by_size(tmp_path):
    path = tmp_path / "program.log"
    logfile = logs.destination(
        {"logfile": str(path)}, LogSettings.from_flags(None, None, rotate_length="0")
    )
    line = "x" * 99 + "\n"
    for _ in range(12_000):  # 1.2 MB, past twistd's 1 MB
        logfile.write(line)
    logfile.close()
    assert rotated_names(tmp_path) == ["program.log"]
    assert path.stat().st_size == 1_200_000


def test_sigusr1s_rotation_keeps_at_most_max_rotated_files_too(tmp_path):
    path = tmp_path / "program.log"
    settings = LogSettings.from_flags(None, None, rotate_length="0", max_rotated="2")
    logfile = logs.destination({"logfile": str(path)}, settings)
    for n in range(5):
        logfile.write(f"before rotation {n}\n")
        assert logfile.reopen_or_rotate() == "rotated"
    logfile.write("after\n")
    assert rotated_names(tmp_path) == ["program.log", "program.log.1", "program.log.2"]
    assert (tmp_path / "program.log.2").read_text() == "before rotation 3\n"
    assert (tmp_path / "program.log.1").read_text() == "before rotation 4\n"
    assert path.read_text() == "after\n"


def test_the_rotation_flags_are_ignored_without_a_log_file(tmp_path):
    settings = LogSettings.from_flags(None, None, rotate_length="100", max_rotated="1")
    assert logs.destination({"nodaemon": True}, settings) is sys.stdout
    assert logs.destination({"nodaemon": True, "logfile": "-"}, settings) is sys.stdout


def program_log_settings(name: str, *argv: str) -> LogSettings:
    """The ``LogSettings`` the program ``name`` makes of ``argv`` (its own flags)."""
    if name == "logstash-pipeline":
        from twisted_logstash.tap import pipeline

        options = pipeline.Options()
        options.parseOptions(["-e", "input { stdin { } }", *argv])
        return pipeline.log_settings(options)
    if name == "logstash-input":
        from twisted_logstash.tap import input as program

        options = program.Options()
        options.parseOptions([*argv])
        return program.settings_from(options, environ={})[0]["logs"]
    from twisted_logstash.tap import output as program

    options = program.Options()
    options.parseOptions(["--hosts", "h", *argv])
    return program.settings_from(options, environ={})[0]["logs"]


PROGRAMS = ["logstash-input", "logstash-output", "logstash-pipeline"]


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_program_takes_the_rotation_flags(name):
    settings = program_log_settings(
        name, "--log-rotate-length", "10mb", "--log-max-rotated", "5", "--log-level", "warn"
    )
    assert (settings.rotate_length, settings.max_rotated) == (10 << 20, 5)
    assert settings.level is LogLevel.warn
    default = program_log_settings(name)
    assert (default.rotate_length, default.max_rotated) == (1_000_000, None)


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_program_refuses_a_wrong_rotation_value_naming_the_flag(name):
    with pytest.raises(ConfigurationError, match=r"^--log-max-rotated takes a number"):
        program_log_settings(name, "--log-max-rotated", "0")
    with pytest.raises(ConfigurationError, match=r"^--log-rotate-length takes a size"):
        program_log_settings(name, "--log-rotate-length", "-5")
