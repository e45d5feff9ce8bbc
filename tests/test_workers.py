"""``--workers N`` in process: the restart backoff on a Clock, the pool's restarts and stop with
a stand-in for ``spawnProcess``, the flag's checks, the worker's command line, and the sinks
shared by several writers."""

from __future__ import annotations

import os
import signal
import socket
import sys

import pytest
from twisted.internet import defer, error
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure

from twisted_logstash.codecs import ndjson
from twisted_logstash.errors import FLAG, ConfigurationError
from twisted_logstash.pipeline.sinks import FileSink, StdoutSink
from twisted_logstash.tap.input import Options, parse_workers, settings_from, worker_argv
from twisted_logstash.transport import workers
from twisted_logstash.transport.workers import (
    WORKER_FD,
    RestartBackoff,
    WorkerPool,
    listening_socket,
)

EVENTS = [{"message": "one", "n": 1}, {"message": "two", "tags": ["a"]}]


# -- the backoff -------------------------------------------------------------------------------


def test_a_worker_that_served_is_restarted_at_once_one_that_dies_at_once_waits_longer():
    backoff = RestartBackoff(first=0.5, maximum=30.0, stable=10.0)
    assert backoff.delay(lived=3600.0) == 0.0
    assert [backoff.delay(lived=0.1) for _ in range(9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0
    ]  # fmt: skip
    assert backoff.delay(lived=10.0) == 0.0  # a stable run forgets the quick ends
    assert backoff.delay(lived=0.0) == 0.5


class FakeProcess:
    """What ``spawnProcess`` gives a ProcessProtocol, for a pool under test."""

    pids = iter(range(1000, 2000))

    def __init__(self, proto, argv, fds):
        self.proto = proto
        self.argv = argv
        self.fds = fds
        self.pid = next(self.pids)
        self.signals: list[int] = []

    def signalProcess(self, number):
        self.signals.append(number)

    def end(self, *, code: int | None = None, sig: int | None = None):
        if code == 0:
            reason = Failure(error.ProcessDone(0))
        else:
            reason = Failure(error.ProcessTerminated(exitCode=code, signal=sig))
        self.proto.processEnded(reason)


class Spawner:
    def __init__(self):
        self.started: list[FakeProcess] = []

    def __call__(self, proto, executable, argv, env=None, childFDs=None):
        process = FakeProcess(proto, argv, childFDs)
        self.started.append(process)
        proto.makeConnection(process)
        return process

    def running(self, pool: WorkerPool) -> dict[int, int]:
        return {number: worker.pid for number, worker in pool.workers.items()}


class RunningClock(Clock):
    """A Clock standing for a reactor that runs already: ``callWhenRunning`` calls at once."""

    def callWhenRunning(self, f, *args, **kwargs):
        f(*args, **kwargs)


def make_pool(count: int = 2, **kwargs):
    clock = RunningClock()
    spawn = Spawner()
    pool = WorkerPool(
        count,
        lambda number: ["python", "worker", str(number)],
        "127.0.0.1",
        0,
        clock,
        spawn=spawn,
        env={},
        **kwargs,
    )
    return pool, clock, spawn


def test_the_pool_listens_once_and_hands_the_socket_to_every_worker():
    pool, _clock, spawn = make_pool(3)
    pool.startService()
    try:
        sock = pool.listening.result
        assert [p.argv for p in spawn.started] == [["python", "worker", str(n)] for n in (1, 2, 3)]
        assert {p.fds[WORKER_FD] for p in spawn.started} == {sock.fileno()}
        assert all(p.fds[0] == "w" and p.fds[2] == "r" for p in spawn.started)
        assert all(p.fds[1] == "r" for p in spawn.started)  # relayed: the sink is not stdout
        assert sock.getsockname()[1] != 0 and not sock.getblocking()
    finally:
        pool.socket.close()


def test_a_dead_worker_is_logged_and_restarted_with_a_growing_delay():
    pool, clock, spawn = make_pool(2)
    pool.startService()
    try:
        clock.advance(60)  # both ran long enough: the first death restarts at once
        first = spawn.started[0]
        with capturedLogs() as events:
            first.end(sig=signal.SIGKILL)
        text = [formatEvent(e) for e in events]
        assert any(
            f"worker 1 (pid {first.pid}) was killed by SIGKILL after 60.0 s; restarting it in 0.0 s"
            in line
            for line in text
        ), text
        clock.advance(0)
        assert len(spawn.started) == 3 and pool.workers[1] is spawn.started[2].proto
        # it now dies at once, again and again: 0.5 s, then 1 s, then 2 s
        for delay in (0.5, 1.0, 2.0):
            spawn.started[-1].end(code=1)
            assert 1 not in pool.workers
            clock.advance(delay - 0.01)
            assert len(pool.workers) == 1, "restarted before its delay"
            clock.advance(0.01)
            assert 1 in pool.workers
        assert len(spawn.started) == 6
        assert pool.workers[2] is spawn.started[1].proto  # the other worker was left alone
    finally:
        pool.socket.close()


def test_stopping_signals_every_worker_and_waits_for_them():
    pool, clock, spawn = make_pool(2)
    pool.startService()
    spawn.started[0].end(code=1)  # a restart is pending when the stop comes
    stopped = pool.stopService()
    clock.advance(10)  # the pending restart (0.5 s) was cancelled
    assert len(spawn.started) == 2
    assert spawn.started[1].signals == [signal.SIGTERM]
    assert not stopped.called
    spawn.started[1].end(code=0)
    assert stopped.called and not pool.failed
    assert pool.socket.fileno() == -1  # the parent's copy is closed


def test_a_worker_that_does_not_drain_in_time_is_killed_and_the_stop_says_so():
    pool, clock, spawn = make_pool(2, stop_timeout=15.0)
    pool.startService()
    stopped = pool.stopService()
    spawn.started[0].end(code=0)
    clock.advance(15.0)
    assert spawn.started[1].signals == [signal.SIGTERM, signal.SIGKILL]
    spawn.started[1].end(sig=signal.SIGKILL)
    assert stopped.called and pool.failed


def test_a_port_that_cannot_be_bound_fails_listening_and_starts_no_worker():
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    try:
        pool, _clock, spawn = make_pool(2)
        pool.port = held.getsockname()[1]
        pool.startService()
        failure = pool.listening.result
        pool.listening.addErrback(lambda _: None)
        assert failure.check(error.CannotListenError)
        assert spawn.started == []
        assert defer.ensureDeferred(pool._stop()).called
    finally:
        held.close()


def test_worker_lines_are_relayed_with_the_worker_number_and_level():
    pool, _clock, spawn = make_pool(1)
    pool.startService()
    try:
        proto = spawn.started[0].proto
        with capturedLogs() as events:
            proto.childDataReceived(2, b"warn something odd\ninfo half ")
            proto.childDataReceived(2, b"a line\nTraceback at start\n")
        got = [(e["log_level"].name, formatEvent(e)) for e in events]
        pid = spawn.started[0].pid
        assert got == [
            ("warn", f"worker 1 (pid {pid}): something odd"),
            ("info", f"worker 1 (pid {pid}): half a line"),
            ("error", f"worker 1 (pid {pid}): Traceback at start"),
        ]
    finally:
        pool.socket.close()


def test_listening_socket_failure_names_the_address():
    with pytest.raises(error.CannotListenError) as raised:
        listening_socket("192.0.2.1", 1, 5)  # an address this host does not have
    assert raised.value.port == 1


# -- the flag ----------------------------------------------------------------------------------


def settings(*argv):
    options = Options()
    options.parseOptions(["--ssl-enabled", "false", *argv])
    return settings_from(options, environ={})[0]


def test_workers_default_to_one_and_auto_is_the_cores():
    assert settings()["workers"] == 1
    assert settings("--workers", "3")["workers"] == 3
    assert settings("--workers", "AUTO")["workers"] == workers.cores() >= 1
    assert parse_workers("auto") == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "--workers must be at least 1 (or auto), not 0"),
        ("-2", "--workers must be at least 1 (or auto), not -2"),
        ("x", "--workers takes a whole number of at least 1 or auto, not 'x'"),
        ("", "--workers takes a whole number of at least 1 or auto, not ''"),
    ],
)
def test_workers_mistakes_name_the_flag(value, message):
    with pytest.raises(ConfigurationError) as raised:
        settings("--workers", value)
    assert raised.value.render(FLAG) == message


