"""The input program's flags reach the factory they configure (in process, nothing bound)."""

import pytest
from twisted.internet.testing import MemoryReactorClock

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.tap.input import Options, build, settings_from


def built(*argv):
    options = Options()
    options.parseOptions(["--ssl-enabled", "false", "--sink", "null", *argv])
    settings, explicit, _ = settings_from(options, environ={})
    service, _ = build(settings, explicit, MemoryReactorClock())
    return service.factory


def test_connection_cap_and_timeouts_reach_the_native_factory():
    factory = built(
        "--max-connections=7",
        "--header-timeout=3",
        "--body-timeout=4",
        "--idle-timeout=5",
    )
    assert factory.max_connections == 7
    assert (factory.header_timeout, factory.body_timeout, factory.idle_timeout) == (3, 4, 5)


def test_the_connection_cap_reaches_the_framed_factory_too():
    factory = built("--protocol=lumberjack", "--max-connections=7")
    assert factory.max_connections == 7
    assert built("--protocol=lumberjack").max_connections == 1000


def test_defaults_match_the_documented_ones():
    factory = built()
    assert factory.max_connections == 1000
    assert (factory.header_timeout, factory.body_timeout, factory.idle_timeout) == (30, 60, 60)


@pytest.mark.parametrize("flag", ["--max-content-length=2", "--idle-timeout=9"])
def test_native_only_flags_are_refused_on_the_framed_wire(flag):
    options = Options()
    options.parseOptions(["--protocol", "lumberjack", flag])
    with pytest.raises(ConfigurationError, match="lumberjack"):
        settings_from(options, environ={})


def test_the_budget_and_the_sink_timeout_reach_the_native_factory():
    factory = built("--max-held-bytes=1048576", "--sink-timeout=3")
    assert factory.max_held_bytes == 1048576 and factory.settings.sink_timeout == 3
    assert factory.timeouts["waiting"] == 3
    default = built()
    assert default.max_held_bytes == 256 * 1024 * 1024 and default.settings.sink_timeout == 10


def test_the_budget_reaches_the_framed_factory_too():
    assert built("--protocol=lumberjack", "--max-held-bytes=1048576").max_held_bytes == 1048576
    assert built("--protocol=lumberjack").max_held_bytes == 256 * 1024 * 1024


def test_the_sink_timeout_is_refused_on_the_framed_wire():
    options = Options()
    options.parseOptions(["--protocol", "lumberjack", "--sink-timeout=3"])
    with pytest.raises(ConfigurationError, match="lumberjack"):
        settings_from(options, environ={})


def test_the_byte_budget_reaches_the_framed_factory():
    assert built("--protocol=lumberjack", "--max-held-bytes=1048576").max_held_bytes == 1048576
