"""``twistd -n logstash-pipeline`` as users run it: the seed document's blocks as two processes
over TLS, mutual TLS and basic auth; relays between the two wires; configuration errors; an
output that is down holding the pipeline back. Real processes, real sockets on 127.0.0.1, real
certificates (the ``certs`` fixture); every wait is bounded and on a log line or an exit."""

from __future__ import annotations

import signal

import orjson
import pytest_twisted
from support_programs import Program, closed_port, programs_fixture, twistd  # noqa: F401
from twisted.internet import defer

from twisted_logstash.pipelines.syntax import FILTERS_OUT_OF_SCOPE

#: a clean stop by SIGTERM (nothing unacknowledged): exit 0, not by the signal (issue 14)
STOPPED = 0
SECRET = {"LS_USER": "your-user", "LS_PASSWORD": "your-secret"}


def read_ndjson(path) -> list[dict]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def run(programs, tmp_path, name: str, text: str, env=None) -> Program:
    """``twistd -n logstash-pipeline -f NAME.conf`` with ``text`` as the file."""
    path = tmp_path / f"{name}.conf"
    path.write_text(text)
    return programs.spawn(name, twistd("logstash-pipeline", "-f", str(path)), env)


@defer.inlineCallbacks
def listening(programs, tmp_path, name, text, env=None):
    program = run(programs, tmp_path, name, text, env)
    port = yield program.wait_port()
    return program, port


@defer.inlineCallbacks
def exits_with(program: Program, status: int):
    code = yield program.ended()
    if code != status:
        raise program.failure(f"exited with {code}, expected {status}")


def downstream(certs, out) -> str:
    """The seed's downstream block: TLS, mutual TLS and user/password, paths filled in."""
    return f"""
input {{
  logstash {{
    host => "127.0.0.1"
    port => 0

    ssl_enabled => true
    ssl_key => "{certs}/server.pkcs8.key"
    ssl_certificate => "{certs}/server.crt"
    ssl_certificate_authorities => "{certs}/ca.crt"
    ssl_client_authentication => required

    username => "${{LS_USER}}"
    password => "${{LS_PASSWORD}}"
  }}
}}
output {{ file {{ path => "{out}" }} }}
"""


def upstream(certs, count: int) -> str:
    """The seed's upstream block, fed by a generator (whose events carry @metadata)."""
    return f"""
input {{
  generator {{
    count => {count}
    message => "from upstream"
    add_field => {{ "[@metadata][route]" => "secret" }}
  }}
}}
output {{
  logstash {{
    hosts => ["localhost:${{PORT}}"]

    ssl_enabled => true
    ssl_key => "{certs}/client.pkcs8.key"
    ssl_certificate => "{certs}/client.crt"
    ssl_certificate_authorities => "{certs}/ca.crt"

    username => "${{LS_USER}}"
    password => "${{LS_PASSWORD}}"
  }}
}}
"""


@pytest_twisted.inlineCallbacks
def test_the_seed_blocks_move_events_end_to_end(programs, tmp_path, certs):
    out = tmp_path / "down.ndjson"
    down, port = yield listening(programs, tmp_path, "down", downstream(certs, out), SECRET)
    up = run(programs, tmp_path, "up", upstream(certs, 300), {**SECRET, "PORT": str(port)})
    yield exits_with(up, 0)  # every event acknowledged by the downstream
    events = read_ndjson(out)
    assert sorted(e["sequence"] for e in events) == list(range(300))
    assert all(e["message"] == "from upstream" for e in events)
    assert not any("@metadata" in e for e in events)  # never sent on the wire
    yield exits_with_after_term(down, STOPPED)


@defer.inlineCallbacks
def exits_with_after_term(program: Program, status: int):
    program.signal(signal.SIGTERM)
    yield exits_with(program, status)


