"""Messages that help and the command line, in process: one wording per rule rendered as flags
(the programs) or settings (pipelines, the library); the grouped ``--help``, ``--version``, the
nearest flag for a typo, a URL in ``--hosts``, the docs' flag tables, and what the framed wire
compresses with. The real programs are in test_cli_programs.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from twisted_logstash import config, services
from twisted_logstash.errors import FLAG, SETTING, ConfigurationError, Message, render
from twisted_logstash.tap import help as help_
from twisted_logstash.tap import input as input_program
from twisted_logstash.tap import output as output_program
from twisted_logstash.tap import pipeline as pipeline_program
from twisted_logstash.tap.common import suggestion, version
from twisted_logstash.transport.hosts import parse_hosts

DOCS = Path(__file__).resolve().parent.parent / "docs"

# -- rendering -----------------------------------------------------------------------------


def test_a_message_names_its_settings_as_flags_or_as_settings():
    message = Message("{ssl_key} is required when {ssl_certificate} is given")
    assert message.settings == ("ssl_key", "ssl_certificate")
    assert message.render(FLAG) == "--ssl-key is required when --ssl-certificate is given"
    assert message.render(SETTING) == "`ssl_key` is required when `ssl_certificate` is given"
    assert message == message.render(SETTING)  # a str: the setting words


def test_a_setting_with_a_value():
    message = Message("give {ssl_enabled:false} or {sink:file:PATH}")
    assert message.render(FLAG) == "give --ssl-enabled false or --sink file:PATH"
    assert message.render(SETTING) == "give `ssl_enabled => false` or `sink => file:PATH`"


def test_values_are_never_read_as_a_template():
    message = Message("{port} takes a number, not {value!r}", value="{ssl_key}")
    assert message.settings == ("port",)
    assert message.render(FLAG) == "--port takes a number, not '{ssl_key}'"


def test_a_reason_given_as_a_message_speaks_the_same_style():
    message = Message("{username}: {reason}", reason=Message("use {ssl_certificate}"))
    assert message.render(FLAG) == "--username: use --ssl-certificate"
    assert message.render(SETTING) == "`username`: use `ssl_certificate`"


def test_rename_for_a_front_end_that_calls_a_setting_otherwise():
    message = Message("{ssl_certificate_authorities} x")
    rename = {"ssl_certificate_authorities": "ssl_certificate"}
    assert message.render(SETTING, rename) == "`ssl_certificate` x"


def test_plain_messages_are_shown_as_written_and_flags_become_settings_on_demand():
    assert render("--add-field takes KEY=VALUE", FLAG) == "--add-field takes KEY=VALUE"
    assert render("--add-field takes KEY=VALUE", SETTING) == "`add_field` takes KEY=VALUE"
    error = ConfigurationError("--add-field takes KEY=VALUE")
    assert str(error) == "--add-field takes KEY=VALUE"
    assert error.settings == ()
    error.style = SETTING
    assert str(error) == "`add_field` takes KEY=VALUE"


def test_a_message_copied_or_pickled_stays_a_template():
    import copy
    import pickle

    message = Message("{port} takes a number, not {value!r}", value="x")
    for again in (copy.copy(message), pickle.loads(pickle.dumps(message))):
        assert again.render(FLAG) == "--port takes a number, not 'x'"
        assert again.settings == ("port",)
    error = pickle.loads(pickle.dumps(ConfigurationError(message)))
    assert error.render(FLAG) == "--port takes a number, not 'x'"


def test_a_configuration_error_about_settings():
    error = ConfigurationError.about("{password} is required when {username} is given")
    assert error.settings == ("password", "username")
    assert error.render(FLAG) == "--password is required when --username is given"
    assert str(error) == "`password` is required when `username` is given"


# -- one wording per rule, on both sides --------------------------------------------------


def _error(module, *argv) -> ConfigurationError:
    options = module.Options()
    options.parseOptions(list(argv))
    with pytest.raises(ConfigurationError) as raised:
        settings, explicit, _ = module.settings_from(options, environ={})
        module.build(settings, explicit, MemoryReactorClock())
    return raised.value


SHARED = [
    ("--ssl-certificate", "{certs}/client.crt"),
    ("--ssl-key", "{certs}/client.pkcs8.key", "--ssl-key-passphrase", "x", "--ssl-certificate"),
    ("--ssl-key-passphrase", "x"),
    ("--ssl-keystore-path", "{certs}/server.p12"),
    ("--ssl-keystore-password", "x"),
    ("--ssl-supported-protocols", "SSLv3", "--ssl-keystore-path", "{certs}/server.p12"),
    ("--username", "u"),
    ("--password", "p"),
]


@pytest.mark.parametrize("flags", SHARED, ids=lambda flags: " ".join(flags))
def test_input_and_output_word_a_shared_rule_alike(certs, flags):
    flags = [flag.format(certs=certs) for flag in flags]
    if flags[-1] == "--ssl-certificate":  # a key and a passphrase, no certificate
        flags = flags[:-1]
    sent = _error(output_program, "--hosts", "127.0.0.1", *flags)
    received = _error(input_program, *flags)
    assert sent.render(FLAG) == received.render(FLAG)
    assert str(sent) == str(received)
    assert "--" in sent.render(FLAG) and "--" not in str(sent)


def test_the_credentials_warning_is_one_sentence():
    assert config.WARN_INPUT_CREDENTIALS == config.WARN_OUTPUT_CREDENTIALS
    assert render(config.WARN_CREDENTIALS, FLAG) == (
        "--username and --password travel in clear text: TLS is off (--ssl-enabled is false)"
    )


def test_an_input_without_identity_says_how_to_go_on():
    error = _error(input_program)
    text = error.render(FLAG)
    assert "--ssl-certificate and --ssl-key" in text
    assert "--ssl-keystore-path" in text
    assert "--ssl-enabled false" in text
    assert "`make certs` creates test certificates in certs/out" in text


def test_make_certs_exists_where_the_message_says():
    makefile = (DOCS.parent / "Makefile").read_text()
    assert re.search(r"^certs:", makefile, re.MULTILINE)
    assert "certs/make_certs.py certs/out" in makefile


def test_the_library_names_settings():
    with pytest.raises(ConfigurationError) as raised:
        services.logstash_output(
            "127.0.0.1", reactor=MemoryReactorClock(), ssl_certificate="/x.crt"
        )
    assert str(raised.value) == "`ssl_key` is required when `ssl_certificate` is given"
    with pytest.raises(ConfigurationError) as raised:
        services.logstash_input(reactor=MemoryReactorClock(), ssl_enabled=False, add_field="x")
    assert str(raised.value) == "`add_field` takes KEY=VALUE, not 'x'"


def test_a_bad_number_names_the_flag():
    error = _error(output_program, "--hosts", "h", "--batch-size", "many")
    assert error.render(FLAG) == "--batch-size takes a whole number, not 'many'"


def test_a_flag_of_the_other_wire():
    error = _error(input_program, "--protocol", "lumberjack", "--username", "u", "--password", "p")
    assert error.render(FLAG) == (
        "--username is not available with --protocol lumberjack: the framed wire has no "
        "authentication; require client certificates instead (--ssl-client-authentication "
        "required)"
    )
    assert str(error).startswith("`username` is not available with `protocol => lumberjack`")
    assert "`ssl_client_authentication => required`" in str(error)


# -- hosts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "address"),
    [
        ("http://127.0.0.1:9800", "127.0.0.1:9800"),
        ("https://logstash.example:9800/", "logstash.example:9800"),
        ("tcp://[::1]:5044", "[::1]:5044"),
        ("lumberjack://h", "h"),
    ],
)
def test_a_url_in_hosts_is_answered_no_scheme(given, address):
    with pytest.raises(ConfigurationError) as raised:
        parse_hosts(given)
    assert raised.value.render(FLAG) == (
        f"--hosts {given!r}: no scheme: use host or host:port (here {address})"
    )
    assert str(raised.value).startswith("`hosts` ")


def test_an_unbracketed_ipv6_address_is_still_told_to_bracket():
    with pytest.raises(ConfigurationError, match=r"must be in brackets, e.g. \[::1\]"):
        parse_hosts("::1")


# -- unknown flags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "typed", "meant"),
    [
        (output_program, "--ssl-cert", "--ssl-certificate"),
        (input_program, "--ssl-cert", "--ssl-certificate"),
        (output_program, "--batchsize", "--batch-size"),
        (input_program, "--sink-fsnc", "--sink-fsync"),
        (output_program, "--hots", "--hosts"),
        (pipeline_program, "--path-config", "--path.config"),
    ],
)
def test_an_unknown_flag_suggests_the_nearest(module, typed, meant):
    with pytest.raises(usage.UsageError) as raised:
        module.Options().parseOptions([typed, "x"])
    assert str(raised.value) == f"unknown flag {typed}; did you mean {meant}?"


def test_nothing_near():
    assert suggestion("zzzz", ["hosts", "port"]) == "unknown flag --zzzz; --help lists the flags"


def test_other_usage_errors_are_left_alone():
    with pytest.raises(usage.UsageError, match="give the pipeline with one of -f FILE or -e"):
        pipeline_program.Options().parseOptions([])


# -- --help and --version -----------------------------------------------------------------------


PROGRAMS = [
    (input_program, help_.INPUT_GROUPS, "Listen"),
    (output_program, help_.OUTPUT_GROUPS, "Connect"),
]


@pytest.mark.parametrize(("module", "groups", "first"), PROGRAMS)
def test_every_flag_is_in_a_help_group(module, groups, first):
    """A flag added without a place in the program's group table fails here."""
    options = module.Options()
    placed = {flag for flags in groups.values() for flag in flags}
    assert set(help_.flags_of(options)) - placed == set()
    assert set(groups) <= set(help_.GROUPS)
    assert next(name for name, _ in help_.grouped(options, groups)) == first


