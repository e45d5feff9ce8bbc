"""The real programs, as users run them: ``twistd -n logstash-input`` and ``logstash-output``.

Each test starts child processes (see support_programs), talks to them over 127.0.0.1 and reads
the files they write. Nothing sleeps: waits are on log lines, responses and process exits, each
bounded, and a failure shows what the process wrote.
"""

from __future__ import annotations

import gzip
import os
import socket
import sys

import orjson
import pytest
import pytest_twisted
from support_http import connect, logstash_body, manticore_request
from support_programs import TIMEOUT, Program, closed_port, programs_fixture  # noqa: F401
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web import resource, server

from twisted_logstash.config import WARN_CREDENTIALS, WARN_PASSWORD_FLAG
from twisted_logstash.errors import FLAG, SETTING, render
from twisted_logstash.tap import output as output_program

PLAIN = ("--host", "127.0.0.1", "--port", "0", "--ssl-enabled", "false")


def read_ndjson(path) -> list[dict]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def write_ndjson(path, events) -> None:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


def without_stamp(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in ("@timestamp", "@version")}


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    return lines[0]


@defer.inlineCallbacks
def start_input(programs, *args, env=None):
    """A running input on a free port of 127.0.0.1: fires with (program, port)."""
    program = programs.input(*args, env=env)
    port = yield program.wait_port()
    return program, port


@defer.inlineCallbacks
def expect_clean_exit(program: Program, timeout: float = TIMEOUT):
    status = yield program.ended(timeout)
    assert status == 0, program.failure(f"exited with {status}")


@defer.inlineCallbacks
def expect_stopped(program: Program):
    """SIGTERM: a clean shutdown with nothing left unacknowledged exits 0 (docs/output.md,
    docs/input.md), not by the signal."""
    status = yield program.terminate()
    assert status == 0, program.failure(f"stopped with {status} on SIGTERM")
    assert "Server Shut Down." in program.output, program.output


# -- logstash-input -------------------------------------------------------------------------


INPUT_ERRORS = [
    (
        ("--ssl-enabled", "true"),
        "TLS is on but has no identity: give --ssl-certificate and --ssl-key (or "
        "--ssl-keystore-path and --ssl-keystore-password), or turn TLS off with --ssl-enabled "
        "false; `make certs` creates test certificates in certs/out",
    ),
    (("--ssl-enabled", "false", "--username", "u"), "--password is required"),
    (("--ssl-enabled", "false", "--add-field", "no-equals"), "--add-field takes KEY=VALUE"),
    (("--ssl-enabled", "false", "--ssl-certificate", "x.crt"), "--ssl-certificate cannot be used"),
    (("--protocol", "ftp"), "--protocol takes http or lumberjack"),
    (("--ssl-enabled", "false", "--port", "70000"), "--port must be from 0 to 65535"),
    (("--ssl-enabled", "false", "--sink", "file:no/such/dir/x"), "no/such/dir/x"),
    # the framed wire has no authentication: a username must not be silently ignored
    (
        ("--protocol", "lumberjack", "--username", "u", "--password", "p"),
        "--username is not available with --protocol lumberjack",
    ),
    (
        ("--protocol", "lumberjack", "--max-pending-requests", "5"),
        "--max-pending-requests is not available with --protocol lumberjack",
    ),
    (
        ("--ssl-enabled", "false", "--client-inactivity-timeout", "5"),
        "--client-inactivity-timeout is not available with --protocol http",
    ),
]
"""Configuration mistakes and (part of) the one line each must give; every one is checked
in-process below, the first few also by running the program."""


@pytest.mark.parametrize(("args", "message"), INPUT_ERRORS[:3] + INPUT_ERRORS[7:8])
@pytest_twisted.inlineCallbacks
def test_input_configuration_error_is_one_line_and_nothing_binds(programs, args, message):
    # The port the program is told to use is held (bound, not listening) by the test: had the
    # program tried to bind before checking its configuration, it would fail with "address in
    # use" instead of the configuration message.
    held = closed_port()
    try:
        port = held.getsockname()[1]
        program = programs.input("--host", "127.0.0.1", "--port", str(port), *args)
        status = yield program.ended()
    finally:
        held.close()
    assert status == 2, program.failure(f"exited with {status}")
    line = one_line(program.stderr.decode())
    assert line.startswith("twistd logstash-input: configuration error: "), program.output
    assert message in line, program.output
    assert b"listening" not in program.stdout, program.output


