"""The `hosts` setting, in every spelling Logstash accepts, and the ones it refuses."""

import pytest

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.transport.hosts import Host, parse_hosts


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("10.0.0.1", Host("10.0.0.1", 9800)),
        ("10.0.0.1:9801", Host("10.0.0.1", 9801)),
        ("logstash.example.com", Host("logstash.example.com", 9800)),
        ("logstash-1:1", Host("logstash-1", 1)),
        ("localhost:65535", Host("localhost", 65535)),
        ("[::1]", Host("::1", 9800)),
        ("[2001:db8::7]:5044", Host("2001:db8::7", 5044)),
        ("  spaced:80 ", Host("spaced", 80)),
    ],
)
def test_single_entry(spec, expected):
    assert parse_hosts([spec]) == [expected]


def test_comma_lists_and_repeated_specs_keep_order():
    hosts = parse_hosts(["a,b:1", "[::1]:2"])
    assert hosts == [Host("a", 9800), Host("b", 1), Host("::1", 2)]


def test_a_plain_string_is_one_spec():
    assert parse_hosts("a, b") == [Host("a", 9800), Host("b", 9800)]


def test_default_port_is_used_for_entries_without_one():
    assert parse_hosts(["a", "b:7"], default_port=5044) == [Host("a", 5044), Host("b", 7)]


def test_str_brackets_ipv6():
    assert str(Host("::1", 9800)) == "[::1]:9800"
    assert str(Host("10.0.0.1", 9800)) == "10.0.0.1:9800"
    assert str(Host("example.com", 1)) == "example.com:1"


@pytest.mark.parametrize(
    ("specs", "named"),
    [
        ([], "at least one host"),
        (["a,,b"], "empty entry"),
        ([""], "empty entry"),
        (["::1"], "'::1'"),
        (["2001:db8::7:9800"], "brackets"),
        (["a:0"], "'a:0'"),
        (["a:65536"], "'a:65536'"),
        (["a:http"], "'a:http'"),
        (["a:"], "'a:'"),
        (["a:-1"], "'a:-1'"),
        (["[::1"], "missing ']'"),
        (["[nothost]:1"], "'nothost' is not a valid IPv6"),
        (["[::1]9800"], "unexpected"),
        (["bad host"], "'bad host'"),
        (["a/b"], "'a/b'"),
    ],
)
def test_bad_entries_are_configuration_errors_naming_the_entry(specs, named):
    with pytest.raises(ConfigurationError) as info:
        parse_hosts(specs)
    assert named in str(info.value)
