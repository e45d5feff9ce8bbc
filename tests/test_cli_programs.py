"""The command line as users meet it, through real ``twistd -n`` processes: ``--help`` grouped,
``--version``, a mistyped flag, a URL in ``--hosts``, one sentence for a rule both programs share,
and the same rule in a pipeline file naming the setting. Every wait is bounded (support_programs);
nothing here binds a port."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import pytest_twisted
from support_programs import programs_fixture, twistd  # noqa: F401

from twisted_logstash.tap import help as help_

PREFIX = "configuration error: "


def error_line(program, name: str) -> str:
    """The one configuration-error line of ``program``, after its prefix."""
    lines = program.stderr.decode().splitlines()
    assert len(lines) == 1, program.output
    assert lines[0].startswith(f"twistd {name}: {PREFIX}"), program.output
    return lines[0][len(f"twistd {name}: {PREFIX}") :]


@pytest.mark.parametrize(
    ("name", "groups"),
    [("logstash-input", help_.INPUT_GROUPS), ("logstash-output", help_.OUTPUT_GROUPS)],
)
@pytest_twisted.inlineCallbacks
def test_help_is_grouped(programs, name, groups):
    program = programs.spawn(name, twistd(name, "--help"), env={"COLUMNS": "100"})
    status = yield program.ended()
    assert status == 0, program.output
    text = program.stdout.decode()
    headers = [line[:-1] for line in text.splitlines() if line[:1].isupper() and line.endswith(":")]
    expected = [group for group in help_.GROUPS if group in groups]
    # groups whose flags are not (yet) options are left out; the rest come in the table's order
    assert headers == [group for group in expected if group in headers], program.output
    assert headers[0] == ("Listen" if name == "logstash-input" else "Connect")
    assert {"TLS", "Authentication", "Per wire", "Operation"} <= set(headers)
    assert "Other:" not in text


@pytest.mark.parametrize("name", ["logstash-input", "logstash-output", "logstash-pipeline"])
@pytest_twisted.inlineCallbacks
def test_version_is_the_projects(programs, name):
    program = programs.spawn(name, twistd(name, "--version"))
    status = yield program.ended()
    assert status == 0, program.output
    assert program.stdout.decode() == f"twisted-logstash {version('twisted-logstash')}\n"


@pytest.mark.parametrize(
    ("name", "typed", "meant"),
    [
        ("logstash-output", "--ssl-cert", "--ssl-certificate"),
        ("logstash-input", "--ssl-cert", "--ssl-certificate"),
        ("logstash-pipeline", "--path-config", "--path.config"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_a_mistyped_flag_suggests_the_nearest(programs, name, typed, meant):
    program = programs.spawn(name, twistd(name, typed, "x"))
    status = yield program.ended()
    assert status == 1, program.output  # twistd's status for a usage error
    last = program.stdout.decode().splitlines()[-1]
    assert last.endswith(f": unknown flag {typed}; did you mean {meant}?"), program.output


@pytest_twisted.inlineCallbacks
def test_a_url_in_hosts(programs, tmp_path):
    program = programs.output(
        "--hosts", "http://127.0.0.1:9800", f"--dead-letter={tmp_path / 'dl.ndjson'}"
    )
    status = yield program.ended()
    assert status == 2, program.output
    assert error_line(program, "logstash-output") == (
        "--hosts 'http://127.0.0.1:9800': no scheme: use host or host:port (here 127.0.0.1:9800)"
    )


@pytest_twisted.inlineCallbacks
def test_a_shared_rule_is_one_sentence_on_both_programs(programs, tmp_path, certs):
    certificate = f"--ssl-certificate={certs / 'client.crt'}"
    receiver = programs.input("--host=127.0.0.1", "--port=0", certificate)
    sender = programs.output(
        "--hosts=127.0.0.1", certificate, f"--dead-letter={tmp_path / 'dl.ndjson'}"
    )
    assert (yield receiver.ended()) == 2, receiver.output
    assert (yield sender.ended()) == 2, sender.output
    said = error_line(receiver, "logstash-input")
    assert said == "--ssl-key is required when --ssl-certificate is given"
    assert error_line(sender, "logstash-output") == said


@pytest_twisted.inlineCallbacks
def test_the_framed_wire_refuses_gzip_before_anything_binds(programs, tmp_path):
    program = programs.output(
        "--hosts=127.0.0.1",
        "--protocol=lumberjack",
        "--compression=gzip",
        "--source=tcp:0",
        f"--dead-letter={tmp_path / 'dl.ndjson'}",
    )
    assert (yield program.ended()) == 2, program.output
    assert error_line(program, "logstash-output") == (
        "--compression gzip is not available on the framed wire (--protocol lumberjack): "
        "it takes zlib or none"
    )


@pytest_twisted.inlineCallbacks
def test_the_same_rule_in_a_pipeline_names_the_setting(programs, tmp_path, certs):
    path = tmp_path / "p.conf"
    path.write_text(
        "input {\n  logstash {\n    port => 0\n"
        f'    ssl_certificate => "{certs / "server.crt"}"\n  }}\n}}\noutput {{ stdout {{ }} }}\n'
    )
    program = programs.spawn("pipeline", twistd("logstash-pipeline", "-f", str(path)))
    assert (yield program.ended()) == 2, program.output
    assert error_line(program, "logstash-pipeline") == (
        f"{path}:4:5: logstash input: `ssl_key` is required when `ssl_certificate` is given"
    )