@pytest.mark.parametrize(
    ("key", "flags", "reason"),
    [
        (
            "server-encrypted.pkcs8.key",
            ("--ssl-key-passphrase=Wr0ngSecret",),
            "cannot be decrypted with the given --ssl-key-passphrase",
        ),
        ("client.pkcs8.key", (), "does not match --ssl-certificate"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_input_tls_identity_errors_name_the_reason_and_never_a_secret(
    programs, certs, key, flags, reason
):
    program = programs.input(
        "--host=127.0.0.1",
        "--port=0",
        f"--ssl-certificate={certs / 'server.crt'}",
        f"--ssl-key={certs / key}",
        *flags,
        "--sink=null",
    )
    status = yield program.ended()
    assert status == 2, program.failure(f"exited with {status}")
    (line,) = program.stderr.decode().splitlines()
    assert reason in line, program.output
    assert "Wr0ngSecret" not in program.output
    assert "logstash-tls:" not in line  # the endpoint string built from the flags is no news
    # the same mistakes through --endpoint: the string is shown, its secrets are not
    endpoint = (
        f"logstash-tls:port=0:interface=127.0.0.1:ssl_certificate={certs / 'server.crt'}"
        f":ssl_key={certs / key}" + "".join(":" + f.lstrip("-").replace("-", "_") for f in flags)
    )
    program = programs.input(f"--endpoint={endpoint}", "--sink=null")
    status = yield program.ended()
    assert status == 2, program.failure(f"exited with {status}")
    (line,) = program.stderr.decode().splitlines()
    # an endpoint string names settings, not flags: the message says them as written there
    assert render(reason, SETTING) in line and "logstash-tls:port=0" in line, program.output
    assert "Wr0ngSecret" not in program.output


@pytest_twisted.inlineCallbacks
def test_input_that_cannot_listen_says_why_and_exits_1(programs):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        program = programs.input("--host=127.0.0.1", f"--port={port}", "--ssl-enabled=false")
        status = yield program.ended()
    finally:
        taken.close()
    assert status == 1, program.failure(f"exited with {status}")
    assert f"cannot listen on 127.0.0.1:{port}" in program.output, program.output
    assert "Address already in use" in program.output, program.output
    assert "Traceback" not in program.output, program.output


@pytest_twisted.inlineCallbacks
def test_input_without_ssl_receives_what_a_logstash_output_sends(programs, tmp_path):
    sink = tmp_path / "received.ndjson"
    program, port = yield start_input(
        programs,
        *PLAIN,
        f"--sink=file:{sink}",
        "--type=shipped",
        "--tags=a,b",
        "--add-field=site=lab",
    )
    client = yield connect(port)
    # what Logstash 8's `logstash` output writes: the batch as one gzip JSON array
    array = [{"message": "one", "n": 1}, {"message": "two", "n": 2, "type": "own"}]
    response = yield client.request(manticore_request(logstash_body(array), port=port))
    assert response.status == 200, response
    assert response.body == b"ok"
    # and what our output writes: gzip ndjson
    ndjson_body = gzip.compress(b'{"message":"three","n":3}\n{"message":"four","n":4}\n')
    response = yield client.request(manticore_request(ndjson_body, port=port))
    assert response.status == 200, response
    # the 200 is sent only after the sink wrote the events: the file holds them now
    events = read_ndjson(sink)
    assert [e["n"] for e in events] == [1, 2, 3, 4]
    assert [e["type"] for e in events] == ["shipped", "own", "shipped", "shipped"]
    for event in events:
        assert event["tags"] == ["a", "b"]
        assert event["site"] == "lab"
        assert event["@version"] == "1"
        assert event["@timestamp"].endswith("Z")
    client.transport.loseConnection()
    yield client.wait_closed()
    yield expect_stopped(program)


@pytest_twisted.inlineCallbacks
def test_input_with_the_stdout_sink_writes_only_events_there(programs):
    # `twistd -n logstash-input` (the default sink is stdout): the log goes to stderr, so that
    # standard output is clean ndjson for a pipe
    program, port = yield start_input(programs, *PLAIN)
    client = yield connect(port)
    body = logstash_body([{"message": "one", "n": 1}, {"message": "two", "n": 2}])
    response = yield client.request(manticore_request(body, port=port))
    assert response.status == 200, response
    yield program.wait_for(rb'"n":2')
    client.transport.loseConnection()
    yield client.wait_closed()
    yield expect_stopped(program)
    events = [orjson.loads(line) for line in bytes(program.stdout).splitlines()]
    assert [e["n"] for e in events] == [1, 2], program.output
    assert b"input listening on" in program.stderr
    assert b"Server Shut Down." in program.stderr


def auth_request(port: int, password: str | None) -> bytes:
    body = logstash_body([{"message": "secret"}])
    if password is None:
        return manticore_request(body, port=port)
    return manticore_request(body, port=port, username="shipper", password=password)


@pytest.mark.parametrize("given", ["environment", "password-file", "password-flag"])
@pytest_twisted.inlineCallbacks
def test_input_basic_auth_password_sources(programs, tmp_path, given):
    secret = "s3cret-" + given
    sink = tmp_path / "received.ndjson"
    args = [*PLAIN, "--username=shipper", f"--sink=file:{sink}"]
    env = None
    if given == "environment":
        env = {"LOGSTASH_PASSWORD": secret}
    elif given == "password-file":
        path = tmp_path / "password"
        path.write_text(secret + "\nsecond line is ignored\n")
        args.append(f"--password-file={path}")
    else:
        args.append(f"--password={secret}")
    program, port = yield start_input(programs, *args, env=env)
    for password in (None, "wrong"):
        client = yield connect(port)
        response = yield client.request(auth_request(port, password))
        assert response.status == 401, response
        assert response.header("www-authenticate") == 'Basic realm="Logstash HTTP Input"'
        client.transport.loseConnection()
        yield client.wait_closed()
    client = yield connect(port)
    response = yield client.request(auth_request(port, secret))
    assert response.status == 200, response
    assert [e["message"] for e in read_ndjson(sink)] == ["secret"]
    client.transport.loseConnection()
    yield client.wait_closed()
    yield expect_stopped(program)
    log = program.stdout.decode()
    assert render(WARN_CREDENTIALS, FLAG) in log  # basic auth without TLS
    assert (render(WARN_PASSWORD_FLAG, FLAG) in log) == (given == "password-flag"), program.output


# -- logstash-output ------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_output_generator_into_a_real_input_exits_0_once_acknowledged(programs, tmp_path):
    sink = tmp_path / "received.ndjson"
    # LOGSTASH_PASSWORD is only a default for --username: exported in the shell, it must not
    # break programs run without authentication
    env = {"LOGSTASH_PASSWORD": "for-another-program"}
    receiver, port = yield start_input(programs, *PLAIN, f"--sink=file:{sink}", env=env)
    sender = programs.output(
        f"--hosts=127.0.0.1:{port}", "--ssl-enabled=false", "--source=generator:3000", env=env
    )
    yield expect_clean_exit(sender)
    # exit 0 means every event was acknowledged, and an input acknowledges after writing
    sequences = [e["sequence"] for e in read_ndjson(sink)]
    assert sorted(sequences) == list(range(3000))
    assert "every event was handled" in sender.stdout.decode()
    yield expect_stopped(receiver)


@pytest_twisted.inlineCallbacks
def test_output_file_source_into_a_real_input(programs, tmp_path):
    sink = tmp_path / "received.ndjson"
    receiver, port = yield start_input(programs, *PLAIN, f"--sink=file:{sink}")
    source = tmp_path / "events.ndjson"
    events = [{"message": f"event {n}", "id": n, "nested": {"k": [n, "x"]}} for n in range(500)]
    lines = b"".join(orjson.dumps(e) + b"\n" for e in events)
    source.write_bytes(lines + b"\n   \nnot json at all\n" + b'{"id": 500, "last": "no newline"}')
    sender = programs.output(
        f"--hosts=127.0.0.1:{port}",
        "--ssl-enabled=false",
        f"--source=file:{source}",
        "--batch-size=64",
    )
    yield expect_clean_exit(sender)
    received = read_ndjson(sink)
    assert len(received) == 502
    by_id = {e["id"]: e for e in received if "id" in e}
    for event in events:
        got = by_id[event["id"]]
        assert {k: got[k] for k in event} == event
    assert by_id[500]["last"] == "no newline"
    assert [e["message"] for e in received if "id" not in e] == ["not json at all"]
    yield expect_stopped(receiver)


@pytest_twisted.inlineCallbacks
def test_output_cuts_batches_over_batch_max_bytes_for_a_receiver_with_a_small_limit(
    programs, tmp_path
):
    # issue 11: batches counted in events only made bodies over the receiver's limit (413),
    # and every event was dead-lettered
    sink = tmp_path / "received.ndjson"
    limit = ("--max-content-length=65536",)
    receiver, port = yield start_input(programs, *PLAIN, *limit, f"--sink=file:{sink}")
    source = tmp_path / "events.ndjson"
    write_ndjson(source, [{"id": n, "text": f"{n:04d}" * 500} for n in range(100)])
    dead = tmp_path / "dead.ndjson"
    sender = programs.output(
        f"--hosts=127.0.0.1:{port}",
        "--ssl-enabled=false",
        f"--source=file:{source}",
        f"--dead-letter={dead}",
        "--batch-max-bytes=16384",
    )
    yield expect_clean_exit(sender)
    assert sorted(e["id"] for e in read_ndjson(sink)) == list(range(100))
    assert read_ndjson(dead) == []
    yield expect_stopped(receiver)


class Refusing(resource.Resource):
    """A receiver that answers every request 400, keeping the bodies it refused."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.bodies: list[bytes] = []

    def render_POST(self, request):
        body = request.content.read()
        if request.getHeader("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.bodies.append(body)
        request.setResponseCode(400)
        return b"mapping conflict on field n\n"


@pytest_twisted.inlineCallbacks
def test_output_dead_letters_refused_batches_and_the_file_replays(programs, tmp_path):
    refusing = Refusing()
    site = server.Site(refusing)
    site.noisy = False
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    refusing_host = f"127.0.0.1:{port.getHost().port}"
    try:
        source = tmp_path / "events.ndjson"
        events = [{"message": f"event {n}", "id": n} for n in range(300)]
        write_ndjson(source, events)
        dead = tmp_path / "dead-letter.ndjson"
        sender = programs.output(
            f"--hosts={refusing_host}",
            "--ssl-enabled=false",
            f"--source=file:{source}",
            f"--dead-letter={dead}",
        )
        # dead-lettered events are handled, but not delivered: the program exits 3
        status = yield sender.ended()
        assert status == 3, sender.failure(f"exited with {status}")
    finally:
        yield port.stopListening()
    assert refusing.bodies, "the receiver saw no request"
    records = read_ndjson(dead)
    # the events as sent: stamped by the output with @timestamp and @version, nothing else
    # (batches are in flight at once: their refusals, and records, come in any order)
    assert sorted((without_stamp(r["event"]) for r in records), key=lambda e: e["id"]) == events
    stamped = {r["event"]["id"]: r["event"]["@timestamp"] for r in records}
    assert all(r["event"]["@version"] == "1" for r in records)
    sent = [orjson.loads(line) for body in refusing.bodies for line in body.splitlines()]
    assert sorted(e["id"] for e in sent) == list(range(300))
    assert all(e["@timestamp"] == stamped[e["id"]] for e in sent)
    for record in records:
        assert record["dead_letter"]["status"] == 400
        assert "mapping conflict" in record["dead_letter"]["reason"]
        assert record["dead_letter"]["host"] == refusing_host

    # once the cause is fixed, the dead-letter file is replayed as it is
    sink = tmp_path / "received.ndjson"
    receiver, input_port = yield start_input(programs, *PLAIN, f"--sink=file:{sink}")
    replay = programs.output(
        f"--hosts=127.0.0.1:{input_port}",
        "--ssl-enabled=false",
        f"--source=file:{dead}",
        f"--dead-letter={tmp_path / 'dead-again.ndjson'}",
    )
    yield expect_clean_exit(replay)
    received = read_ndjson(sink)
    assert sorted(e["id"] for e in received) == list(range(300))
    for event in received:
        assert "dead_letter" not in event and "event" not in event
        assert event["message"] == f"event {event['id']}"
        assert event["@timestamp"] == stamped[event["id"]]  # the original time is kept
    yield expect_stopped(receiver)


class Silent(protocol.Protocol):
    """A receiver that reads requests and never answers."""

    def dataReceived(self, data):
        if not self.factory.heard.called:
            self.factory.heard.callback(None)


@pytest.mark.parametrize("wire", ["http", "lumberjack"])
@pytest_twisted.inlineCallbacks
def test_output_sigterm_does_not_wait_for_a_receiver_that_never_answers(programs, wire):
    factory = protocol.Factory.forProtocol(Silent)
    factory.heard = defer.Deferred()
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    try:
        sender = programs.output(
            f"--hosts=127.0.0.1:{port.getHost().port}",
            "--ssl-enabled=false",
            f"--protocol={wire}",
            "--source=generator:300",
            "--stop-timeout=1",  # the attempt's own timeout stays at 60 s (ACK wait: 30 s)
        )
        yield defer.DeferredList(
            [factory.heard.addTimeout(TIMEOUT, reactor), sender.ended()],
            fireOnOneCallback=True,
            fireOnOneErrback=True,
            consumeErrors=True,
        )
        assert sender.running, sender.failure("exited before it sent anything")
        status = yield sender.terminate(timeout=10.0)
    finally:
        yield port.stopListening()
    assert status == 1, sender.failure(f"exited with {status}")
    log = sender.stdout.decode()
    assert "did not answer within 1 s of stopping" in log, sender.output
    assert "events not acknowledged" in log, sender.output
    assert "Traceback" not in log, sender.output


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest_twisted.inlineCallbacks
def test_output_exits_1_when_refused_events_cannot_be_dead_lettered(programs, tmp_path):
    # /dev/full opens, and every write to it fails (ENOSPC): like a full disk
    refusing = Refusing()
    site = server.Site(refusing)
    site.noisy = False
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    try:
        sender = programs.output(
            f"--hosts=127.0.0.1:{port.getHost().port}",
            "--ssl-enabled=false",
            "--source=generator:200",
            "--dead-letter=/dev/full",
        )
        status = yield sender.ended()
    finally:
        yield port.stopListening()
    assert refusing.bodies
    assert status == 1, sender.failure(f"exited with {status}: events were dropped")
    assert "DROPPED" in sender.output


@pytest_twisted.inlineCallbacks
def test_output_sigterm_while_every_host_is_down_exits_non_zero_promptly(programs):
    down = [closed_port(), closed_port()]
    try:
        hosts = ",".join(f"127.0.0.1:{s.getsockname()[1]}" for s in down)
        sender = programs.output(
            f"--hosts={hosts}", "--ssl-enabled=false", "--source=generator:1000"
        )
        yield sender.wait_for(r"connection refused\); retrying in")
        status = yield sender.terminate(timeout=15.0)
    finally:
        for sock in down:
            sock.close()
    assert status == 1, sender.failure(f"exited with {status}")
    log = sender.stdout.decode()
    assert "events not acknowledged" in log, sender.output


@pytest_twisted.inlineCallbacks
def test_output_reads_stdin_to_its_end(programs, tmp_path):
    sink = tmp_path / "received.ndjson"
    receiver, port = yield start_input(programs, *PLAIN, f"--sink=file:{sink}")
    sender = programs.output(f"--hosts=127.0.0.1:{port}", "--ssl-enabled=false")
    lines = b"".join(b'{"id": %d}\n' % n for n in range(700)) + b"a plain last line"
    for start in range(0, len(lines), 1000):  # in pieces, as a pipe delivers them
        sender.transport.write(lines[start : start + 1000])
    sender.transport.closeStdin()
    yield expect_clean_exit(sender)
    received = read_ndjson(sink)
    assert sorted(e["id"] for e in received if "id" in e) == list(range(700))
    assert [e["message"] for e in received if "id" not in e] == ["a plain last line"]
    yield expect_stopped(receiver)


class Collecting:
    """An in-test input's sink: keeps events, fires ``at(n)`` once it holds ``n``."""

    def __init__(self):
        self.events: list[dict] = []
        self._at: list[tuple[int, defer.Deferred]] = []

    def __call__(self, events):
        self.events.extend(events)
        for item in [item for item in self._at if len(self.events) >= item[0]]:
            self._at.remove(item)
            item[1].callback(None)

    def at(self, count: int) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._at.append((count, d))
        if len(self.events) >= count:
            self._at.remove((count, d))
            d.callback(None)
        return d.addTimeout(TIMEOUT, reactor)


@pytest_twisted.inlineCallbacks
def test_output_with_an_endless_tcp_source_stops_cleanly_on_sigterm(programs):
    from support_http import listen

    from twisted_logstash.pipeline.sinks import CallableSink
    from twisted_logstash.wires.native.server import HttpInputFactory

    collecting = Collecting()
    listening = yield listen(HttpInputFactory(CallableSink(collecting), reactor))
    try:
        sender = programs.output(
            f"--hosts=127.0.0.1:{listening.getHost().port}",
            "--ssl-enabled=false",
            "--source=tcp:0",
        )
        match = yield sender.wait_for(r"reading ndjson lines on tcp [^:]+:(\d+)")
        writer = yield connect(int(match.group(1)))
        writer.send(b"".join(b'{"id": %d}\n' % n for n in range(300)))
        writer.transport.loseConnection()
        yield collecting.at(300)
        # every event was acknowledged: stopping the endless source is the normal way to end
        yield expect_stopped(sender)
    finally:
        yield listening.stopListening()
    assert sorted(e["id"] for e in collecting.events) == list(range(300))
    # the program stamps events as Logstash events are: @timestamp and @version on the wire
    assert all(e["@version"] == "1" and e["@timestamp"].endswith("Z") for e in collecting.events)
    assert "before the source was read to its end" not in sender.stdout.decode(), sender.output
    assert "not acknowledged" not in sender.stdout.decode(), sender.output


@pytest_twisted.inlineCallbacks
def test_output_whose_tcp_source_cannot_listen_says_why_and_exits_1(programs):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        sender = programs.output(
            "--hosts=127.0.0.1:9", "--ssl-enabled=false", f"--source=tcp:{port}"
        )
        status = yield sender.ended()
    finally:
        taken.close()
    assert status == 1, sender.failure(f"exited with {status}")
    assert f"cannot listen on 127.0.0.1:{port}" in sender.output, sender.output
    assert "Traceback" not in sender.output, sender.output


OUTPUT_ERRORS = [
    ((), "--hosts is required"),
    (("--hosts=127.0.0.1:9", "--source=bogus"), "--source 'bogus'"),
    (("--hosts=127.0.0.1:9", "--ssl-enabled=false", "--batch-size=0"), "--batch-size"),
    (("--hosts=[::1", "--ssl-enabled=false"), "::1"),
    (
        ("--hosts=127.0.0.1:9", "--protocol=lumberjack", "--username=u", "--password=p"),
        "--username is not available with --protocol lumberjack",
    ),
]


@pytest.mark.parametrize(("args", "message"), [OUTPUT_ERRORS[0], OUTPUT_ERRORS[-1]])
@pytest_twisted.inlineCallbacks
def test_output_configuration_error_exits_2_with_one_line(programs, args, message):
    sender = programs.output(*args)
    status = yield sender.ended()
    assert status == 2, sender.failure(f"exited with {status}")
    line = one_line(sender.stderr.decode())
    assert line.startswith("twistd logstash-output: configuration error: "), sender.output
    assert message in line, sender.output


@pytest.mark.parametrize(
    ("side", "args", "message"),
    [("input", ("--host=127.0.0.1", "--port=0", *a), m) for a, m in INPUT_ERRORS]
    + [("output", a, m) for a, m in OUTPUT_ERRORS],
)
def test_every_configuration_error_is_one_line_and_exit_2(
    capsys, monkeypatch, tmp_path, side, args, message
):
    """The same checks as the programs run them, without a process per case."""
    monkeypatch.chdir(tmp_path)  # where a default dead-letter file would be opened
    monkeypatch.delenv("LOGSTASH_PASSWORD", raising=False)
    from twisted_logstash.tap import input as input_program

    program = input_program if side == "input" else output_program
    options = program.Options()
    options.parseOptions(list(args))
    with pytest.raises(SystemExit) as raised:
        program.makeService(options)
    assert raised.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"twistd logstash-{side}: configuration error: ")
    assert message in line


# -- both programs together ------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_mutual_tls_and_basic_auth_between_the_programs(programs, tmp_path, certs):
    password = tmp_path / "password"
    password.write_text("tls-and-auth\n")
    sink = tmp_path / "received.ndjson"
    receiver, port = yield start_input(
        programs,
        "--host=127.0.0.1",
        "--port=0",
        f"--ssl-certificate={certs / 'server.crt'}",
        f"--ssl-key={certs / 'server.pkcs8.key'}",
        f"--ssl-certificate-authorities={certs / 'ca.crt'}",
        "--ssl-client-authentication=required",
        "--username=shipper",
        f"--password-file={password}",
        f"--sink=file:{sink}",
    )
    common = (
        f"--hosts=127.0.0.1:{port}",
        f"--ssl-certificate-authorities={certs / 'ca.crt'}",
        "--username=shipper",
        "--source=generator:1000",
    )
    identity = (
        f"--ssl-certificate={certs / 'client.crt'}",
        f"--ssl-key={certs / 'client.pkcs8.key'}",
    )
    # the sender's password from the environment, the receiver's from a file
    sender = programs.output(
        *common,
        *identity,
        f"--dead-letter={tmp_path / 'dead.ndjson'}",
        env={"LOGSTASH_PASSWORD": "tls-and-auth"},
    )
    yield expect_clean_exit(sender)
    assert sorted(e["sequence"] for e in read_ndjson(sink)) == list(range(1000))
    assert render(WARN_CREDENTIALS, FLAG) not in receiver.output
    assert read_ndjson(tmp_path / "dead.ndjson") == []

    # a wrong password is refused for good (401): with --on-refused continue every event is
    # dead-lettered, none dropped, and the status says so (3)
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-it\n")
    refused = programs.output(
        *common,
        *identity,
        f"--password-file={wrong}",
        f"--dead-letter={tmp_path / 'dl.ndjson'}",
        "--on-refused=continue",
    )
    status = yield refused.ended()
    assert status == 3, refused.failure(f"exited with {status}")
    records = read_ndjson(tmp_path / "dl.ndjson")
    assert sorted(r["event"]["sequence"] for r in records) == list(range(1000))
    assert {r["dead_letter"]["status"] for r in records} == {401}

    # without a client certificate the handshake fails: retried, never delivered
    stranger = programs.output(*common, f"--password-file={password}")
    yield stranger.wait_for(r"failed \(TLS handshake failed[^)]*\); retrying in")
    status = yield stranger.terminate(timeout=15.0)
    assert status == 1, stranger.failure(f"exited with {status}")
    assert len(read_ndjson(sink)) == 1000
    yield expect_stopped(receiver)


@pytest_twisted.inlineCallbacks
def test_lumberjack_output_into_lumberjack_input(programs, tmp_path):
    sink = tmp_path / "received.ndjson"
    receiver, port = yield start_input(
        programs, "--protocol=lumberjack", "--host=127.0.0.1", "--port=0", f"--sink=file:{sink}"
    )
    sender = programs.output(
        "--protocol=lumberjack", f"--hosts=127.0.0.1:{port}", "--source=generator:2000"
    )
    yield expect_clean_exit(sender)
    received = read_ndjson(sink)
    assert sorted(e["sequence"] for e in received) == list(range(2000))
    assert all(e["message"] == "Hello world!" for e in received)
    yield expect_stopped(receiver)


@pytest_twisted.inlineCallbacks
def test_lumberjack_over_mutual_tls(programs, tmp_path, certs):
    # PKCS#12 on both sides this time: keystores for the identities, a trust store
    sink = tmp_path / "received.ndjson"
    receiver, port = yield start_input(
        programs,
        "--protocol=lumberjack",
        "--host=127.0.0.1",
        "--port=0",
        "--ssl-enabled=true",
        f"--ssl-keystore-path={certs / 'server.p12'}",
        "--ssl-keystore-password=changeit",
        f"--ssl-certificate-authorities={certs / 'ca.crt'}",
        "--ssl-client-authentication=required",
        f"--sink=file:{sink}",
    )
    sender = programs.output(
        "--protocol=lumberjack",
        f"--hosts=127.0.0.1:{port}",
        "--ssl-enabled=true",
        f"--ssl-truststore-path={certs / 'truststore.p12'}",
        "--ssl-truststore-password=changeit",
        f"--ssl-keystore-path={certs / 'client.p12'}",
        "--ssl-keystore-password=changeit",
        "--source=generator:1500",
    )
    yield expect_clean_exit(sender)
    assert sorted(e["sequence"] for e in read_ndjson(sink)) == list(range(1500))
    yield expect_stopped(receiver)


@pytest.mark.slow
@pytest_twisted.inlineCallbacks
def test_demo_runs_to_the_end(programs, tmp_path):
    demo = programs.spawn("demo", [sys.executable, "-m", "twisted_logstash.demo"])
    status = yield demo.ended(timeout=120.0)
    assert status == 0, demo.failure(f"exited with {status}")
    received = read_ndjson(tmp_path / "demo-run" / "received.ndjson")
    assert len(received) == 4
    assert "all 4 events arrived" in demo.stdout.decode()
