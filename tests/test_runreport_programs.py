"""The real programs' logs, periodic and final lines, and exit statuses (issue 14): ``twistd -n``
processes, waits bounded by deadlines, never sleeps."""

from __future__ import annotations

import json
import re
import signal

import pytest
import pytest_twisted
from support_programs import closed_port, programs_fixture  # noqa: F401
from test_programs import PLAIN, read_ndjson, start_input

#: Twisted's and our own noise the issue quotes, which info level must not show
NOISE = ("starting on", "Starting factory", "Stopping factory", "b'POST'", "OutputStats(")


def lines_of(program) -> list[str]:
    return (program.stdout + b"\n" + program.stderr).decode(errors="replace").splitlines()


def assert_quiet(program) -> None:
    text = "\n".join(lines_of(program))
    for noise in NOISE:
        assert noise not in text, program.output
    assert "#debug]" not in text, program.output


@pytest_twisted.inlineCallbacks
def test_info_level_shows_no_debug_lines_and_no_noise_and_both_programs_end_with_one_line(
    programs,
):
    receiver, port = yield start_input(programs, "--protocol=lumberjack", *PLAIN, "--sink=null")
    sender = programs.output(
        "--protocol=lumberjack", f"--hosts=127.0.0.1:{port}", "--source=generator:1000"
    )
    status = yield sender.ended()
    assert status == 0, sender.output
    stopped = yield receiver.terminate()
    assert stopped == 0, receiver.output  # SIGTERM with nothing unacknowledged: 0
    for program in (sender, receiver):
        assert_quiet(program)
    assert "%|" not in sender.output  # no terminal: no progress line
    sent = [line for line in lines_of(sender) if "sent: " in line]
    assert len(sent) == 1, sender.output
    assert re.search(
        r"sent: 1000 events acknowledged in [\d.]+ s \(\d+ events/s\),"
        r" 0 dead-lettered, 0 retries$",
        sent[0],
    ), sent[0]
    received = [line for line in lines_of(receiver) if "received: " in line]
    assert len(received) == 1, receiver.output
    assert re.search(
        r"received: 1000 events acknowledged \(8 batches, \d+ connections?\) in [\d.]+ s",
        received[0],
    )


@pytest_twisted.inlineCallbacks
def test_debug_level_shows_debug_lines(programs):
    receiver, port = yield start_input(
        programs, "--protocol=lumberjack", *PLAIN, "--sink=null", "--log-level=debug"
    )
    sender = programs.output(
        "--protocol=lumberjack",
        f"--hosts=127.0.0.1:{port}",
        "--source=generator:10",
        "--log-level=DEBUG",
    )
    status = yield sender.ended()
    assert status == 0, sender.output
    assert "#debug] output stopped: OutputStats(" in sender.stdout.decode(), sender.output
    assert "LumberjackInputFactory starting on" in receiver.stdout.decode(), receiver.output


@pytest_twisted.inlineCallbacks
def test_json_log_format_is_one_object_a_line(programs):
    receiver, port = yield start_input(
        programs, "--protocol=lumberjack", *PLAIN, "--sink=null", "--log-format=json"
    )
    sender = programs.output(
        "--protocol=lumberjack",
        f"--hosts=127.0.0.1:{port}",
        "--source=generator:250",
        "--log-format=json",
    )
    status = yield sender.ended()
    assert status == 0, sender.output
    stopped = yield receiver.terminate()
    assert stopped == 0, receiver.output
    for program in (sender, receiver):
        records = [json.loads(line) for line in program.stdout.decode().splitlines()]
        assert records, program.output
        for record in records:
            assert {"@timestamp", "log.level", "log.logger", "message"} <= set(record), record
            assert record["@timestamp"].endswith("Z")
    last = [
        r
        for r in map(json.loads, sender.stdout.decode().splitlines())
        if "summary" in r.get("fields", {})
    ]
    assert len(last) == 1, sender.output
    assert last[0]["fields"]["acknowledged"] == 250
    assert last[0]["log.level"] == "info"


@pytest_twisted.inlineCallbacks
def test_stats_interval_logs_counts_on_both_programs_and_sigterm_exits_0(programs):
    receiver, port = yield start_input(programs, *PLAIN, "--sink=null", "--stats-interval=1")
    # an endless source (tcp) stopped with nothing to deliver: a clean stop
    sender = programs.output(
        f"--hosts=127.0.0.1:{port}",
        "--ssl-enabled=false",
        "--source=tcp:0",
        "--stats-interval=1",
    )
    yield receiver.wait_for(r"receiving: 0 events acknowledged in 0 batches \(\+0 in [\d.]+ s")
    yield sender.wait_for(r"sending: 0 events acknowledged \(\+0 in [\d.]+ s, 0 events/s\)")
    status = yield sender.terminate()
    assert status == 0, sender.output
    status = yield receiver.terminate()
    assert status == 0, receiver.output


@pytest_twisted.inlineCallbacks
def test_stats_interval_0_logs_no_periodic_line(programs):
    receiver, port = yield start_input(programs, *PLAIN, "--sink=null", "--stats-interval=0")
    sender = programs.output(
        f"--hosts=127.0.0.1:{port}", "--ssl-enabled=false", "--source=generator:300"
    )
    status = yield sender.ended()
    assert status == 0, sender.output
    yield receiver.terminate()
    assert "receiving:" not in receiver.output
    assert "sending:" not in sender.output


AUTH = ("--username=logstash", "--password=right")


