"""Issue 11: an empty password is refused however it is given, with one wording.

An empty ``--password-file`` and an empty ``LOGSTASH_PASSWORD`` were already refused; ``--password
''`` (and the library's ``password=''``) was taken, and a receiver then accepted any client
sending the username with an empty password.
"""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock

from twisted_logstash import config, services
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.tap import input as input_program
from twisted_logstash.tap import output as output_program

EMPTY = "`password` cannot be empty"
WITHOUT_USERNAME = "`password` is not allowed without `username`"


def _program(module, *argv):
    options = module.Options()
    options.parseOptions(list(argv))
    settings, explicit, _ = module.settings_from(options, environ={})
    return module.build(settings, explicit, MemoryReactorClock())


@pytest.mark.parametrize("username", [["--username", "u"], []])
def test_the_input_program_refuses_an_empty_password_flag(username):
    argv = ["--ssl-enabled", "false", "--sink", "null", *username, "--password", ""]
    with pytest.raises(ConfigurationError) as raised:
        _program(input_program, *argv)
    assert str(raised.value) == (EMPTY if username else WITHOUT_USERNAME)


@pytest.mark.parametrize("username", [["--username", "u"], []])
def test_the_output_program_refuses_an_empty_password_flag(username):
    argv = ["--hosts", "127.0.0.1:9800", "--ssl-enabled", "false", *username, "--password", ""]
    with pytest.raises(ConfigurationError) as raised:
        _program(output_program, *argv)
    assert str(raised.value) == (EMPTY if username else WITHOUT_USERNAME)


@pytest.mark.parametrize("username", [{"username": "u"}, {}])
def test_the_library_refuses_an_empty_password(username):
    with pytest.raises(ConfigurationError) as raised:
        services.logstash_input(
            "http", "null", reactor=MemoryReactorClock(), ssl_enabled=False, password="", **username
        )
    assert str(raised.value) == (EMPTY if username else WITHOUT_USERNAME)
    with pytest.raises(ConfigurationError) as raised:
        services.logstash_output(
            "127.0.0.1:9800",
            reactor=MemoryReactorClock(),
            ssl_enabled=False,
            password="",
            **username,
        )
    assert str(raised.value) == (EMPTY if username else WITHOUT_USERNAME)


def test_the_settings_rule_itself():
    with pytest.raises(ConfigurationError, match=EMPTY):
        config.check_credentials({"username": "u", "password": "", "ssl_enabled": False}, "w")