@pytest_twisted.inlineCallbacks
def test_a_wrong_password_is_refused_and_dead_lettered(programs, tmp_path, certs):
    out = tmp_path / "down.ndjson"
    down, port = yield listening(programs, tmp_path, "down", downstream(certs, out), SECRET)
    env = {**SECRET, "LS_PASSWORD": "wrong", "PORT": str(port)}
    up = run(programs, tmp_path, "up", upstream(certs, 10), env)
    # refused for good (401): handled, in the dead-letter file, and the status says so (3)
    yield exits_with(up, 3)
    assert read_ndjson(out) == []
    refused = read_ndjson(tmp_path / "dead-letter.ndjson")
    assert sorted(record["event"]["sequence"] for record in refused) == list(range(10))
    assert not any("@metadata" in record["event"] for record in refused)
    yield exits_with_after_term(down, STOPPED)


@pytest_twisted.inlineCallbacks
def test_relays_between_the_wires(programs, tmp_path, certs):
    """generator -> logstash output -> [logstash input -> lumberjack output] -> [beats input ->
    logstash output] -> [logstash input -> file]: both relays, each wire with TLS."""
    out = tmp_path / "last.ndjson"
    tls_input = f"""ssl_key => "{certs}/server.pkcs8.key"
    ssl_certificate => "{certs}/server.crt\""""
    last, last_port = yield listening(
        programs,
        tmp_path,
        "last",
        f"""input {{ logstash {{ host => "127.0.0.1" port => 0 {tls_input} }} }}
output {{ file {{ path => "{out}" }} }}""",
    )
    beats_relay, beats_port = yield listening(
        programs,
        tmp_path,
        "beats-relay",
        f"""input {{ beats {{ host => "127.0.0.1" port => 0 ssl_enabled => true {tls_input}
    tags => ["relayed"] }} }}
output {{ logstash {{ hosts => "localhost:{last_port}"
    ssl_certificate_authorities => "{certs}/ca.crt" }} }}""",
    )
    native_relay, native_port = yield listening(
        programs,
        tmp_path,
        "native-relay",
        f"""input {{ logstash {{ host => "127.0.0.1" port => 0 {tls_input} }} }}
output {{ lumberjack {{ hosts => ["localhost"] port => {beats_port}
    ssl_certificate => "{certs}/ca.crt" }} }}""",
    )
    first = run(
        programs,
        tmp_path,
        "first",
        f"""input {{ generator {{ count => 250 lines => ["one", "two"] }} }}
output {{ logstash {{ hosts => "localhost:{native_port}"
    ssl_certificate_authorities => "{certs}/ca.crt" }} }}""",
    )
    yield exits_with(first, 0)  # acknowledged only once the last file has every event
    events = read_ndjson(out)
    assert len(events) == 500
    assert sorted((e["sequence"], e["message"]) for e in events) == sorted(
        (n, line) for n in range(250) for line in ("one", "two")
    )
    assert all(e["tags"] == ["relayed"] for e in events)
    for program in (native_relay, beats_relay, last):
        yield exits_with_after_term(program, STOPPED)


@pytest_twisted.inlineCallbacks
def test_an_output_that_is_down_holds_the_pipeline_back(programs, tmp_path):
    out = tmp_path / "held.ndjson"
    closed = closed_port()
    try:
        port = closed.getsockname()[1]
        program = run(
            programs,
            tmp_path,
            "held",
            f"""input {{ generator {{ count => 5000 }} }}
output {{
  logstash {{ hosts => "127.0.0.1:{port}" ssl_enabled => false }}
  file {{ path => "{out}" }}
}}""",
        )
        yield program.wait_for(r"failed \(connection refused\)")
        yield program.wait_for(r"failed \(connection refused\)[^\n]*\n[^\n]*failed")
        yield exits_with_after_term(program, 1)
    finally:
        closed.close()
    assert "events not acknowledged by any receiver" in program.output
    # the file output got only what the generator could hand before the pipeline held it back
    assert 0 < len(read_ndjson(out)) < 5000