@pytest_twisted.inlineCallbacks
def test_refused_credentials_stop_the_output_early_with_one_clear_line(programs, tmp_path):
    receiver, port = yield start_input(programs, *PLAIN, "--sink=null", *AUTH)
    dead = tmp_path / "dead.ndjson"
    sender = programs.output(
        f"--hosts=127.0.0.1:{port}",
        "--ssl-enabled=false",
        "--username=logstash",
        "--password=wrong",
        "--source=generator:100000",
        f"--dead-letter={dead}",
    )
    status = yield sender.ended()
    assert status == 1, sender.output
    lines = [line for line in lines_of(sender) if "refused our credentials" in line]
    assert len(lines) == 1, sender.output
    assert lines[0].endswith(
        f"the receiver at 127.0.0.1:{port} refused our credentials (401): check --username"
        " and --password (or --password-file); stopping without dead-lettering"
    )
    assert read_ndjson(dead) == []
    # it stopped at once: a few batches tried (those in flight), not the source's 800
    tried = receiver.stdout.decode().count("answered 401 to POST / from")
    assert 1 <= tried <= 8, receiver.output
    assert_quiet(receiver)
    assert "not delivered" in sender.stdout.decode()


@pytest_twisted.inlineCallbacks
def test_refused_credentials_with_a_disk_queue_leave_the_events_queued(programs, tmp_path):
    _receiver, port = yield start_input(programs, *PLAIN, "--sink=null", *AUTH)
    dead = tmp_path / "dead.ndjson"
    sender = programs.output(
        f"--hosts=127.0.0.1:{port}",
        "--ssl-enabled=false",
        "--username=logstash",
        "--password=wrong",
        "--source=generator:3000",
        f"--queue=disk:{tmp_path / 'queue'}",
        f"--dead-letter={dead}",
    )
    status = yield sender.ended()
    assert status == 1, sender.output
    assert "refused our credentials (401)" in sender.output
    assert re.search(
        r"stopped with \d+ events not acknowledged; they stay in the queue", sender.output
    )
    assert read_ndjson(dead) == []


@pytest_twisted.inlineCallbacks
def test_on_refused_continue_dead_letters_and_exits_3(programs, tmp_path):
    _receiver, port = yield start_input(programs, *PLAIN, "--sink=null", *AUTH)
    dead = tmp_path / "dead.ndjson"
    sender = programs.output(
        f"--hosts=127.0.0.1:{port}",
        "--ssl-enabled=false",
        "--username=logstash",
        "--password=wrong",
        "--source=generator:500",
        f"--dead-letter={dead}",
        "--on-refused=continue",
    )
    status = yield sender.ended()
    assert status == 3, sender.output  # every event handled, some dead-lettered
    assert len(read_ndjson(dead)) == 500
    assert "refused our credentials" not in sender.output
    assert re.search(r"sent: 0 events acknowledged in .*, 500 dead-lettered", sender.output)


@pytest_twisted.inlineCallbacks
def test_sigterm_with_events_unacknowledged_exits_1(programs):
    closed = closed_port()
    try:
        sender = programs.output(
            f"--hosts=127.0.0.1:{closed.getsockname()[1]}",
            "--ssl-enabled=false",
            "--source=generator:1000",
        )
        yield sender.wait_for(r"failed \(connection refused\)")
        sender.signal(signal.SIGTERM)
        status = yield sender.ended()
    finally:
        closed.close()
    assert status == 1, sender.output
    assert "1000 not delivered (of 1000 read)" in sender.output


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--log-level=loud", "--log-level takes debug, info, warn or error, not 'loud'"),
        ("--log-format=xml", "--log-format takes text or json, not 'xml'"),
        ("--stats-interval=-1", "--stats-interval must be 0 or more seconds"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_bad_operation_flags_are_configuration_errors(programs, flag, message):
    for program in (
        programs.input(*PLAIN, flag),
        programs.output("--hosts=127.0.0.1", flag),
    ):
        status = yield program.ended()
        assert status == 2, program.output
        assert message in program.stderr.decode(), program.output


@pytest_twisted.inlineCallbacks
def test_a_finite_source_on_a_terminal_shows_a_progress_line(programs):
    from support_programs import Program, twistd
    from twisted.internet import reactor

    _receiver, port = yield start_input(programs, "--protocol=lumberjack", *PLAIN, "--sink=null")
    argv = twistd(
        "logstash-output",
        "--protocol=lumberjack",
        f"--hosts=127.0.0.1:{port}",
        "--source=generator:2000",
    )
    sender = Program("logstash-output", argv, programs.cwd, programs.env())
    # standard output and error on a pseudo-terminal: --progress auto shows the line
    reactor.spawnProcess(sender, argv[0], argv, env=sender.env, path=str(programs.cwd), usePTY=True)
    programs.started.append(sender)
    status = yield sender.ended()
    assert status == 0, sender.output
    text = sender.stdout.decode(errors="replace")
    assert re.search(r"sending: +100%\|[^\r\n]*\| 2000/2000 \[", text), sender.output
    assert "2000 read, 2000 acknowledged]" in text, sender.output


@pytest_twisted.inlineCallbacks
def test_sigint_with_nothing_unacknowledged_exits_0_on_both_programs(programs):
    receiver, port = yield start_input(programs, *PLAIN, "--sink=null", "--stats-interval=1")
    sender = programs.output(
        f"--hosts=127.0.0.1:{port}", "--ssl-enabled=false", "--source=tcp:0", "--stats-interval=1"
    )
    # a periodic line comes from a timer: the reactor runs, and so do its signal handlers
    # (a signal before that is Python's KeyboardInterrupt, twistd's business)
    yield sender.wait_for(r"sending: ")
    yield receiver.wait_for(r"receiving: ")
    for program in (sender, receiver):
        program.signal(signal.SIGINT)
        status = yield program.ended()
        assert status == 0, program.output
        assert "Server Shut Down." in program.output
