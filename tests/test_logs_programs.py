"""The programs' ``--logfile`` under a log rotation tool: after ``mv FILE FILE.1`` (logrotate's
default, with or without a new empty FILE made by its ``create``), SIGUSR1 makes the program
write to a fresh FILE, losing nothing, in text and JSON, the input's workers included (they
leave SIGUSR1 alone: a signal to the whole group must not kill them). Real ``twistd -n``
processes; a file is polled for a line with a deadline, never slept on."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
import pytest_twisted
from support_programs import TIMEOUT, closed_port, programs_fixture, twistd  # noqa: F401
from test_programs import PLAIN
from twisted.internet import defer, reactor, task

#: the last line of the moved file, the first of the new one
GOES_ON = "SIGUSR1: the log goes on in a new "
REOPENED = r"SIGUSR1: log file \S+ reopened"


def text_of(path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def until(program, check, what: str, timeout: float = TIMEOUT) -> defer.Deferred:
    """Fires with the first true value of ``check()`` (polled); fails after ``timeout``
    seconds, or at once when the program ended first, saying ``what()`` it waited for."""
    d: defer.Deferred = defer.Deferred()
    deadline = reactor.seconds() + timeout

    def tick():
        result = check()
        if result:
            loop.stop()
            d.callback(result)
        elif program.status is not None or reactor.seconds() > deadline:
            loop.stop()
            ran = f"ran {timeout} s"
            why = ran if program.status is None else f"ended with {program.status}"
            d.errback(program.failure(f"{why} with {what()}"))

    loop = task.LoopingCall(tick)
    loop.start(0.05)
    return d


def in_file(program, path, pattern: str, timeout: float = TIMEOUT) -> defer.Deferred:
    """Fires with the first match of ``pattern`` in the file ``path`` once it is there; fails
    after ``timeout`` seconds, or at once when the program ended first (polling, no sleep)."""
    compiled = re.compile(pattern)
    return until(
        program,
        lambda: compiled.search(text_of(path)),
        lambda: f"no line matching {pattern!r} in {path.name}:\n{text_of(path)}",
        timeout,
    )


def start(programs, name: str, path, *args: str):
    """``twistd -n --logfile=PATH NAME ARGS`` (``--logfile`` is twistd's own flag)."""
    return programs.spawn(name, twistd(f"--logfile={path}", name, *args))


def records(path) -> list[dict]:
    return [json.loads(line) for line in text_of(path).splitlines()]


@defer.inlineCallbacks
def rotate(program, path, create: bool, pids=None):
    """What logrotate does: move FILE to FILE.1 (and make a new empty FILE when ``create``),
    then ``kill -USR1`` (to ``pids`` when given, else to the program)."""
    moved = path.with_name(path.name + ".1")
    os.rename(path, moved)
    if create:
        path.write_text("")
    for pid in pids or [program.transport.pid]:
        os.kill(pid, signal.SIGUSR1)
    yield in_file(program, path, REOPENED)
    return moved


@pytest.mark.parametrize(("format", "create"), [("text", False), ("json", True)])
@pytest_twisted.inlineCallbacks
def test_sigusr1_after_a_move_writes_the_input_log_to_a_fresh_file(
    programs, tmp_path, format, create
):
    path = tmp_path / "input.log"
    program = start(
        programs, "logstash-input", path, *PLAIN, "--sink=null", f"--log-format={format}"
    )
    yield in_file(program, path, r"input listening on 127\.0\.0\.1:\d+")
    moved = yield rotate(program, path, create)
    status = yield program.terminate()
    assert status == 0, program.output
    before, after = text_of(moved), text_of(path)
    # what was logged before the signal stayed in the moved file, ending with where it goes on
    assert "input listening on" in before and "starting up" in before, before
    assert GOES_ON + str(path) in before.splitlines()[-1], before
    # and from then on the new file gets every line: the reopening first, then the stop with
    # its last counts
    assert re.search(REOPENED, after.splitlines()[0]), after
    assert "input listening on" not in after, after
    assert re.search(r"received: 0 events acknowledged", after), after
    assert "Server Shut Down." in after, after
    if format == "json":
        for record in records(moved) + records(path):
            assert {"@timestamp", "log.level", "message"} <= set(record), record


@pytest_twisted.inlineCallbacks
def test_sigusr1_after_a_move_writes_the_output_log_to_a_fresh_file(programs, tmp_path):
    path = tmp_path / "output.log"
    closed = closed_port()
    try:
        program = start(
            programs,
            "logstash-output",
            path,
            f"--hosts=127.0.0.1:{closed.getsockname()[1]}",
            "--ssl-enabled=false",
            "--source=tcp:0",
        )
        yield in_file(program, path, r"output .*starting|starting up")
        moved = yield rotate(program, path, create=False)
        status = yield program.terminate()
    finally:
        closed.close()
    assert status == 0, program.output
    assert "starting up" in text_of(moved)
    assert re.search(r"sent: 0 events acknowledged", text_of(path)), text_of(path)


@pytest_twisted.inlineCallbacks
def test_sigusr1_after_a_move_writes_the_pipeline_log_to_a_fresh_file(programs, tmp_path):
    path = tmp_path / "pipeline.log"
    config = tmp_path / "p.conf"
    config.write_text(
        'input { logstash { host => "127.0.0.1" port => 0 ssl_enabled => false } }\n'
        f'output {{ file {{ path => "{tmp_path / "out.ndjson"}" }} }}\n'
    )
    program = start(programs, "logstash-pipeline", path, "-f", str(config))
    yield in_file(program, path, r"input listening on 127\.0\.0\.1:\d+")
    moved = yield rotate(program, path, create=True)
    status = yield program.terminate()
    assert status == 0, program.output
    assert "starting up" in text_of(moved)
    assert "Server Shut Down." in text_of(path), text_of(path)


@pytest_twisted.inlineCallbacks
def test_workers_survive_sigusr1_and_their_lines_follow_the_parent_to_the_fresh_file(
    programs, tmp_path
):
    """The workers write their lines to the parent (a pipe it relays into its log): the parent
    reopening is enough. A SIGUSR1 to every process of the program (``systemctl kill``,
    ``kill -USR1 -PGID``) must not end a worker."""
    path = tmp_path / "input.log"
    program = start(programs, "logstash-input", path, *PLAIN, "--sink=null", "--workers=2")
    pids = {}
    for number in (1, 2):
        match = yield in_file(program, path, rf"worker {number} \(pid (\d+)\): input listening")
        pids[number] = int(match.group(1))
    yield rotate(program, path, create=False, pids=[program.transport.pid, *pids.values()])
    status = yield program.terminate()
    assert status == 0, program.output
    after = text_of(path)
    for number, pid in pids.items():
        assert f"worker {number} (pid {pid}): stopped: 0 events acknowledged" in after, after
        assert f"worker {number} (pid {pid}) exited with status 0" in after, after
    assert "restarting" not in after + text_of(path.with_name(path.name + ".1")), after


def inode(path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


@pytest_twisted.inlineCallbacks
def test_the_log_is_rotated_at_the_given_length_keeping_the_given_number_of_files(
    programs, tmp_path
):
    """``--log-rotate-length 2000 --log-max-rotated 2``: FILE, FILE.1 and FILE.2, never FILE.3.
    The lines are the counts of ``--stats-interval 0.01`` (about 15 kB a second)."""
    path = tmp_path / "input.log"
    last = path.with_name("input.log.2")
    program = start(
        programs,
        "logstash-input",
        path,
        *PLAIN,
        "--sink=null",
        "--stats-interval=0.01",
        "--log-rotate-length=2000",
        "--log-max-rotated=2",
    )
    names = lambda: sorted(p.name for p in tmp_path.iterdir())  # noqa: E731
    first = yield until(program, lambda: inode(last), lambda: f"no {last.name}: {names()}")
    # FILE.2 replaced by the next FILE.1: a rotation past the second, which without the limit
    # would have made FILE.3
    yield until(
        program,
        lambda: inode(last) not in (None, first),
        lambda: f"{last.name} never replaced: {names()}",
    )
    status = yield program.terminate()
    assert status == 0, program.output
    assert names() == ["input.log", "input.log.1", "input.log.2"]
    for name in names():
        size = (tmp_path / name).stat().st_size
        assert 0 < size < 2000 + 500, (name, size)  # a line past the length at most
    assert "receiving: 0 events acknowledged" in text_of(last)
