"""Run the real programs (``twistd -n logstash-input`` / ``logstash-output``) as child processes.

Processes are spawned with the test reactor's ``spawnProcess``, so a test waits on Deferreds (a
log line appeared, the process ended) and never polls or sleeps. Every wait is bounded: when it
runs out, the test fails with everything the process wrote so far. The ``programs`` fixture kills
whatever a test left running.

The input is started with ``--port 0``; the port it got is read from its log line
``input listening on HOST:PORT`` (``twistd -n`` logs to stdout).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, error, protocol, reactor

__all__ = [
    "TIMEOUT",
    "Program",
    "ProgramError",
    "Programs",
    "closed_port",
    "programs_fixture",
    "twistd",
]

TIMEOUT = 30.0
"""Seconds any wait on a process may take before the test fails (process start-up included)."""

LISTENING = re.compile(rb"input listening on (\S+):(\d+)")
BINDIR = Path(sys.executable).parent


def twistd(*args: str) -> list[str]:
    """argv of ``twistd -n --pidfile= ARGS`` from the interpreter's own bin directory."""
    return [str(BINDIR / "twistd"), "-n", "--pidfile=", *args]


class ProgramError(AssertionError):
    """A wait on a program ran out, or the program did something else than expected."""


class Program(protocol.ProcessProtocol):
    """One child process: its output as it arrives, Deferreds for lines and for its end."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]):
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.status: int | None = None  # exit code, or -SIGNAL when killed by a signal
        self._line_waiters: list[tuple[re.Pattern, defer.Deferred]] = []
        self._end_waiters: list[defer.Deferred] = []
        self.transport = None

    # -- process protocol -------------------------------------------------------------------

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        self._wake()

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        self._wake()

    def processEnded(self, reason) -> None:
        value = reason.value
        if isinstance(value, error.ProcessTerminated) and value.signal is not None:
            self.status = -value.signal
        else:
            self.status = getattr(value, "exitCode", 0) or 0
        waiters, self._end_waiters = self._end_waiters, []
        for d in waiters:
            d.callback(self.status)
        lines, self._line_waiters = self._line_waiters, []
        for pattern, d in lines:
            d.errback(self.failure(f"exited with {self.status} before a line matching {pattern}"))

    # -- for tests ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.status is None and self.transport is not None

    @property
    def output(self) -> str:
        """Everything the process wrote, for failure messages and assertions."""
        return (
            f"--- {self.name} stdout ---\n{self.stdout.decode(errors='replace')}"
            f"--- {self.name} stderr ---\n{self.stderr.decode(errors='replace')}"
        )

    def failure(self, what: str) -> ProgramError:
        return ProgramError(f"{self.name} ({' '.join(self.argv[3:])}): {what}\n{self.output}")

    def wait_for(self, pattern: str | bytes, timeout: float = TIMEOUT) -> defer.Deferred:
        """Fires with the first match of ``pattern`` in stdout or stderr (at once if it is
        there already); fails with the process output if the process ends first or after
        ``timeout`` seconds."""
        if isinstance(pattern, str):
            pattern = pattern.encode()
        compiled = re.compile(pattern)
        d: defer.Deferred = defer.Deferred()
        self._line_waiters.append((compiled, d))
        self._wake()
        if not d.called and self.status is not None:
            self._line_waiters.remove((compiled, d))
            why = f"exited with {self.status}, no line matching {pattern}"
            return defer.fail(self.failure(why))
        return self._bounded(d, timeout, f"no line matching {pattern!r}")

    def wait_port(self, timeout: float = TIMEOUT) -> defer.Deferred:
        """Fires with the port number the input logged as listening on."""
        d = self.wait_for(LISTENING, timeout)
        return d.addCallback(lambda match: int(match.group(2)))

    def ended(self, timeout: float = TIMEOUT) -> defer.Deferred:
        """Fires with the exit status (negative: killed by that signal)."""
        if self.status is not None:
            return defer.succeed(self.status)
        d: defer.Deferred = defer.Deferred()
        self._end_waiters.append(d)
        return self._bounded(d, timeout, "did not exit")

    def signal(self, number: int = signal.SIGTERM) -> None:
        if self.running:
            try:
                self.transport.signalProcess(number)
            except error.ProcessExitedAlready:
                pass

    def terminate(self, timeout: float = TIMEOUT) -> defer.Deferred:
        """SIGTERM, then fire with the exit status."""
        self.signal(signal.SIGTERM)
        return self.ended(timeout)

    def _bounded(self, d: defer.Deferred, timeout: float, what: str) -> defer.Deferred:
        def timed_out(failure):
            failure.trap(defer.TimeoutError, defer.CancelledError)
            raise self.failure(f"{what} within {timeout} s")

        return d.addTimeout(timeout, reactor).addErrback(timed_out)

    def _wake(self) -> None:
        if not self._line_waiters:
            return
        text = bytes(self.stdout) + b"\n" + bytes(self.stderr)
        waiting, self._line_waiters = self._line_waiters, []
        for pattern, d in waiting:
            if d.called:
                continue
            match = pattern.search(text)
            if match is not None:
                d.callback(match)
            else:
                self._line_waiters.append((pattern, d))


class Programs:
    """Starts programs in one working directory and kills what is left at the end."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.started: list[Program] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "LOGSTASH_PASSWORD"}
        env.update(extra or {})
        return env

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Program:
        program = Program(name, argv, cwd or self.cwd, self.env(env))
        reactor.spawnProcess(
            program, argv[0], argv, env=program.env, path=str(program.cwd), childFDs=None
        )
        self.started.append(program)
        return program

    def input(self, *args: str, env: dict[str, str] | None = None) -> Program:
        """``twistd -n logstash-input ARGS`` (give ``--port 0`` and read ``wait_port()``)."""
        return self.spawn("logstash-input", twistd("logstash-input", *args), env)

    def output(self, *args: str, env: dict[str, str] | None = None) -> Program:
        return self.spawn("logstash-output", twistd("logstash-output", *args), env)

    @defer.inlineCallbacks
    def cleanup(self):
        """SIGTERM what still runs, SIGKILL what does not end soon after."""
        for program in self.started:
            if program.running:
                program.signal(signal.SIGTERM)
                try:
                    yield program.ended(10.0)
                except ProgramError:
                    program.signal(signal.SIGKILL)
                    yield program.ended(10.0)


@pytest.fixture(name="programs")
def programs_fixture(tmp_path) -> Iterator[Programs]:
    """Start programs with cwd ``tmp_path``; all are stopped (killed if need be) at teardown."""
    started = Programs(tmp_path)
    yield started
    pytest_twisted.blockon(started.cleanup())


def closed_port() -> socket.socket:
    """A socket bound to a port of 127.0.0.1 that does not listen: connecting to it is
    refused, and nothing else can take the port while the socket is open. Close it after."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock
