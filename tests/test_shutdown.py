"""Graceful shutdown of the real programs on SIGTERM, on both wires.

The input stops accepting, answers the requests under way (even one whose sink is slow) and
exits. The output lets its batches in flight finish and stops: with a memory queue, the events
not acknowledged are reported lost (exit status 1); with a disk queue they stay queued and the
next start sends them, and nothing acknowledged is sent or lost.

A slow sink is a real one: the input writes its events to its standard output, and the test
stops reading that pipe, so the input's write blocks until the test reads again. Every wait is
on a log line, a response or a process exit, each bounded.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import orjson
import pytest
import pytest_twisted
from support_http import connect, logstash_body, manticore_request
from support_programs import Program, programs_fixture, twistd  # noqa: F401
from twisted.internet import defer, error

TESTS = Path(__file__).resolve().parent
PLAIN = ("--host=127.0.0.1", "--port=0", "--ssl-enabled=false")
EVENTS = 20_000


def sink_events(program: Program) -> list[dict]:
    """The events an input wrote to its standard output (log lines are skipped)."""
    return [
        orjson.loads(line) for line in bytes(program.stdout).splitlines() if line.startswith(b"{")
    ]


def write_events(path, count: int) -> None:
    path.write_bytes(
        b"".join(orjson.dumps({"id": n, "message": f"event {n}"}) + b"\n" for n in range(count))
    )


def acknowledged(program: Program) -> int:
    """The acknowledged count of the line the output ends with."""
    found = re.findall(r"sent: (\d+) events acknowledged", bytes(program.stdout).decode())
    assert found, program.output
    return int(found[-1])


# -- logstash-input ----------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_input_stops_accepting_and_answers_the_request_under_way(programs, tmp_path):
    sink = tmp_path / "received.ndjson"
    receiver = programs.input(*PLAIN, f"--sink=file:{sink}")
    port = yield receiver.wait_port()
    events = [{"id": n, "message": f"in flight {n}"} for n in range(50)]
    request = manticore_request(logstash_body(events), extra=b"Expect: 100-continue\r\n")
    head, body = request.split(b"\r\n\r\n", 1)
    client = yield connect(port)
    client.send(head + b"\r\n\r\n")
    yield client.wait_bytes(b"100 Continue")  # the input holds a request under way
    client.send(body[:10])

    receiver.signal(signal.SIGTERM)
    yield receiver.wait_for(rb"\(TCP Port \d+ Closed\)")
    try:
        late = yield connect(port)
    except error.ConnectError:
        pass  # refused: nothing listens any more
    else:  # accepted by the kernel just before the close: it is cut, never served
        late.send(manticore_request(logstash_body([{"id": "late"}])))
        yield late.wait_closed()
        assert late.received == b""

    client.send(body[10:])  # the request under way completes after the SIGTERM
    yield client.wait_closed()
    assert b"HTTP/1.1 200 OK" in client.received
    assert b"Connection: close" in client.received
    status = yield receiver.ended()
    assert status == 0, receiver.output
    received = [orjson.loads(line) for line in sink.read_bytes().splitlines()]
    assert [e["id"] for e in received] == list(range(50))
    assert all(e["id"] != "late" for e in received)


@pytest.mark.parametrize(
    "unbuffered",
    [
        pytest.param("", id="buffered"),
        pytest.param("1", id="unbuffered"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_input_answers_a_request_whose_sink_is_slow_then_exits(programs, tmp_path, unbuffered):
    receiver = programs.spawn(
        "logstash-input",
        twistd("--logger=support_stderrlog.observer", "logstash-input", *PLAIN, "--sink=stdout"),
        env={"PYTHONPATH": str(TESTS), "PYTHONUNBUFFERED": unbuffered},
    )
    port = yield receiver.wait_port()
    stdout = receiver.transport.pipes[1]
    # Once the first event came out, stop reading: the rest of the batch (far more than a pipe
    # holds) waits in the input's write, inside the sink.
    blocked = receiver.wait_for(rb'"id":0[,}]')
    blocked.addCallback(lambda _: stdout.stopReading())
    events = [{"id": n, "message": "slow sink " + "x" * 80} for n in range(4000)]
    client = yield connect(port)
    answered = client.request(manticore_request(logstash_body(events)))
    yield blocked

    receiver.signal(signal.SIGTERM)
    yield receiver.wait_for(rb"Received SIGTERM")  # logged on stderr, read while stdout waits
    assert not answered.called
    stdout.startReading()  # the sink takes the rest now
    response = yield answered
    assert response.status == 200
    status = yield receiver.ended()
    assert status == 0, receiver.output
    written = bytes(receiver.stdout).splitlines()
    whole = [orjson.loads(line) for line in written if line.endswith(b"}")]
    assert len(whole) == len(written) == 4000, f"{len(whole)} whole lines of {len(written)}"
    assert [e["id"] for e in whole] == list(range(4000))


@pytest_twisted.inlineCallbacks
def test_lumberjack_input_acks_a_window_whose_sink_is_slow_then_exits(programs):
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint

    from twisted_logstash.transport.hosts import Host
    from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter

    receiver = programs.spawn(
        "logstash-input",
        twistd(
            "--logger=support_stderrlog.observer",
            "logstash-input",
            "--protocol=lumberjack",
            *PLAIN,
            "--sink=stdout",
        ),
        env={"PYTHONPATH": str(TESTS)},
    )
    port = yield receiver.wait_port()
    stdout = receiver.transport.pipes[1]
    blocked = receiver.wait_for(rb'"id":0[,}]')
    blocked.addCallback(lambda _: stdout.stopReading())
    transmitter = LumberjackTransmitter(
        reactor, lambda host: TCP4ClientEndpoint(reactor, host.host, host.port), timeout=30.0
    )
    events = [{"id": n, "message": "slow sink " + "x" * 80} for n in range(4000)]
    payload = transmitter.encode(events)
    acked = transmitter.transmit(Host("127.0.0.1", port), payload)
    yield blocked

    receiver.signal(signal.SIGTERM)
    yield receiver.wait_for(rb"Received SIGTERM")
    assert not acked.called
    stdout.startReading()
    try:
        yield acked  # the window the sink was writing is finished and acknowledged
    finally:
        yield transmitter.close()
    status = yield receiver.ended()
    assert status == 0, receiver.output
    written = bytes(receiver.stdout).splitlines()
    assert [orjson.loads(line)["id"] for line in written] == list(range(4000))


# -- logstash-output ---------------------------------------------------------------------------


@defer.inlineCallbacks
def output_stopped_while_batches_are_in_flight(programs, tmp_path, wire: str, *queue: str):
    """An output whose receiver holds its batches in flight gets SIGTERM; the receiver then
    answers them. Fires with (receiver, sender, args) once the output exited."""
    source = tmp_path / "events.ndjson"
    write_events(source, EVENTS)
    receiver = programs.input(f"--protocol={wire}", *PLAIN, "--sink=stdout")
    port = yield receiver.wait_port()
    held = receiver.wait_for(rb'"id":3000[,}]')
    held.addCallback(lambda _: receiver.transport.pauseProducing())
    args = (
        f"--protocol={wire}",
        f"--hosts=127.0.0.1:{port}",
        "--ssl-enabled=false",
        f"--source=file:{source}",
        f"--dead-letter={tmp_path / 'dead.ndjson'}",
        *queue,
    )
    sender = programs.output(*args)
    yield held
    sender.signal(signal.SIGTERM)
    yield sender.wait_for(rb"Received SIGTERM")
    assert sender.running  # it waits for the batches in flight
    receiver.transport.resumeProducing()  # the receiver writes them and answers
    yield sender.ended()
    return receiver, sender, args


WIRES = pytest.mark.parametrize("wire", ["http", "lumberjack"])


@WIRES
@pytest_twisted.inlineCallbacks
def test_output_memory_queue_finishes_batches_in_flight_and_reports_the_rest_lost(
    programs, tmp_path, wire
):
    receiver, sender, _ = yield output_stopped_while_batches_are_in_flight(programs, tmp_path, wire)
    assert sender.status == 1, sender.output
    log = bytes(sender.stdout).decode()
    assert "they are lost" in log, sender.output
    assert "events not acknowledged" in log, sender.output
    stopped = yield receiver.terminate()
    assert stopped == 0, receiver.output
    ids = {e["id"] for e in sink_events(receiver)}
    done = acknowledged(sender)
    # The batches in flight at the SIGTERM were answered and acknowledged, and nothing else
    # was reported delivered: what the output acknowledged is exactly what the input holds.
    assert 3000 < done < EVENTS
    assert len(ids) == done


@WIRES
@pytest_twisted.inlineCallbacks
def test_output_disk_queue_keeps_what_was_not_acknowledged_for_the_next_run(
    programs, tmp_path, wire
):
    queue = f"--queue=disk:{tmp_path / 'queue'}"
    receiver, sender, args = yield output_stopped_while_batches_are_in_flight(
        programs, tmp_path, wire, queue
    )
    assert sender.status == 1, sender.output  # stopped before everything was delivered
    assert "they stay in the queue" in bytes(sender.stdout).decode(), sender.output
    first = acknowledged(sender)
    assert 3000 < first < EVENTS

    again = programs.output(*args)
    status = yield again.ended()
    assert status == 0, again.output
    stopped = yield receiver.terminate()
    assert stopped == 0, receiver.output
    # Every event exactly once: the acknowledged ones were not sent again, the others were
    # taken from the queue or read on from the file's stored position.
    assert sorted(e["id"] for e in sink_events(receiver)) == list(range(EVENTS))
    assert first + acknowledged(again) == EVENTS
