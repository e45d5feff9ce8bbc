"""What the output logs when attempts keep failing for a reason the sender can explain (a hint of
transport/diagnosis.py): the hint once per host and cause, and at each retry a line with the
short reason only, not the hint sentence again at every backoff step. The real output and the
real native transmitter, on a Clock and StringTransports."""

from __future__ import annotations

from support_transmitter import StringEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure

from twisted_logstash.pipeline.output import Output
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.native.client import HttpTransmitter

HOST = Host("10.0.0.1", 9800)
AT = "the receiver at 10.0.0.1:9800"
ACK = b"2A\x00\x00\x00\x01"  # a lumberjack receiver's answer to an HTTP request


def lines(events, level: LogLevel) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_level") == level]


def failing_twice(answer):
    """An output sending one batch to HOST, whose first two attempts each get ``answer(conn)``
    on a fresh connection; fires with the log events and the output."""
    clock = Clock()
    endpoint = StringEndpoint()
    transmitter = HttpTransmitter(clock, lambda host: endpoint)
    output = Output(transmitter, [HOST], clock, batch_delay=0)
    with capturedLogs() as events:
        output.startService()
        output.send([{"message": "hint"}])
        for _ in range(2):
            assert endpoint.connections, "no attempt"
            answer(endpoint.connections[-1])
            clock.advance(1)  # past the retry's backoff (0.1 s, then 0.2 s)
    assert len(endpoint.connections) == 3  # two failed attempts, a third under way
    return events, output


def retry_lines(events) -> list[str]:
    return [line for line in lines(events, LogLevel.warn) if "retrying in" in line]


def test_a_hinted_failure_twice_gives_the_hint_once_and_two_short_retry_lines():
    events, output = failing_twice(lambda connection: connection.dataReceived(ACK))
    hint = f"{AT} does not speak HTTP: is it a beats/lumberjack input? use --protocol lumberjack"
    assert lines(events, LogLevel.error) == [hint]
    short = f"bad response: not an HTTP response (it starts with {ACK!r})"
    assert retry_lines(events) == [
        f"sending 1 events to {HOST} failed ({short}); retrying in 0.1 s",
        f"sending 1 events to {HOST} failed ({short}); retrying in 0.2 s",
    ]
    # the host's isolation says what happened, the hint having been said just before it
    isolated = [line for line in lines(events, LogLevel.info) if "isolated" in line]
    assert isolated == [f"host {HOST} isolated for 60 s: {short}"]
    # the final line keeps the whole reason, hint included (said once, at the end), and the
    # metrics keep their short bounded key
    assert output.balancer.isolations() == [(str(HOST), 1, f"{short}; {hint}")]
    assert output.balancer.record(HOST).failures == {"protocol": 2}


def test_a_bare_close_hinted_the_second_time_keeps_short_retry_lines_too():
    def close(connection):
        connection.connectionLost(Failure(ConnectionDone()))

    events, _ = failing_twice(close)
    errors = lines(events, LogLevel.error)
    assert len(errors) == 1 and errors[0].startswith(f"{AT} closed the connection"), errors
    short = "connection closed before any response byte: closed by the server"
    assert [line.split(" failed ")[1] for line in retry_lines(events)] == [
        f"({short}); retrying in 0.1 s",
        f"({short}); retrying in 0.2 s",
    ]
