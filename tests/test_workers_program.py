"""``twistd -n logstash-input --workers 2`` as a real program, on both wires: real processes,
real sockets on 127.0.0.1, every wait bounded, no sleeps.

Which worker takes a connection is the kernel's choice; to show that both take connections
without relying on luck, a worker is stopped (SIGSTOP) while a sender runs, so the other must
take them all, then the other way round. Each worker logs how many events it acknowledged when
it drains: those counts are read after SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal

import orjson
import pytest
import pytest_twisted
from support_programs import Program, programs_fixture  # noqa: F401
from support_tls import certs  # noqa: F401
from twisted.internet import defer, endpoints, protocol, reactor, task

PLAIN = ("--host=127.0.0.1", "--port=0")
WIRES = {
    "native": ("--ssl-enabled=false",),
    "framed": ("--protocol=lumberjack",),
}
TIMEOUT = 30.0


def read_ndjson(path) -> list[dict]:
    """Every line of ``path``, parsed: a line that does not parse (two batches mixed) fails."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n")
    return [orjson.loads(line) for line in data.split(b"\n")[:-1]]


def events_file(path, sender: str, count: int):
    path.write_bytes(
        b"".join(orjson.dumps({"sender": sender, "n": n, "pad": "x" * 200}) + b"\n"
                 for n in range(count))
    )  # fmt: skip
    return path


@defer.inlineCallbacks
def start_workers(programs, *args):
    """A running ``--workers 2`` input: fires with (program, port, {number: pid})."""
    program = programs.input(*PLAIN, "--workers=2", *args)
    port = yield program.wait_port()
    pids = {}
    for number in (1, 2):
        match = yield program.wait_for(rf"worker {number} \(pid (\d+)\): input listening on")
        pids[number] = int(match.group(1))
    assert re.search(r"input listening on 127\.0\.0\.1:\d+ with 2 workers", program.output)
    return program, port, pids


@defer.inlineCallbacks
def send(programs, port: int, source, *args, wire: str = "native"):
    """Run an output sending ``source`` (a file) to ``port``; fires once it exited 0."""
    flags = ("--protocol=lumberjack",) if wire == "framed" else ("--ssl-enabled=false",)
    sender = programs.output(
        f"--hosts=127.0.0.1:{port}", *flags, f"--source=file:{source}", "--batch-size=50", *args
    )
    status = yield sender.ended(TIMEOUT)
    assert status == 0, sender.failure(f"exited with {status}")


@defer.inlineCallbacks
def stop_and_count(program: Program, pids: dict[int, int]):
    """SIGTERM the parent: it exits 0 once every worker drained; fires with each worker's
    count of acknowledged events, from its last log line."""
    status = yield program.terminate(TIMEOUT)
    assert status == 0, program.failure(f"exited with {status} on SIGTERM")
    counts = {}
    for number, pid in pids.items():
        match = re.search(
            rf"worker {number} \(pid {pid}\): stopped: (\d+) events acknowledged".encode(),
            program.stdout,
        )
        assert match, program.output
        counts[number] = int(match.group(1))
        assert f"worker {number} (pid {pid}) exited with status 0" in program.output
    return counts


