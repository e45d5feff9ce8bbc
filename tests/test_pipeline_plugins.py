"""The plugins of a pipeline: Logstash's settings, types, defaults, ``${VAR}`` substitution and
every validation message, each one line naming FILE:LINE:COLUMN, raised before anything binds."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock

from twisted_logstash.pipelines.build import build
from twisted_logstash.pipelines.plugins import check
from twisted_logstash.pipelines.syntax import PipelineError, parse


def checked(text: str, section: str = "input", environ=None):
    (plugin,) = parse(text, "p.conf").plugins(section)
    return check(plugin, section, "p.conf", environ or {})


def check_error(text: str, section: str = "input", environ=None) -> str:
    with pytest.raises(PipelineError) as caught:
        checked(text, section, environ)
    return str(caught.value)


def build_error(text: str, environ=None) -> str:
    with pytest.raises(PipelineError) as caught:
        build(parse(text, "p.conf"), MemoryReactorClock(), environ or {})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_of_the_logstash_input():
    values = checked("input { logstash { } }").values
    assert values["port"] == 9800
    assert values["host"] == "0.0.0.0"
    assert values["ssl_enabled"] is True
    assert values["ssl_client_authentication"] == "none"


def test_types_as_logstash_converts_them():
    c = checked(
        "input { logstash { port => \"9801\" ssl_enabled => 'false' tags => one "
        'add_field => { a => 1 } ssl_certificate_authorities => "ca.crt" } }'
    )
    assert c.values["port"] == 9801
    assert c.values["ssl_enabled"] is False
    assert c.values["tags"] == ["one"]
    assert c.values["add_field"] == {"a": "1"}
    assert c.values["ssl_certificate_authorities"] == ["ca.crt"]
    assert c.given == {"port", "ssl_enabled", "tags", "add_field", "ssl_certificate_authorities"}


def test_variables_from_the_environment():
    text = 'input { logstash { port => "${PORT}" host => "${HOST:127.0.0.1}" tags => ["${T}"] } }'
    values = checked(text, environ={"PORT": "9900", "T": "x"}).values
    assert (values["port"], values["host"], values["tags"]) == (9900, "127.0.0.1", ["x"])


def test_undefined_variable():
    assert check_error('input { logstash {\n  port => "${PORT}" } }') == (
        "p.conf:2:11: Cannot evaluate `${PORT}`. Replacement variable `PORT` is not defined in a "
        "Logstash secret store or an environment entry and there is no default value given."
    )


def test_unknown_plugin():
    assert check_error("input {\n  kafka { } }") == (
        "p.conf:2:3: Couldn't find any input plugin named 'kafka'. Are you sure this is "
        "correct? (supported here: beats, generator, logstash, stdin)"
    )


def test_unknown_output_plugin():
    assert check_error("output { elasticsearch { } }", "output").startswith(
        "p.conf:1:10: Couldn't find any output plugin named 'elasticsearch'."
    )


def test_unknown_setting():
    assert check_error("input { logstash {\n  prot => 1 } }") == (
        "p.conf:2:3: Unknown setting 'prot' for logstash"
    )


def test_setting_logstash_has_but_not_here():
    assert check_error("input { beats { port => 5044 add_hostname => true } }") == (
        "p.conf:1:30: Setting 'add_hostname' of beats is not supported here: deprecated in "
        "Logstash and not supported here"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port => abc", "port: Expected number, got abc"),
        ("port => 1.5", "port: Expected a whole number, got 1.5"),
        ("ssl_enabled => yes", "ssl_enabled: Expected boolean, got yes"),
        ("add_field => [a]", 'add_field: Expected hash, got array ["a"]'),
        ("host => [a, b]", 'host: Expected string, got array ["a", "b"]'),
        (
            "ssl_client_authentication => maybe",
            ("ssl_client_authentication: Expected one of none, optional, required, got maybe"),
        ),
    ],
)
def test_wrong_types(text, message):
    column = 20 + text.index("=>") + 3
    assert check_error(f"input {{ logstash {{ {text} }} }}") == (
        f"p.conf:1:{column}: Invalid setting for logstash input plugin: {message}"
    )


def test_missing_required_setting():
    assert check_error("input {\n beats { } }") == (
        "p.conf:2:2: Missing a required setting for the beats input plugin: port"
    )
    assert check_error("output { lumberjack { hosts => x port => 1 } }", "output") == (
        "p.conf:1:10: Missing a required setting for the lumberjack output plugin: ssl_certificate"
    )


def test_codec_choices():
    assert checked("input { stdin { codec => json_lines } }").values["codec"] == "json_lines"
    assert checked("input { stdin { codec => line {} } }").values["codec"] == "line"
    assert check_error("output { stdout { codec => rubydebug } }", "output") == (
        "p.conf:1:28: Invalid setting for stdout output plugin: codec: codec 'rubydebug' is not "
        "supported here; use json_lines"
    )
    assert "takes no settings" in check_error(
        'input { stdin { codec => json_lines { charset => "x" } } }'
    )


def test_a_combination_logstash_refuses_names_the_setting(certs):
    text = f"""input {{ logstash {{
  ssl_enabled => true
  ssl_certificate => "{certs}/server.crt"
}} }}
output {{ stdout {{ }} }}"""
    assert build_error(text) == (
        "p.conf:3:3: logstash input: `ssl_key` is required when `ssl_certificate` is given"
    )


def test_ssl_settings_with_ssl_disabled():
    text = """input { logstash {
  ssl_enabled => false
  ssl_client_authentication => required
} }
output { stdout { } }"""
    assert build_error(text) == (
        "p.conf:2:3: logstash input: TLS is off (`ssl_enabled` is false): "
        "`ssl_client_authentication` cannot be used; give `ssl_enabled => true` or leave it out"
    )


def test_credentials_rules():
    text = 'input { logstash { ssl_enabled => false username => "u" } } output { stdout { } }'
    assert build_error(text) == (
        "p.conf:1:41: logstash input: `password` is required when `username` is given"
    )


def test_the_output_checks_too(certs):
    text = f"""input {{ generator {{ count => 1 }} }}