def test_workers_cannot_share_an_endpoint_string():
    with pytest.raises(ConfigurationError, match="`workers` needs `host` and `port`"):
        settings("--workers", "2", "--endpoint", "tcp:0")
    assert settings("--workers", "1", "--endpoint", "tcp:0")["workers"] == 1


def test_a_worker_gets_every_flag_as_given_but_workers():
    options = Options()
    options.parseOptions(
        [
            "--ssl-enabled=false",
            "--workers=2",
            "--max-connections=7",
            "--add-field=a=b",
            "--add-field=c=d",
            "--tags=x,y",
        ]
    )
    argv = worker_argv(options, 2)
    assert argv[:5] == [sys.executable, "-m", "twisted_logstash.tap.inputworker", "--worker=2",
                        f"--parent={os.getpid()}"]  # fmt: skip
    flags = argv[argv.index("--") + 1 :]
    assert sorted(flags) == sorted(
        ["--ssl-enabled=false", "--max-connections=7", "--tags=x,y", "--add-field=a=b",
         "--add-field=c=d"]
    )  # fmt: skip
    again = Options()
    again.parseOptions(flags)
    assert settings_from(again, environ={})[0] == {
        **settings_from(options, environ={})[0],
        "workers": 1,
    }


def test_a_worker_adopts_the_socket_and_shares_its_sink(tmp_path):
    from twisted_logstash.tap.input import build

    options = Options()
    options.parseOptions(["--ssl-enabled=false", f"--sink=file:{tmp_path / 'e.ndjson'}"])
    settings_, explicit, _ = settings_from(options, environ={})
    reactor = MemoryReactorClock()
    service, _ = build(settings_, explicit, reactor, worker_fd=WORKER_FD)
    sink = service.factory.sink
    assert sink.shared
    assert service.endpoint.fileno == WORKER_FD


