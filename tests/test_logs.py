"""The programs' log (twisted_logstash/logs.py): levels, Twisted's chatter, JSON lines, and the
observer a program gives twistd's application."""

import io
import json

import pytest
from twisted.application import service
from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.logs import LogSettings, attach, json_line, level_of


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


def test_attach_gives_the_application_an_observer_unless_twistd_was_told_one(tmp_path):
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
