"""The pipeline parser (``pipelines/syntax.py``): every element of Logstash's syntax it reads, and
every error, each as one line naming FILE:LINE:COLUMN."""

from __future__ import annotations

import pytest

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.pipelines.syntax import FILTERS_OUT_OF_SCOPE, PipelineError, parse


def settings(text: str, section: str = "input") -> dict:
    (plugin,) = parse(text, "t.conf").plugins(section)
    return {setting.name: setting.value.plain() for setting in plugin.settings}


def error(text: str) -> str:
    with pytest.raises(PipelineError) as caught:
        parse(text, "t.conf")
    assert isinstance(caught.value, ConfigurationError)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_seed_downstream_block():
    config = parse("input {\n    logstash {\n        port => 9800\n    }\n}\n", "down.conf")
    (section,) = config.sections
    assert (section.kind, section.line, section.column) == ("input", 1, 1)
    (plugin,) = section.plugins
    assert (plugin.name, plugin.line, plugin.column) == ("logstash", 2, 5)
    (setting,) = plugin.settings
    assert (setting.name, setting.line, setting.column) == ("port", 3, 9)
    assert (setting.value.kind, setting.value.value) == ("number", 9800)
    assert (setting.value.line, setting.value.column) == (3, 17)


def test_comments_anywhere():
    text = """# a pipeline
input { # inputs
  generator { # the plugin
    count => 3 # three
    # message => "not this"
  }
}
"""
    assert settings(text) == {"count": 3}


def test_strings_in_both_quotes_with_escapes():
    text = r"""input { x {
  a => "double \"quoted\" \\ \n\t"
  b => 'single \'quoted\''
  c => "keeps \d as written"
  d => "over
two lines"
} }"""
    assert settings(text) == {
        "a": 'double "quoted" \\ \n\t',
        "b": "single 'quoted'",
        "c": "keeps \\d as written",
        "d": "over\ntwo lines",
    }


def test_numbers_booleans_barewords():
    text = "input { x { a => 9800 b => -1.5 c => true d => false e => required f => json_lines } }"
    values = parse(text).plugins("input")[0].settings
    kinds = {s.name: (s.value.kind, s.value.value) for s in values}
    assert kinds == {
        "a": ("number", 9800),
        "b": ("number", -1.5),
        "c": ("boolean", True),
        "d": ("boolean", False),
        "e": ("bareword", "required"),
        "f": ("bareword", "json_lines"),
    }


def test_arrays_and_hashes():
    text = """input { x {
  hosts => ["10.0.0.123", '10.0.1.123:9800', bare, 5]
  empty => []
  nested => [[1], {a => 1}]
  add_field => { "x" => "1" y => 2 3 => "three" "[a][b]" => [1, 2] }
} }"""
    assert settings(text) == {
        "hosts": ["10.0.0.123", "10.0.1.123:9800", "bare", 5],
        "empty": [],
        "nested": [[1], {"a": 1}],
        "add_field": {"x": "1", "y": 2, 3: "three", "[a][b]": [1, 2]},
    }


def test_several_plugins_and_sections():
    text = """input { generator { count => 1 } stdin { } }
output { stdout { } file { path => "/tmp/x" } }
output { stdout { codec => json_lines } }"""
    config = parse(text)
    assert [p.name for p in config.plugins("input")] == ["generator", "stdin"]
    assert [p.name for p in config.plugins("output")] == ["stdout", "file", "stdout"]


def test_plugin_as_a_value_and_quoted_names():
    text = """input { "stdin" { codec => json_lines { } "type" => "t" } }"""
    (plugin,) = parse(text).plugins("input")
    assert plugin.name == "stdin"
    codec = plugin.setting("codec").value
    assert (codec.kind, codec.value.name, codec.value.settings) == ("plugin", "json_lines", ())
    assert plugin.setting("type").value.value == "t"


def test_variable_references_are_kept_for_the_plugins():
    assert settings('input { x { port => "${PORT:9800}" } }') == {"port": "${PORT:9800}"}


def test_empty_pipeline():
    assert parse("# nothing\n").sections == ()


def test_unexpected_token():
    assert error("input { x { a => } }") == (
        't.conf:1:18: syntax error: unexpected \'}\' (expected "[" or "{" or a name or a number '
        "or a string)"
    )


def test_missing_arrow():
    assert error("input {\n  x {\n    a 1\n  }\n}") == (
        "t.conf:3:7: syntax error: unexpected '1' (expected \"=>\")"
    )


def test_unexpected_character():
    assert error("input {\n  x { a => $ } }") == "t.conf:2:12: syntax error: unexpected '$'"


def test_unexpected_end():
    assert error("input { x { a => 1 }") == (
        't.conf:1:20: syntax error: unexpected end (expected "}" or a name or a string)'
    )


def test_unterminated_string():
    assert error('input { x { a => "open } }').startswith("t.conf:1:18: syntax error: unexpected")


def test_not_a_value():
    assert error("input { x { a => 10-x } }").startswith("t.conf:1:")


def test_duplicate_setting():
    assert error("input { x {\n a => 1\n a => 2 } }") == (
        "t.conf:3:2: duplicate setting 'a' for x (first given at line 2, column 2)"
    )


def test_duplicate_hash_key():
    assert error('input { x { a => { "k" => 1 "k" => 2 } } }') == (
        "t.conf:1:29: duplicate key 'k' in hash"
    )


def test_filter_section_is_out_of_scope():
    assert error("input { stdin {} }\nfilter { mutate { } }") == (
        f"t.conf:2:1: {FILTERS_OUT_OF_SCOPE}"
    )


def test_filter_with_conditionals_is_out_of_scope_too():
    text = "input { stdin {} }\n  filter {\n if [type] =~ /x/ { drop {} } }\noutput { stdout {} }"
    assert error(text) == f"t.conf:2:3: {FILTERS_OUT_OF_SCOPE}"


def test_unknown_section():
    assert error("input { }\nnonsense { }") == (
        "t.conf:2:1: unknown section 'nonsense': a pipeline has input and output sections"
    )
