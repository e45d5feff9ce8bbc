"""Operating ``twistd -n logstash-pipeline`` (issue 14): its log flags, its periodic and final
lines, its exit statuses, a stop by a signal, and ``/metrics`` and ``/health`` for every plugin of
the pipeline. Real processes on 127.0.0.1; every wait is bounded (a line, an exit, a scrape)."""

from __future__ import annotations

import json
import re
import signal

import pytest_twisted
from support_programs import closed_port, programs_fixture, twistd  # noqa: F401
from test_metrics import get
from test_metrics_programs import METRICS, scrape, until
from test_programs import PLAIN, read_ndjson, start_input


def pipeline(programs, name: str, text: str, *flags: str, env=None):
    """``twistd -n logstash-pipeline -e TEXT FLAGS``."""
    return programs.spawn(name, twistd("logstash-pipeline", "-e", text, *flags), env)


def lines_of(program) -> list[str]:
    return (program.stdout + b"\n" + program.stderr).decode(errors="replace").splitlines()


def receiver_text(out) -> str:
    return (
        'input { logstash { host => "127.0.0.1" port => 0 ssl_enabled => false } }'
        f' output {{ file {{ path => "{out}" }} }}'
    )


def sender_text(port: int, count: int, extra: str = "") -> str:
    return (
        f"input {{ generator {{ count => {count} }} }}"
        f' output {{ logstash {{ hosts => "127.0.0.1:{port}" ssl_enabled => false {extra} }} }}'
    )


@pytest_twisted.inlineCallbacks
def test_metrics_health_lines_and_a_clean_stop_by_sigint(programs, tmp_path):
    out = tmp_path / "out.ndjson"
    receiver = pipeline(
        programs, "receiver", receiver_text(out), "--metrics-port=0", "--stats-interval=1"
    )
    port = yield receiver.wait_port()
    metrics = int((yield receiver.wait_for(METRICS)).group(1))
    status, text, _ = yield get(metrics, "/health")
    assert (status, text) == (200, "ok\n")
    sender = pipeline(programs, "sender", sender_text(port, 300), "--log-format=json")
    assert (yield sender.ended()) == 0, sender.output
    plugin = (("plugin", "logstash@1:9"),)
    got = yield until(
        metrics,
        lambda got: got.get(("logstash_input_events_acknowledged_total", plugin)) == 300,
        "300 events acknowledged",
    )
    assert got[("logstash_input_events_received_total", plugin)] == 300
    yield receiver.wait_for(r"receiving: 300 events acknowledged in \d+ batch")
    receiver.signal(signal.SIGINT)
    assert (yield receiver.ended()) == 0, receiver.output
    assert len(read_ndjson(out)) == 300
    received = [line for line in lines_of(receiver) if "received: " in line]
    assert len(received) == 1, receiver.output
    assert re.search(
        r"received: 300 events acknowledged \(\d+ batch(es)?, \d+ connections?\) in [\d.]+ s",
        received[0],
    ), received[0]
    # the sender logged JSON, one object a line, and ended with one summary
    records = [json.loads(line) for line in sender.stdout.decode().splitlines()]
    assert all({"@timestamp", "log.level", "message"} <= set(r) for r in records)
    last = [r for r in records if "summary" in r.get("fields", {})]
    assert len(last) == 1, sender.output
    assert last[0]["fields"]["acknowledged"] == 300
    assert re.match(
        r"received: 300 events acknowledged \(\d+ batch(es)?\) in [\d.]+ s \(\d+(\.\d)? events/s\)"
        r"; sent: 300 events acknowledged in [\d.]+ s \(\d+(\.\d)? events/s\),"
        r" 0 dead-lettered, 0 retries$",
        last[0]["message"],
    ), last[0]["message"]


@pytest_twisted.inlineCallbacks
def test_log_level_in_logstash_spelling(programs, tmp_path):
    text = f'input {{ generator {{ count => 3 }} }} output {{ file {{ path => "{tmp_path}/o" }} }}'
    trace = pipeline(programs, "trace", text, "--log.level=trace")
    assert (yield trace.ended()) == 0, trace.output
    # Twisted's chatter is debug here (logs.py): shown at trace (debug), hidden at info
    assert "reactor class: " in trace.stdout.decode(), trace.output
    quiet = pipeline(programs, "quiet", text, "--log.level", "warn")
    assert (yield quiet.ended()) == 0, quiet.output
    assert "received:" not in quiet.output  # an info line
    info = pipeline(programs, "info", text)
    assert (yield info.ended()) == 0, info.output
    assert "reactor class: " not in info.output
    assert len([line for line in lines_of(info) if "received: 3 events" in line]) == 1


@pytest_twisted.inlineCallbacks
def test_a_bad_log_flag_is_a_configuration_error(programs):
    program = pipeline(
        programs, "bad", "input { stdin { } } output { stdout { } }", "--log.level=verbose"
    )
    assert (yield program.ended()) == 2, program.output
    assert program.stderr.decode().splitlines() == [
        "twistd logstash-pipeline: configuration error: --log.level takes trace, debug, info,"
        " warn, error or fatal, not 'verbose'"
    ]


@pytest_twisted.inlineCallbacks
def test_refused_credentials_dead_letter_and_exit_3(programs, tmp_path):
    receiver, port = yield start_input(
        programs, *PLAIN, "--sink=null", "--username=logstash", "--password=right"
    )
    sender = pipeline(
        programs, "sender", sender_text(port, 10, 'username => "logstash" password => "wrong"')
    )
    assert (yield sender.ended()) == 3, sender.output
    assert len(read_ndjson(tmp_path / "dead-letter.ndjson")) == 10
    assert re.search(
        r"sent: 0 events acknowledged in [\d.]+ s \(0 events/s\), 10 dead-lettered", (sender.output)
    )
    yield receiver.terminate()


@pytest_twisted.inlineCallbacks
def test_health_is_503_once_an_output_has_every_host_isolated(programs):
    refusing = closed_port()
    host = f"127.0.0.1:{refusing.getsockname()[1]}"
    try:
        text = f'input {{ generator {{ count => 0 }} }} output {{ logstash {{ hosts => "{host}"'
        text += ' ssl_enabled => false id => "down" } }'
        program = pipeline(programs, "down", text, "--metrics-port", "0")
        metrics = int((yield program.wait_for(METRICS)).group(1))
        yield program.wait_for(rf"host {re.escape(host)} isolated for 60 s: ")
        label = (("host", host), ("plugin", "down"))
        yield until(
            metrics,
            lambda got: got.get(("logstash_output_host_isolated", label)) == 1,
            "the host isolated",
        )
        status, body, _ = yield get(metrics, "/health")
        assert (status, body) == (503, f"down: every host is isolated: {host}\n")
        got = yield scrape(metrics)
        assert got[("logstash_output_events_queued_total", (("plugin", "down"),))] > 0
        assert (yield program.terminate()) == 1, program.output  # events not delivered
    finally:
        refusing.close()
    assert "events not acknowledged by any receiver" in program.output