@pytest_twisted.inlineCallbacks
def test_a_configuration_error_is_one_line_before_anything_binds(programs, tmp_path):
    program = run(
        programs,
        tmp_path,
        "bad",
        "input {\n  logstash {\n    port => 0\n    ssl_enabled => maybe\n  }\n}\n"
        "output { stdout { } }\n",
    )
    yield exits_with(program, 2)
    assert program.stderr.decode().splitlines() == [
        f"twistd logstash-pipeline: configuration error: {tmp_path}/bad.conf:4:20: Invalid "
        "setting for logstash input plugin: ssl_enabled: Expected boolean, got maybe"
    ]
    assert b"listening" not in program.stdout


@pytest_twisted.inlineCallbacks
def test_a_filter_section_is_refused(programs, tmp_path):
    program = programs.spawn(
        "filter",
        twistd(
            "logstash-pipeline",
            "-e",
            "input { stdin { } } filter { mutate { add_tag => [x] } } output { stdout { } }",
        ),
    )
    yield exits_with(program, 2)
    assert program.stderr.decode().splitlines() == [
        "twistd logstash-pipeline: configuration error: config string:1:21: " + FILTERS_OUT_OF_SCOPE
    ]


@pytest_twisted.inlineCallbacks
def test_config_test_and_exit(programs, tmp_path):
    text = "input { stdin { } } output { stdout { } }"
    program = programs.spawn("check", twistd("logstash-pipeline", "-t", "-e", text))
    yield exits_with(program, 0)
    assert program.stdout.decode().strip() == "Configuration OK"


@pytest_twisted.inlineCallbacks
def test_stdin_to_stdout_with_codecs(programs, tmp_path):
    program = programs.spawn(
        "stdin",
        twistd(
            "logstash-pipeline",
            "-e",
            'input { stdin { codec => json_lines type => "t" } } output { stdout { } }',
        ),
    )
    program.transport.write(b'{"a": 1, "@metadata": {"x": 1}}\nnot json\n')
    program.transport.closeStdin()
    yield exits_with(program, 0)
    lines = [orjson.loads(line) for line in program.stdout.splitlines()]  # events alone
    assert [{k: v for k, v in e.items() if k != "@timestamp"} for e in lines] == [
        {"a": 1, "@version": "1", "type": "t"},
        {"message": "not json", "tags": ["_jsonparsefailure"], "@version": "1", "type": "t"},
    ]


@pytest_twisted.inlineCallbacks
def test_a_port_that_is_taken_is_one_log_line_and_exit_1(programs, tmp_path):
    taken = closed_port()
    try:
        port = taken.getsockname()[1]
        text = f'input {{ logstash {{ host => "127.0.0.1" port => {port} ssl_enabled => false }} }}'
        program = run(programs, tmp_path, "taken", text + " output { stdout { } }")
        yield exits_with(program, 1)
    finally:
        taken.close()
    assert f"cannot listen on 127.0.0.1:{port}" in program.output


@pytest_twisted.inlineCallbacks
def test_a_held_back_pipeline_goes_on_once_the_output_is_back(programs, tmp_path):
    """Nothing is lost while an output is down: both outputs get every event once it is up."""
    reserved = closed_port()
    port = reserved.getsockname()[1]
    held = tmp_path / "held.ndjson"
    later = tmp_path / "later.ndjson"
    try:
        program = run(
            programs,
            tmp_path,
            "held",
            f"""input {{ generator {{ count => 3000 }} }}
output {{
  logstash {{ hosts => "127.0.0.1:{port}" ssl_enabled => false cooloff => 0 }}
  file {{ path => "{held}" }}
}}""",
        )
        yield program.wait_for(r"failed \(connection refused\)")
    finally:
        reserved.close()  # the port is free again: the receiver takes it
    receiver = run(
        programs,
        tmp_path,
        "receiver",
        f"""input {{ logstash {{ host => "127.0.0.1" port => {port} ssl_enabled => false }} }}
output {{ file {{ path => "{later}" }} }}""",
    )
    yield receiver.wait_port()
    yield exits_with(program, 0)
    assert sorted(e["sequence"] for e in read_ndjson(later)) == list(range(3000))
    assert sorted(e["sequence"] for e in read_ndjson(held)) == list(range(3000))
    yield exits_with_after_term(receiver, STOPPED)