output {{
  logstash {{
    hosts => ["127.0.0.1"]
    ssl_verification_mode => none
    ssl_certificate_authorities => "{certs}/ca.crt"
  }}
}}"""
    assert build_error(text) == (
        "p.conf:6:5: logstash output: `ssl_certificate_authorities` is not used with "
        "`ssl_verification_mode => none` (nothing is verified)"
    )


def test_an_unreadable_certificate(tmp_path):
    text = f"""input {{ beats {{ port => 5044 ssl_enabled => true
  ssl_certificate => "{tmp_path}/missing.crt" ssl_key => "{tmp_path}/missing.key" }} }}
output {{ stdout {{ }} }}"""
    message = build_error(text)
    assert message.startswith("p.conf:2:3: beats input: `ssl_certificate` ")
    assert message.endswith("missing.crt: cannot be read (no such file)")


def test_program_messages_name_settings_not_flags():
    text = "input { logstash { port => 70000 ssl_enabled => false } } output { stdout { } }"
    assert (
        build_error(text)
        == "p.conf:1:20: logstash input: `port` must be from 0 to 65535, not 70000"
    )


def test_queue_settings_of_the_outputs(tmp_path):
    text = f"""input {{ generator {{ count => 1 }} }}
output {{ logstash {{ hosts => "127.0.0.1" ssl_enabled => false
  queue => "memory" queue_sync => full dead_letter => "{tmp_path}/dl.ndjson" }} }}"""
    assert build_error(text) == (
        "p.conf:3:21: logstash output: `queue_sync` applies to `queue` disk:DIR only"
    )


def test_a_pipeline_needs_inputs_and_outputs():
    assert build_error("input { generator { } }") == (
        "p.conf:1:1: a pipeline needs at least one output"
    )
    assert build_error("output { stdout { } }") == "p.conf:1:1: a pipeline needs at least one input"


def test_file_path_with_field_references(tmp_path):
    text = 'input { generator { } } output { file { path => "/tmp/%{type}.log" } }'
    assert build_error(text) == (
        "p.conf:1:41: file output: a path with %{field} references is not supported here"
    )


def test_negative_generator_count():
    text = "input { generator { count => -1 } } output { stdout { } }"
    assert build_error(text) == "p.conf:1:21: generator input: count must not be negative"


def test_a_password_of_the_wrong_type_is_not_shown():
    message = check_error('input { logstash { password => ["hunter2", "x"] } }')
    assert message == (
        "p.conf:1:32: Invalid setting for logstash input plugin: password: Expected string, "
        "got array"
    )


def test_the_lumberjack_certificate_to_trust_is_named_as_written(tmp_path):
    text = f"""input {{ generator {{ }} }}
output {{ lumberjack {{ hosts => x port => 5044
  ssl_certificate => "{tmp_path}/missing.crt" }} }}"""
    message = build_error(text)
    assert message.startswith("p.conf:3:3: lumberjack output: `ssl_certificate` ")