def gone(pid: int) -> bool:
    """The process ended (reaped, or a zombie waiting for its new parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def poll(check, timeout: float = TIMEOUT, every: float = 0.05) -> defer.Deferred:
    """Fires once ``check()`` is true; fails after ``timeout`` seconds (polling, no sleep)."""
    d: defer.Deferred = defer.Deferred()
    deadline = reactor.seconds() + timeout

    def tick():
        if check():
            loop.stop()
            d.callback(None)
        elif reactor.seconds() > deadline:
            loop.stop()
            d.errback(AssertionError(f"not true within {timeout} s: {check}"))

    loop = task.LoopingCall(tick)
    loop.start(every)
    return d


@pytest.mark.parametrize("wire", ["native", "framed"])
@pytest_twisted.inlineCallbacks
def test_two_workers_take_connections_and_every_event_lands_once(programs, tmp_path, wire):
    sink = tmp_path / "received.ndjson"
    program, port, pids = yield start_workers(programs, *WIRES[wire], f"--sink=file:{sink}")
    expected = set()
    try:
        # worker 1 stopped: worker 2 must take every connection; then the other way round
        for stopped, sender in ((1, "a"), (2, "b")):
            os.kill(pids[stopped], signal.SIGSTOP)
            try:
                source = events_file(tmp_path / f"{sender}.ndjson", sender, 400)
                yield send(programs, port, source, wire=wire)
            finally:
                os.kill(pids[stopped], signal.SIGCONT)
            expected |= {(sender, n) for n in range(400)}
        # both running, several senders (each with several connections) at once
        senders = []
        for sender in ("c", "d", "e"):
            source = events_file(tmp_path / f"{sender}.ndjson", sender, 1000)
            senders.append(send(programs, port, source, "--max-in-flight=4", wire=wire))
            expected |= {(sender, n) for n in range(1000)}
        yield defer.gatherResults(senders, consumeErrors=True)
    finally:
        for pid in pids.values():
            os.kill(pid, signal.SIGCONT)
    counts = yield stop_and_count(program, pids)
    received = [(e["sender"], e["n"]) for e in read_ndjson(sink)]
    assert len(received) == len(expected) and set(received) == expected  # each once
    assert sum(counts.values()) == len(expected)
    assert counts[1] >= 400 and counts[2] >= 400, counts


@pytest_twisted.inlineCallbacks
def test_a_killed_worker_is_logged_and_restarted_and_the_port_keeps_accepting(programs, tmp_path):
    sink = tmp_path / "received.ndjson"
    program, port, pids = yield start_workers(programs, *WIRES["native"], f"--sink=file:{sink}")
    killed = pids[1]
    # the parent is held (SIGSTOP) so that it cannot restart worker 1 yet: with worker 1 dead,
    # the port must keep accepting, worker 2 taking every connection
    program.signal(signal.SIGSTOP)
    try:
        os.kill(killed, signal.SIGKILL)
        yield poll(lambda: gone(killed))
        yield send(programs, port, events_file(tmp_path / "a.ndjson", "a", 300))
    finally:
        program.signal(signal.SIGCONT)
    yield program.wait_for(rf"worker 1 \(pid {killed}\) was killed by SIGKILL after [\d.]+ s; "
                           r"restarting it in [\d.]+ s")  # fmt: skip
    match = yield program.wait_for(rf"worker 1 started \(pid (?!{killed}\))(\d+)\)")
    pids[1] = int(match.group(1))
    yield program.wait_for(rf"worker 1 \(pid {pids[1]}\): input listening on")
    # the restarted worker takes connections too
    os.kill(pids[2], signal.SIGSTOP)
    try:
        yield send(programs, port, events_file(tmp_path / "b.ndjson", "b", 500))
    finally:
        os.kill(pids[2], signal.SIGCONT)
    counts = yield stop_and_count(program, pids)
    assert counts == {1: 500, 2: 300}
    received = sorted((e["sender"], e["n"]) for e in read_ndjson(sink))
    assert received == [("a", n) for n in range(300)] + [("b", n) for n in range(500)]


@pytest_twisted.inlineCallbacks
def test_workers_with_mutual_tls_and_basic_auth(programs, tmp_path, certs):  # noqa: F811
    password = tmp_path / "password"
    password.write_text("tls-and-auth\n")
    sink = tmp_path / "received.ndjson"
    program, port, pids = yield start_workers(
        programs,
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
        f"--ssl-certificate={certs / 'client.crt'}",
        f"--ssl-key={certs / 'client.pkcs8.key'}",
        "--username=shipper",
        "--batch-size=50",
    )
    expected = set()
    for stopped, sender in ((1, "a"), (2, "b")):  # each worker in turn takes the connections
        os.kill(pids[stopped], signal.SIGSTOP)
        try:
            source = events_file(tmp_path / f"{sender}.ndjson", sender, 300)
            ok = programs.output(
                *common,
                f"--password-file={password}",
                f"--source=file:{source}",
                f"--dead-letter={tmp_path / 'dead.ndjson'}",
            )
            status = yield ok.ended(TIMEOUT)
            assert status == 0, ok.failure(f"exited with {status}")
            # a wrong password is refused (401) by the worker that runs: dead-lettered with
            # --on-refused continue (exit status 3)
            wrong = tmp_path / "wrong"
            wrong.write_text("not-it\n")
            refused = programs.output(
                *common,
                f"--password-file={wrong}",
                f"--source=file:{source}",
                f"--dead-letter={tmp_path / f'refused-{sender}.ndjson'}",
                "--on-refused=continue",
            )
            status = yield refused.ended(TIMEOUT)
            assert status == 3, refused.failure(f"exited with {status}")
            records = read_ndjson(tmp_path / f"refused-{sender}.ndjson")
            assert {r["dead_letter"]["status"] for r in records} == {401}
            assert len(records) == 300
        finally:
            os.kill(pids[stopped], signal.SIGCONT)
        expected |= {(sender, n) for n in range(300)}
    counts = yield stop_and_count(program, pids)
    assert counts == {1: 300, 2: 300}
    received = [(e["sender"], e["n"]) for e in read_ndjson(sink)]
    assert len(received) == 600 and set(received) == expected
    assert not (tmp_path / "dead.ndjson").exists() or read_ndjson(tmp_path / "dead.ndjson") == []


@pytest_twisted.inlineCallbacks
def test_workers_write_whole_batches_on_a_shared_stdout(programs, tmp_path):
    program, port, _pids = yield start_workers(programs, *WIRES["native"], "--sink=stdout")
    senders = [
        send(programs, port, events_file(tmp_path / f"{s}.ndjson", s, 1000), "--max-in-flight=4")
        for s in ("a", "b")
    ]
    yield defer.gatherResults(senders, consumeErrors=True)
    status = yield program.terminate(TIMEOUT)
    assert status == 0, program.failure(f"exited with {status}")
    lines = bytes(program.stdout).split(b"\n")
    assert lines[-1] == b""
    received = [orjson.loads(line) for line in lines[:-1]]  # only events, each whole
    assert sorted((e["sender"], e["n"]) for e in received) == [
        (s, n) for s in ("a", "b") for n in range(1000)
    ]
    assert b"stopped: " in program.stderr  # the log went to standard error


@pytest_twisted.inlineCallbacks
def test_workers_end_when_their_parent_is_killed(programs, tmp_path):
    program, _port, pids = yield start_workers(
        programs, *WIRES["native"], f"--sink=file:{tmp_path / 'e.ndjson'}"
    )
    program.signal(signal.SIGKILL)
    status = yield program.ended(TIMEOUT)
    assert status == -signal.SIGKILL
    yield poll(lambda: all(gone(pid) for pid in pids.values()))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "--workers must be at least 1 (or auto), not 0"),
        ("x", "--workers takes a whole number of at least 1 or auto, not 'x'"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_workers_mistakes_are_one_line_and_exit_2(programs, value, message):
    program = programs.input(*PLAIN, *WIRES["native"], f"--workers={value}")
    status = yield program.ended(TIMEOUT)
    assert status == 2, program.failure(f"exited with {status}")
    lines = program.stderr.decode().strip().splitlines()
    assert lines == [f"twistd logstash-input: configuration error: {message}"], program.output
    assert b"listening" not in program.stdout


@pytest_twisted.inlineCallbacks
def test_workers_on_a_taken_port_fail_once_before_any_worker_starts(programs):
    import socket

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    try:
        program = programs.input(
            "--host=127.0.0.1", f"--port={held.getsockname()[1]}", "--workers=2",
            *WIRES["native"],
        )  # fmt: skip
        status = yield program.ended(TIMEOUT)
    finally:
        held.close()
    assert status == 1, program.failure(f"exited with {status}")
    assert program.output.count("cannot listen on 127.0.0.1:") == 1, program.output
    assert "worker 1 started" not in program.output


class Raw(protocol.Protocol):
    """A client writing raw bytes: ``wait_for(data)`` fires once ``data`` was received, and
    ``answer`` with everything received once the connection closed."""

    def __init__(self):
        self.received = b""
        self.answer: defer.Deferred = defer.Deferred()
        self._waiting: list[tuple[bytes, defer.Deferred]] = []

    def wait_for(self, data: bytes) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._waiting.append((data, d))
        self.dataReceived(b"")
        return d.addTimeout(TIMEOUT, reactor)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for item in list(self._waiting):
            if item[0] in self.received:
                self._waiting.remove(item)
                item[1].callback(self.received)

    def connectionLost(self, reason) -> None:
        self.answer.callback(self.received)


@pytest_twisted.inlineCallbacks
def test_sigterm_drains_every_worker_finishing_a_request_under_way(programs, tmp_path):
    sink = tmp_path / "received.ndjson"
    program, port, pids = yield start_workers(programs, *WIRES["native"], f"--sink=file:{sink}")
    body = b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(3))
    client = yield endpoints.connectProtocol(
        endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port), Raw()
    )
    client.transport.write(
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-ndjson\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    # "100 Continue": a worker has the request's head, the request is under way there
    yield client.wait_for(b"HTTP/1.1 100 Continue\r\n\r\n")
    program.signal(signal.SIGTERM)
    # the idle worker ends at once; the busy one stops accepting, and waits for the request
    idle = yield program.wait_for(r"worker (\d) \(pid \d+\): stopped: 0 events acknowledged")
    busy = 3 - int(idle.group(1))
    yield program.wait_for(rf"worker {busy} \(pid {pids[busy]}\): \(TCP Port \d+ Closed\)")
    assert f"worker {busy} (pid {pids[busy]}) exited" not in program.output
    client.transport.write(body)
    answer = yield client.answer.addTimeout(TIMEOUT, reactor)
    final = answer.split(b"\r\n\r\n", 1)[1]
    if not final.startswith(b"HTTP/1.1 200") or b"connection: close" not in final.lower():
        raise program.failure(f"the client got {answer!r}")
    status = yield program.ended(TIMEOUT)
    assert status == 0, program.failure(f"exited with {status} on SIGTERM")
    assert f"worker {busy} (pid {pids[busy]}): stopped: 3 events acknowledged" in program.output
    assert [e["n"] for e in read_ndjson(sink)] == [0, 1, 2]


@pytest_twisted.inlineCallbacks
def test_ctrl_c_while_workers_start_is_a_clean_stop(programs):
    """A terminal's Ctrl+C reaches the whole process group: workers still importing died with a
    KeyboardInterrupt traceback each. They leave SIGINT to their parent, which drains them."""
    from support_programs import twistd

    # its own process group, as a program started from a shell is, so that the test can send
    # the group what a terminal sends
    program = programs.spawn(
        "logstash-input",
        ["/usr/bin/setsid", *twistd("logstash-input", *PLAIN, *WIRES["native"], "--workers=2")],
    )
    yield program.wait_for(r"worker 2 started")
    os.killpg(program.transport.pid, signal.SIGINT)
    assert (yield program.ended(TIMEOUT)) == 0, program.output
    assert "KeyboardInterrupt" not in program.output
    assert "Traceback" not in program.output