@pytest.mark.parametrize(("module", "groups", "first"), PROGRAMS)
def test_help_is_grouped_in_the_tables_order(module, groups, first, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = str(module.Options())
    headers = [line[:-1] for line in text.splitlines() if re.fullmatch(r"[A-Z][a-z ]+:", line)]
    assert headers == [name for name in help_.GROUPS if name in headers]
    assert headers[0] == first and headers[-1] == "Operation"
    for flag in help_.flags_of(module.Options()):
        assert re.search(rf"--{re.escape(flag)}\b", text), flag
    # the table's order within a group, not the alphabet
    assert text.index("--ssl-enabled") < text.index("--ssl-certificate=")


def test_the_groups_place_the_flags_colleagues_add():
    for groups in (help_.INPUT_GROUPS, help_.OUTPUT_GROUPS):
        for flag in ("metrics-port", "metrics-host", "stats-interval", "log-level", "log-format"):
            assert flag in groups["Operation"]
    assert {"on-refused", "progress"} <= set(help_.OUTPUT_GROUPS["Operation"])


def test_a_flag_outside_every_group_is_listed_under_other():
    class Options(usage.Options):
        optParameters = [["hosts", None, None, "h"], ["brand-new", None, None, "n"]]

    sections = help_.grouped(Options(), help_.OUTPUT_GROUPS)
    assert sections[-1] == ("Other", ["brand-new"])


@pytest.mark.parametrize("module", [input_program, output_program, pipeline_program])
def test_version_is_this_projects(module, capsys):
    from importlib.metadata import version as installed

    with pytest.raises(SystemExit) as exited:
        module.Options().parseOptions(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"twisted-logstash {installed('twisted-logstash')}\n"
    assert version() == installed("twisted-logstash")


# -- the docs' flag tables --------------------------------------------------------------------


def table_flags(path: Path) -> set[str]:
    """The flags named in the first cell of the rows of every ``| flag | ...`` table."""
    flags: set[str] = set()
    inside = False
    for line in path.read_text().splitlines():
        if line.startswith("| flag |"):
            inside = True
            continue
        if not line.startswith("|"):
            inside = False
        elif inside:
            flags |= set(re.findall(r"--([a-z][a-z0-9-]*[a-z0-9])", line.split("|")[1]))
    return flags


@pytest.mark.parametrize(
    ("module", "doc"), [(input_program, "input.md"), (output_program, "output.md")]
)
def test_every_flag_is_in_the_docs_table(module, doc):
    real = set(help_.flags_of(module.Options())) - {"help", "version"}
    documented = table_flags(DOCS / doc)
    assert real - documented == set(), f"flags missing from docs/{doc}"
    assert documented - real == set(), f"docs/{doc} lists flags the program does not have"


# -- compression on the framed wire -----------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "deflate", "snappy", "GZIP"])
def test_the_framed_wire_refuses_what_it_cannot_send(compression):
    error = _error(
        output_program, "--hosts", "h", "--protocol", "lumberjack", "--compression", compression
    )
    assert error.render(FLAG) == (
        f"--compression {compression.lower()} is not available on the framed wire "
        "(--protocol lumberjack): it takes zlib or none"
    )


@pytest.mark.parametrize("compression", ["zlib", "none", None])
def test_the_framed_wire_takes_zlib_or_none(compression):
    argv = ["--hosts", "h", "--protocol", "lumberjack"]
    if compression:
        argv += ["--compression", compression]
    options = output_program.Options()
    options.parseOptions(argv)
    settings, _, _ = output_program.settings_from(options, environ={})
    transmitter = output_program.make_transmitter(settings, MemoryReactorClock())
    assert transmitter is not None


@pytest.mark.parametrize("protocol", ["http", "lumberjack"])
def test_a_compression_level_out_of_range_names_the_flag(protocol):
    # the framed wire's transmitter raised a bare ValueError: a traceback instead of one line
    error = _error(
        output_program, "--hosts", "h", "--protocol", protocol, "--compression-level", "12"
    )
    assert error.render(FLAG) == "--compression-level takes 0 to 9, not 12"


def test_the_native_wire_refuses_zlib_naming_the_flag():
    error = _error(
        output_program, "--hosts", "h", "--ssl-enabled", "false", "--compression", "zlib"
    )
    assert error.render(FLAG) == (
        "--compression zlib is not available on the native wire (--protocol http): "
        "it takes gzip, deflate, snappy or none"
    )


def test_an_endpoint_string_error_names_the_flag_and_the_strings_own_settings():
    error = _error(input_program, "--endpoint", "logstash-tls:port=0")
    text = error.render(FLAG)
    assert text.startswith("--endpoint 'logstash-tls:port=0': TLS is on but has no identity")
    # the string's parameters are settings: named as written there
    assert "give `ssl_certificate` and `ssl_key`" in text


@pytest.mark.parametrize(
    ("sink", "said"),
    [
        ("bogus", "--sink: unknown sink 'bogus': expected 'stdout', 'file:PATH' or 'null'"),
        ("file:", "--sink: sink 'file:' needs a path, as in file:/var/log/events.ndjson"),
    ],
)
def test_a_sink_mistake_names_the_flag(sink, said):
    assert _error(input_program, "--ssl-enabled", "false", "--sink", sink).render(FLAG) == said


def test_a_dead_letter_file_that_cannot_be_opened_names_the_flag(tmp_path):
    path = tmp_path / "no" / "such" / "dl.ndjson"
    error = _error(
        output_program, "--hosts", "h", "--ssl-enabled", "false", "--dead-letter", str(path)
    )
    assert error.render(FLAG) == f"--dead-letter {path}: cannot be opened (no such file)"


@pytest.mark.parametrize(
    ("argv", "said"),
    [(["--tags"], "--tags needs a value"), (["--help=x"], "--help takes no value")],
)
def test_a_flag_without_its_value(argv, said):
    with pytest.raises(usage.UsageError) as raised:
        input_program.Options().parseOptions(argv)
    assert str(raised.value) == said
