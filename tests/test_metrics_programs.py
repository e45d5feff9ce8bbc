"""``--metrics-port`` on the real programs (``twistd -n``): the parent of ``logstash-input
--workers 2`` serves the sum of its workers, also after a worker was restarted, and
``logstash-output`` serves its metrics and health while it runs. Every wait is bounded."""

from __future__ import annotations

import os
import re
import signal

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from support_http import connect
from support_lumberjack import ack, json_frame, window
from support_programs import TIMEOUT, closed_port, programs_fixture  # noqa: F401
from test_metrics import get
from twisted.internet import defer, reactor, task

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.metrics.program import metrics_address

METRICS = r"metrics on http://127\.0\.0\.1:(\d+)/metrics"


def scrape_text(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@defer.inlineCallbacks
def scrape(port: int) -> dict:
    status, text, _ = yield get(port, "/metrics")
    assert status == 200, text
    return scrape_text(text)


@defer.inlineCallbacks
def until(port: int, predicate, what: str, timeout: float = TIMEOUT):
    """Scrape ``port`` until ``predicate(scrape)`` holds (workers report once a second);
    fails after ``timeout`` seconds with the last scrape."""
    deadline = reactor.seconds() + timeout
    while True:
        got = yield scrape(port)
        if predicate(got):
            return got
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what} not seen within {timeout} s: {got}")
        yield task.deferLater(reactor, 0.2, lambda: None)


def received(got: dict) -> float:
    return got.get(("logstash_input_events_received_total", ()), -1)


@defer.inlineCallbacks
def send(programs, port: int, count: int):
    output = programs.output(
        "--hosts",
        f"127.0.0.1:{port}",
        "--ssl-enabled",
        "false",
        "--source",
        f"generator:{count}",
    )
    status = yield output.ended()
    assert status == 0, output.output


@pytest_twisted.inlineCallbacks
def test_the_parent_of_two_workers_serves_their_sum_across_a_restart(programs):
    program = programs.input(
        "--ssl-enabled", "false", "--port", "0", "--sink", "null",
        "--metrics-port", "0", "--workers", "2",
    )  # fmt: skip
    port = yield program.wait_port()
    metrics = int((yield program.wait_for(METRICS)).group(1))
    yield program.wait_for(r"worker 1 \(pid \d+\): input listening")
    yield program.wait_for(r"worker 2 \(pid \d+\): input listening")
    status, text, _ = yield get(metrics, "/health")
    assert (status, text) == (200, "ok\n")

    yield send(programs, port, 1000)
    got = yield until(metrics, lambda got: received(got) == 1000, "1000 events")
    assert got[("logstash_input_events_acknowledged_total", ())] == 1000
    assert got[("logstash_input_requests_total", ())] == 8
    assert got[("logstash_input_workers", ())] == 2

    # a worker stops and is started again: its counts stay, and are not counted twice
    pid = int((yield program.wait_for(r"worker 1 started \(pid (\d+)\)")).group(1))
    os.kill(pid, signal.SIGTERM)
    restarted = rf"(?s)\(pid {pid}\) exited with status 0.*?worker 1 started \(pid (\d+)\)"
    yield program.wait_for(restarted + r".*?worker 1 \(pid \1\): input listening")
    got = yield scrape(metrics)
    assert received(got) == 1000
    assert got[("logstash_input_workers", ())] == 2

    yield send(programs, port, 500)
    got = yield until(metrics, lambda got: received(got) == 1500, "1500 events")
    assert got[("logstash_input_events_acknowledged_total", ())] == 1500
    assert got[("logstash_input_connections_open", ())] == 0

    status = yield program.terminate()
    assert status == 0, program.output
    counts = [int(n) for n in re.findall(rb"stopped: (\d+) events acknowledged", program.stdout)]
    assert sum(counts) == 1500, program.output  # the workers' own lines say the same


@pytest_twisted.inlineCallbacks
def test_logstash_input_counts_what_the_framed_test_client_sends(programs):
    program = programs.input(
        "--protocol", "lumberjack", "--port", "0", "--sink", "null", "--metrics-port", "0",
    )  # fmt: skip
    port = yield program.wait_port()
    metrics = int((yield program.wait_for(METRICS)).group(1))
    client = yield connect(port)
    try:
        data = b"".join(
            window(2) + json_frame(seq, b'{"n":%d}' % seq) + json_frame(seq + 1, b"{}")
            for seq in (1, 3)
        )
        client.send(data)
        yield client.wait_bytes(ack(4))
        got = yield scrape(metrics)
        assert got[("logstash_input_connections_open", ())] == 1
    finally:
        client.transport.loseConnection()
        yield client.wait_closed()
    assert received(got) == 4
    assert got[("logstash_input_events_acknowledged_total", ())] == 4
    assert got[("logstash_input_windows_total", ())] == 2
    assert got[("logstash_input_received_bytes_total", ())] == len(data)
    assert got[("logstash_input_sent_bytes_total", ())] == len(ack(2) + ack(4))
    assert got[("logstash_input_sink_seconds_count", ())] == 2
    yield program.terminate()


@pytest_twisted.inlineCallbacks
def test_logstash_output_serves_metrics_and_health_while_it_runs(programs):
    refusing = closed_port()
    host = f"127.0.0.1:{refusing.getsockname()[1]}"
    try:
        program = programs.output(
            "--hosts", host, "--ssl-enabled", "false", "--source", "generator:0",
            "--metrics-port", "0",
        )  # fmt: skip
        metrics = int((yield program.wait_for(METRICS)).group(1))
        yield program.wait_for(rf"host {re.escape(host)} isolated for 60 s: ")
        got = yield until(
            metrics,
            lambda got: got.get(("logstash_output_host_isolated", (("host", host),))) == 1,
            "the host isolated",
        )
        failures = got[
            ("logstash_output_host_failures_total", (("host", host), ("reason", "refused")))
        ]
        assert failures >= 1
        assert got[("logstash_output_host_isolations_total", (("host", host),))] == 1
        assert got[("logstash_output_events_queued_total", ())] > 0
        status, text, _ = yield get(metrics, "/health")
        assert (status, text) == (503, f"every host is isolated: {host}\n")
        yield program.terminate()
    finally:
        refusing.close()


def test_metrics_flags_are_checked():
    assert metrics_address({}) is None
    assert metrics_address({"metrics_port": "0"}) == ("127.0.0.1", 0)
    assert metrics_address({"metrics_port": "9600", "metrics_host": "::1"}) == ("::1", 9600)
    for options, message in [
        ({"metrics_host": "0.0.0.0"}, "--metrics-host needs --metrics-port"),
        ({"metrics_port": "x"}, "--metrics-port takes a whole number, not 'x'"),
        ({"metrics_port": "70000"}, "--metrics-port must be from 0 to 65535, not 70000"),
    ]:
        with pytest.raises(ConfigurationError) as raised:
            metrics_address(options)
        assert str(raised.value) == message
