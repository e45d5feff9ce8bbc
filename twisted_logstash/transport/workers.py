"""Several processes accepting on one port: the parent that keeps them, and what a worker needs.

One process is one reactor on one core. ``logstash-input --workers N`` runs N worker processes,
each a whole input (its own reactor, sink, limits), under one parent that holds no connection:

- The parent makes ONE listening socket (``listening_socket``) before any worker starts, so a
  port that cannot be bound is one error, once, and ``--port 0`` gives every worker the same
  port. Each worker inherits the socket's descriptor and adopts it (``adopted_endpoint``: the
  same ``TLSServerEndpoint`` wrapping, hence the same TLS context and handshake deadline, as a
  single input). The kernel hands each new connection to one of the workers that call
  ``accept``; a worker that is busy (or stopped, or dead) is not calling it, so the others take
  its share, and connections waiting in the backlog survive the death of any one worker. (With
  ``SO_REUSEPORT`` each worker would have its own socket and backlog: the kernel would hash a
  connection to a worker whether or not that worker is able to take it, and a dying worker's
  backlog would be reset.)
- ``WorkerPool`` (a service of the parent) starts the workers (``spawnProcess`` of
  ``sys.executable``), relays their log lines into its own log with the worker's number, and
  restarts a worker that ends while the pool runs, after a delay from ``RestartBackoff`` so that
  a worker dying at once does not spin. On stop it closes its copy of the socket, sends SIGTERM
  to every worker (each drains exactly as a single input does: stop accepting, finish the
  batches in flight, exit), waits ``stop_timeout`` seconds, then kills what is left.
- A worker must not outlive the parent: ``die_with_parent`` asks the kernel for SIGTERM when the
  parent dies (Linux ``PR_SET_PDEATHSIG``), and ``ParentWatch`` drains the worker when its
  standard input (a pipe from the parent) reaches its end, which happens however the parent died.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReadDescriptor, IStreamServerEndpoint
from twisted.logger import InvalidLogLevelError, Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.interfaces import IEventSink

__all__ = [
    "ParentWatch",
    "RestartBackoff",
    "WorkerPool",
    "adopted_endpoint",
    "cores",
    "die_with_parent",
    "listening_socket",
]

#: signals a worker is born with blocked, until it has its own handlers (``tap/inputworker.py``);
#: SIGUSR1 (which reopens the parent's log file, ``logs.py``) as well: one sent to every process
#: of the program must not kill a worker, whose lines go through the parent anyway
STARTUP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1}

log = Logger(namespace="twisted_logstash.transport.workers")

#: the descriptor number the listening socket has in every worker
WORKER_FD = 3
#: the descriptor a worker reports its counts on, when the pool has ``reports``
REPORT_FD = 4


def cores() -> int:
    """The cores this process may run on (its CPU affinity), for ``--workers auto``."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking socket listening on ``host``:``port``, inheritable by the workers.

    Non-blocking because several processes accept on it: the one that loses the race for a
    connection must get EAGAIN, not block. Raises ``CannotListenError`` as Twisted's own
    ``listenTCP`` does, so the program words the failure the same way.
    """
    sock = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted's ports do
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise CannotListenError(host, port, e) from None
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def adopted_endpoint(reactor, fd: int, host: str, tls) -> IStreamServerEndpoint:
    """The endpoint of a worker: the inherited socket ``fd``, with TLS when
    ``tls.ssl_enabled`` (a ``ServerTLSSettings``), wrapped exactly as ``server_endpoint``
    wraps a port it binds itself (context, handshake deadline)."""
    adopted = AdoptedStreamServerEndpoint(reactor, fd, family_of(host))
    if not tls.ssl_enabled:
        return adopted
    from twisted_logstash.security.endpoints import TLSServerEndpoint

    return TLSServerEndpoint(reactor, adopted, tls)


# ------------------------------------------------------------------------------- the parent


class RestartBackoff:
    """How long to wait before restarting a worker that ended.

    A worker that ran at least ``stable`` seconds is restarted at once (it served, then died:
    a crash, a kill). One that ends sooner than that after its start is failing at start (a
    file it cannot open, a bug): it waits ``first`` seconds, doubling with each quick end in a
    row up to ``maximum``, so that it cannot spin.
    """

    def __init__(self, first: float = 0.5, maximum: float = 30.0, stable: float = 10.0) -> None:
        self.first = first
        self.maximum = maximum
        self.stable = stable
        self.quick = 0  # quick ends in a row

    def delay(self, lived: float) -> float:
        """The delay before the next start of a worker that ended after ``lived`` seconds."""
        if lived >= self.stable:
            self.quick = 0
            return 0.0
        self.quick += 1
        return min(self.maximum, self.first * 2 ** (self.quick - 1))


class WorkerProcess(protocol.ProcessProtocol):
    """One running worker, seen from the parent: its log lines relayed with its number, and
    its exit status once it ended (``status``; negative: killed by that signal)."""

    def __init__(self, pool: WorkerPool, number: int, started: float) -> None:
        self.pool = pool
        self.number = number
        self.started = started
        self.pid: int | None = None
        self.status: int | None = None
        self._partial: dict[int, bytes] = {}

    def connectionMade(self) -> None:
        self.pid = self.transport.pid

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == REPORT_FD and self.pool.reports is not None:
            self.pool.reports.received(self, data)
            return
        lines = (self._partial.pop(childFD, b"") + data).split(b"\n")
        if lines[-1]:
            self._partial[childFD] = lines[-1]
        for line in lines[:-1]:
            self._relay(line)

    def _relay(self, line: bytes) -> None:
        """A worker writes ``LEVEL text`` lines (``worker_log_observer``); anything else it
        writes (a crash before logging began) is relayed at error level."""
        text = line.decode("utf-8", "replace").rstrip("\r")
        if not text:
            return
        name, _, rest = text.partition(" ")
        try:
            level = LogLevel.levelWithName(name)
        except InvalidLogLevelError:
            level, rest = LogLevel.error, text
        log.emit(
            level,
            "worker {worker} (pid {pid}): {line}",
            worker=self.number,
            pid=self.pid,
            line=rest,
        )

    def signal(self, number: int) -> None:
        if self.status is None:
            try:
                self.transport.signalProcess(number)
            except (error.ProcessExitedAlready, OSError):
                pass

    def processEnded(self, reason: Failure) -> None:
        for fd in list(self._partial):
            self._relay(self._partial.pop(fd))
        value = reason.value
        if isinstance(value, error.ProcessTerminated) and value.signal is not None:
            self.status = -value.signal
        else:
            self.status = getattr(value, "exitCode", 0) or 0
        self.pool.worker_ended(self)


def describe_status(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


class WorkerPool(service.Service):
    """``count`` worker processes accepting on one socket, kept running until the pool stops.

    ``argv(number)`` is the command line of worker ``number`` (1 to ``count``); it finds the
    listening socket at descriptor ``WORKER_FD`` and the parent's pipe on its standard input.
    ``inherit_stdout``: the workers write on the parent's standard output (the ``stdout``
    sink); otherwise their standard output is relayed into the log like their standard error.
    ``spawn`` is ``reactor.spawnProcess`` unless a test gives a stand-in.

    After ``startService``, ``listening`` has fired with the socket (or failed with
    ``CannotListenError``, and no worker started); ``failed`` is True when stopping had to kill
    a worker or one ended with a status other than 0.

    ``reports``, if given, gets what each worker writes on ``REPORT_FD`` (its counts:
    ``received(worker, data)``) and hears when a worker ended (``ended(worker)``), after its
    last bytes (``metrics.workers.WorkerStats``).
    """

    def __init__(
        self,
        count: int,
        argv: Callable[[int], Sequence[str]],
        host: str,
        port: int,
        reactor=None,
        *,
        backlog: int = 50,
        inherit_stdout: bool = False,
        stop_timeout: float = 15.0,
        kill_timeout: float = 5.0,
        env: dict[str, str] | None = None,
        spawn: Callable[..., Any] | None = None,
        backoff: Callable[[], RestartBackoff] = RestartBackoff,
        reports: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.count = count
        self.argv = argv
        self.host = host
        self.port = port
        self.backlog = backlog
        self.reactor = reactor
        self.inherit_stdout = inherit_stdout
        self.stop_timeout = stop_timeout
        self.kill_timeout = kill_timeout
        self.env = env
        self.reports = reports
        self._spawn = spawn if spawn is not None else reactor.spawnProcess
        self.socket: socket.socket | None = None
        self.listening: defer.Deferred | None = None
        self.workers: dict[int, WorkerProcess] = {}
        self.backoffs = {number: backoff() for number in range(1, count + 1)}
        self.restarts: dict[int, Any] = {}  # pending restart calls by worker number
        self.stopping = False
        self.failed = False
        self._waiting: list[defer.Deferred] = []  # stops waiting for every worker to end

    def startService(self) -> None:
        super().startService()
        try:
            self.socket = listening_socket(self.host, self.port, self.backlog)
        except CannotListenError:
            self.listening = defer.fail()
            return
        host, port = self.socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        log.info(
            "input listening on {host}:{port} with {count} workers",
            host=shown,
            port=port,
            count=self.count,
        )
        self.listening = defer.succeed(self.socket)
        # once the reactor runs, and with it the parent's handlers of SIGINT and SIGTERM: a
        # Ctrl+C once workers exist is then a drain, never Python's KeyboardInterrupt
        self.reactor.callWhenRunning(self._start_workers)

    def _start_workers(self) -> None:
        for number in range(1, self.count + 1):
            self.start_worker(number)

    def start_worker(self, number: int) -> None:
        self.restarts.pop(number, None)
        if self.stopping or self.socket is None:
            return
        worker = WorkerProcess(self, number, self.reactor.seconds())
        fds = {
            0: "w",
            1: 1 if self.inherit_stdout else "r",
            2: "r",
            WORKER_FD: self.socket.fileno(),
        }
        if self.reports is not None:
            fds[REPORT_FD] = "r"
        argv = list(self.argv(number))
        env = self.env if self.env is not None else dict(os.environ)
        # A terminal's Ctrl+C goes to the whole process group, workers included, and a stop
        # may come while a worker still imports: its handlers exist only once its Python runs.
        # Born with SIGINT, SIGTERM and SIGUSR1 blocked (the mask is inherited), it cannot be
        # cut down before then: ``tap/inputworker.py`` ignores SIGINT (this parent drains them
        # all) and SIGUSR1 (this parent reopens the log), handles SIGTERM, then unblocks them.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STARTUP_SIGNALS)
        try:
            self._spawn(worker, argv[0], argv, env=env, childFDs=fds)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.workers[number] = worker
        log.info("worker {worker} started (pid {pid})", worker=number, pid=worker.pid)

    def worker_ended(self, worker: WorkerProcess) -> None:
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        if self.reports is not None:
            self.reports.ended(worker)
        if self.stopping:
            if worker.status != 0:
                self.failed = True
            log.info(
                "worker {worker} (pid {pid}) {how}",
                worker=worker.number,
                pid=worker.pid,
                how=describe_status(worker.status),
            )
            if not self.workers:
                waiting, self._waiting = self._waiting, []
                for d in waiting:
                    if not d.called:
                        d.callback(None)
            return
        lived = self.reactor.seconds() - worker.started
        delay = self.backoffs[worker.number].delay(lived)
        log.error(
            "worker {worker} (pid {pid}) {how} after {lived:.1f} s; restarting it in {delay} s",
            worker=worker.number,
            pid=worker.pid,
            how=describe_status(worker.status),
            lived=lived,
            delay=delay,
        )
        self.restarts[worker.number] = self.reactor.callLater(
            delay, self.start_worker, worker.number
        )

    def stopService(self) -> defer.Deferred:
        super().stopService()
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        self.stopping = True
        for call in self.restarts.values():
            if call.active():
                call.cancel()
        self.restarts.clear()
        if self.socket is not None:
            # the workers hold their own copies: each closes its own as it starts to drain
            self.socket.close()
        running = list(self.workers.values())
        if not running:
            return
        log.info("stopping {count} workers", count=len(running))
        for worker in running:
            worker.signal(signal.SIGTERM)
        try:
            await self._all_ended(self.stop_timeout)
            return
        except defer.TimeoutError:
            pass
        left = list(self.workers.values())
        log.warn(
            "{count} workers still running {timeout} s after SIGTERM; killing them",
            count=len(left),
            timeout=self.stop_timeout,
        )
        self.failed = True
        for worker in left:
            worker.signal(signal.SIGKILL)
        try:
            await self._all_ended(self.kill_timeout)
        except defer.TimeoutError:
            log.error("{count} workers did not end after SIGKILL", count=len(self.workers))

    def _all_ended(self, timeout: float) -> defer.Deferred:
        """Fires once no worker runs; fails with TimeoutError after ``timeout`` seconds."""
        d: defer.Deferred = defer.Deferred()
        if not self.workers:
            d.callback(None)
            return d
        self._waiting.append(d)
        return d.addTimeout(timeout, self.reactor)


# ------------------------------------------------------------------------------- a worker


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """Ask the kernel for ``sig`` when the parent process dies (Linux), and leave at once if
    ``parent`` is gone already (it died before the request was made)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # ParentWatch still ends the worker once the parent's pipe closes
    if os.getppid() != parent:
        raise SystemExit(f"the parent process {parent} is gone")


@implementer(IReadDescriptor)
class ParentWatch:
    """Reads the worker's standard input, a pipe the parent holds open and never writes on:
    its end means the parent is gone, and ``gone`` is called (the worker drains and exits)."""

    def __init__(self, gone: Callable[[], None], fd: int = 0) -> None:
        self.gone = gone
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "ParentWatch"

    def doRead(self):
        try:
            data = os.read(self.fd, 4096)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINTR):
                return None
            return error.ConnectionLost()
        if not data:
            return error.ConnectionDone()
        return None

    def connectionLost(self, reason) -> None:
        self.gone()


@implementer(IEventSink)
def worker_log_observer(stream) -> Callable[[dict], None]:
    """A log observer writing each line of each event as ``LEVEL text`` on ``stream`` (the
    pipe the parent relays, ``WorkerProcess._relay``), tracebacks included."""
    from twisted.logger import formatEvent

    def observe(event: dict) -> None:
        level = event.get("log_level", LogLevel.info)
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}"
        stream.write("".join(f"{level.name} {line}\n" for line in text.splitlines() if line))
        stream.flush()

    return observe