# -- sinks shared by several writers -----------------------------------------------------------


def test_shared_file_sinks_each_write_whole_batches(tmp_path):
    path = tmp_path / "events.ndjson"
    one, two = FileSink(str(path), shared=True), FileSink(str(path), shared=True)
    for n in range(10):
        (one if n % 2 else two).deliver([{"n": n, "pad": "x" * 5000}] * 20)
    assert [e["n"] for e in ndjson.decode(path.read_bytes())] == [
        n for n in range(10) for _ in range(20)
    ]
    one.close()
    two.close()


def test_a_shared_file_sink_cuts_a_killed_writers_torn_tail_before_its_next_batch(tmp_path):
    path = tmp_path / "events.ndjson"
    sink = FileSink(str(path), shared=True)
    sink.deliver(EVENTS[:1])
    with open(path, "ab") as other:  # another worker, killed in mid-write
        other.write(b'{"message":"half of a')
    with capturedLogs() as events:
        sink.deliver(EVENTS)
    assert ndjson.decode(path.read_bytes()) == [EVENTS[0], *EVENTS]
    assert any("cut a torn last line" in formatEvent(e) for e in events)
    sink.close()


class HalfWriter:
    """A raw file that takes half of the first write, then fails like a full disk."""

    def __init__(self, real):
        self.real = real
        self.failed = False

    def write(self, data):
        if self.failed:
            raise OSError(28, "No space left on device")
        self.failed = True
        return self.real.write(bytes(data[: len(data) // 2]))

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_shared_file_sink_cuts_its_own_partial_batch_only(tmp_path):
    path = tmp_path / "events.ndjson"
    mine, other = FileSink(str(path), shared=True), FileSink(str(path), shared=True)
    other.deliver(EVENTS[:1])
    real = mine._file
    mine._file = HalfWriter(real)
    failed = []
    mine.deliver(EVENTS).addErrback(failed.append)
    assert failed and failed[0].check(OSError)
    other.deliver(EVENTS[1:])
    assert ndjson.decode(path.read_bytes()) == [EVENTS[0], EVENTS[1]]
    mine._file = real
    mine.close()
    other.close()


def test_a_shared_stdout_sink_writes_under_a_lock_on_a_pipe():
    read, write = os.pipe()
    with os.fdopen(write, "wb") as stream:
        sink = StdoutSink(stream, shared=True)
        done = []
        sink.deliver(EVENTS).addCallback(done.append)
        assert done == [None] and sink.shared
    with os.fdopen(read, "rb") as reader:
        assert ndjson.decode(reader.read()) == EVENTS


def test_one_worker_is_the_single_process_program_of_today(tmp_path, monkeypatch):
    from twisted_logstash.tap.input import InputProgram, WorkersProgram, makeService

    monkeypatch.chdir(tmp_path)
    for argv in ([], ["--workers=1"]):
        options = Options()
        options.parseOptions(["--ssl-enabled=false", "--sink=null", "--port=0", *argv])
        program = makeService(options)
        assert type(program) is InputProgram
    options = Options()
    options.parseOptions(["--ssl-enabled=false", "--sink=null", "--port=0", "--workers=2"])
    program = makeService(options)
    assert type(program) is WorkersProgram and program.input.count == 2


def test_parent_watch_calls_gone_when_the_parents_pipe_ends():
    from twisted.internet import error as errors

    from twisted_logstash.transport.workers import ParentWatch

    read, write = os.pipe()
    calls = []
    watch = ParentWatch(lambda: calls.append("gone"), fd=read)
    try:
        os.write(write, b"x")
        assert watch.doRead() is None  # bytes (there are none in practice) are ignored
        os.close(write)
        reason = watch.doRead()
        assert isinstance(reason, errors.ConnectionDone)
        watch.connectionLost(Failure(reason))
        assert calls == ["gone"]
    finally:
        os.close(read)


def test_a_shared_file_sink_whose_fsync_fails_refuses_its_batches_and_cuts_nothing(tmp_path):
    """Another worker may have appended (and acknowledged) batches after them."""
    path = tmp_path / "events.ndjson"
    calls = []
    mine = FileSink(
        str(path), fsync=True, shared=True, in_thread=lambda fn, *a: calls.append((fn, a)) or d
    )
    other = FileSink(str(path), shared=True)
    d: defer.Deferred = defer.Deferred()
    failing = mine.deliver(EVENTS[:1])
    other.deliver(EVENTS[1:])  # the other worker's batch, acknowledged, after mine
    failed = []
    failing.addErrback(failed.append)
    with capturedLogs() as events:
        d.errback(OSError(5, "Input/output error"))
    assert failed and failed[0].check(OSError)
    assert ndjson.decode(path.read_bytes()) == EVENTS  # nothing cut
    assert any("may be there twice once resent" in formatEvent(e) for e in events)
    mine.close()
    other.close()
