"""Memory under overload, measured on real processes: the peak RSS (VmHWM) of each.

Scenarios (all on 127.0.0.1):

- ``input``: a native input (a child process: this script with ``--serve-input``) whose sink
  absorbs ``--sink-rate`` events/s, one batch after another, is offered ten times that rate
  (``--load-factor``) by ``--clients`` keep-alive connections sending 125-event gzip batches, as
  a Logstash output does (a 429 is retried after ``--retry-delay``). Runs ``--seconds``.
- ``slowloris``: ``--slow-clients`` connections trickle a request head, a byte a second; the
  input (``--header-timeout``) must drop every one of them, and the time it took is printed.
- ``cap``: ``--max-connections`` + 100 idle connections; the ones over the cap must get 503.
- ``attacks`` (issue 11), each against a fresh input with ``--max-held-bytes`` (256 MiB):
  ``gzip-flood``, one request of 100 KiB of gzip inflating to 105 MB of ``{}`` lines (35 million
  events), into a sink that takes every batch at once (it took an input to 6.9 GB); ``unfinished``,
  ten such bodies left unfinished, into a sink that never settles (852 MB); ``no-reader``, a
  client that sends pipelined requests answered without the sink and never reads its answers
  (1,086 MB for 120 MB sent). The peak RSS of each is printed beside the budget.
- ``output``: the real output program (``twistd logstash-output``) with a generator source of
  ``--events`` events and two receivers that are down (nothing listens on their ports), so every
  attempt fails and is retried; runs ``--seconds``.
- ``framed``: a framed input (``--serve-framed``) under issue 11's attacks, one after another,
  each with its own peak: a ``W 10000`` whose ``C`` frames (1 MB inflated for 1 KB sent) never
  complete it, the same on ``--framed-connections`` connections at once, a ``W 0`` flood whose
  answers are never read (``--framed-flood`` bytes), and 8 MB of v1 ``D`` frames (CPU seconds).

For each child the peak RSS is sampled from /proc/PID/status (VmHWM) and printed with the bound
it is held to (``--input-bound-mb``, ``--output-bound-mb``); the exit status is 1 if a bound or
a check failed. Logs go to bench/out/memory/. Typical use: ``.venv/bin/python bench/memory.py``
(about 2.5 minutes with the default 60 s per load scenario).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "memory"
PYTHON = sys.executable
TWISTD = str(Path(sys.executable).with_name("twistd"))


# -- the input under test (child process) ------------------------------------------------------


def serve_input(args) -> None:
    """The child: a native input with a slow sink; prints ``PORT n`` once listening."""
    from twisted.internet import defer, reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )
    from zope.interface import implementer

    from twisted_logstash.interfaces import IEventSink
    from twisted_logstash.wires.native.server import HttpInputFactory

    log_file = open(OUT / "input.log", "w")  # noqa: SIM115 - open for the process' life
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(log_file), [predicate])],
        redirectStandardIO=False,
    )

    @implementer(IEventSink)
    class SlowSink:
        """Absorbs ``rate`` events a second, one batch after another (a slow disk, a slow
        downstream); the batches waiting their turn are what the input holds in memory."""

        def __init__(self, rate: float) -> None:
            self.rate = rate
            self.free_at = 0.0
            self.events = 0

        def deliver(self, events):
            now = reactor.seconds()
            self.free_at = max(self.free_at, now) + len(events) / self.rate
            d = defer.Deferred()
            reactor.callLater(self.free_at - now, self._done, d, events)
            return d

        def _done(self, d, events) -> None:
            self.events += len(events)
            d.callback(None)

    @implementer(IEventSink)
    class NullSink:
        def __init__(self) -> None:
            self.events = 0

        def deliver(self, events):
            self.events += len(events)
            return defer.succeed(None)

    @implementer(IEventSink)
    class StuckSink:
        def deliver(self, events):
            return defer.Deferred()

    sink = {"slow": lambda: SlowSink(args.sink_rate), "null": NullSink, "stuck": StuckSink}
    factory = HttpInputFactory(
        sink[args.sink](),
        reactor,
        max_pending_requests=args.max_pending,
        max_connections=args.max_connections,
        header_timeout=args.header_timeout,
        max_held_bytes=args.max_held_bytes,
        sink_timeout=None,
    )

    def listening(port) -> None:
        print(f"PORT {port.getHost().port}", flush=True)

    TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory).addCallback(listening)
    reactor.run()


# -- sampling ------------------------------------------------------------------------------------


def status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler:
    """Samples a process' RSS from the reactor; VmHWM is the kernel's own peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0
        self.hwm = 0

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, status_kb(self.pid, "VmRSS"))
        self.hwm = max(self.hwm, status_kb(self.pid, "VmHWM"))


def mb(kb: int) -> float:
    return round(kb / 1024, 1)


# -- clients (this process) ------------------------------------------------------------------------


def make_request(port: int, events: int = 125) -> bytes:
    batch = [
        {
            "@timestamp": "2026-11-25T10:00:00.000Z",
            "message": f"GET /index.html 200 {n} bytes from 10.0.0.{n % 256} in {n % 97} ms",
            "host": {"name": "web-01"},
            "n": n,
        }
        for n in range(events)
    ]
    body = gzip.compress(json.dumps(batch).encode(), 1)
    return (
        b"POST / HTTP/1.1\r\nContent-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\nHost: 127.0.0.1:%d\r\nConnection: Keep-Alive\r\n\r\n"
        % (len(body), port)
        + body
    )


def run_input(args, results: dict) -> bool:
    """Overload, then slowloris, then the connection cap, against one input process."""
    from twisted.internet import defer, protocol, reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint

    from twisted_logstash.wires.native.http import ResponseParser

    child = subprocess.Popen(
        [PYTHON, __file__, "--serve-input", *child_args(args)],
        stdout=subprocess.PIPE,
        text=True,
    )
    port = int(child.stdout.readline().split()[1])
    sampler = Sampler(child.pid)
    request = make_request(port)
    stats = {"sent": 0, "200": 0, "429": 0, "other": 0, "503": 0}
    ok = True

    class Client(protocol.Protocol):
        """A Logstash-like sender: one request at a time, 429 retried after a delay."""

        def connectionMade(self) -> None:
            self.parser = ResponseParser()
            self.busy = False
            self.closed = defer.Deferred()

        def send(self) -> bool:
            if self.busy or not self.transport.connected:
                return False
            self.busy = True
            stats["sent"] += 1
            self.transport.write(request)
            return True

        def dataReceived(self, data: bytes) -> None:
            while data:
                response = self.parser.feed(data)
                if response is None:
                    return
                data, self.parser = self.parser.leftover, ResponseParser()
                key = str(response.status)
                stats[key if key in stats else "other"] += 1
                delay = args.retry_delay if response.status == 429 else 0
                reactor.callLater(delay, self._free)

        def _free(self) -> None:
            self.busy = False

        def connectionLost(self, reason=protocol.connectionDone) -> None:
            self.closed.callback(time.monotonic())

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    factory = protocol.Factory.forProtocol(Client)

    @defer.inlineCallbacks
    def overload():
        clients = yield defer.gatherResults(
            [endpoint.connect(factory) for _ in range(args.clients)]
        )
        # token bucket: ten times what the sink absorbs, in requests of 125 events
        rate = args.sink_rate * args.load_factor / 125
        tick = 0.05
        credit = 0.0
        turn = 0

        def offer():
            nonlocal credit, turn
            credit += rate * tick
            tries = 0
            while credit >= 1 and tries < len(clients):
                client = clients[turn % len(clients)]
                turn += 1
                tries += 1
                if client.send():
                    credit -= 1
            credit = min(credit, rate)  # no burst beyond a second's worth
            sampler.sample()

        loop = task.LoopingCall(offer)
        loop.clock = reactor
        loop.start(tick)
        yield task.deferLater(reactor, args.seconds, lambda: None)
        loop.stop()
        for client in clients:
            client.transport.loseConnection()
        yield defer.gatherResults([c.closed for c in clients])
        # A connection whose batch waits for the sink is paused, so the input sees its close
        # only once the sink took the batch: let the sink work through what it holds.
        backlog = args.max_pending * 125 / args.sink_rate
        yield task.deferLater(reactor, backlog + 2.0, lambda: None)
        sampler.sample()

    @defer.inlineCallbacks
    def slowloris():
        nonlocal ok
        head = request[: request.index(b"\r\n\r\n")]
        answered_before = sum(stats[k] for k in ("200", "429", "503", "other"))
        clients = yield defer.gatherResults(
            [endpoint.connect(factory) for _ in range(args.slow_clients)]
        )
        start = time.monotonic()

        def trickle():
            second = int(time.monotonic() - start)
            for client in clients:
                if client.transport.connected:
                    client.transport.write(head[second : second + 1])
            sampler.sample()

        loop = task.LoopingCall(trickle)
        loop.clock = reactor
        loop.start(1.0)
        closed = defer.gatherResults([c.closed for c in clients])
        limit = args.header_timeout + 5
        done = yield closed.addTimeout(limit, reactor).addErrback(lambda _: None)
        loop.stop()
        if done is None:
            still = sum(1 for c in clients if c.transport.connected)
            results["slowloris"] = f"FAILED: {still} of {len(clients)} still open after {limit} s"
            ok = False
            for client in clients:
                client.transport.abortConnection()
        else:
            answered = sum(stats[k] for k in ("200", "429", "503", "other")) - answered_before
            first, last = min(done) - start, max(done) - start
            results["slowloris"] = (
                f"{len(clients)} connections trickling a head at 1 byte/s: all dropped by the "
                f"input between {first:.1f} and {last:.1f} s, {answered} answered "
                f"(header timeout {args.header_timeout} s)"
            )
            ok = ok and answered == 0 and first >= args.header_timeout - 1

    @defer.inlineCallbacks
    def cap():
        nonlocal ok
        count = (args.max_connections + 100) // 25 * 25
        refused_before = stats["503"]
        clients = []
        for _ in range(0, count, 25):  # in groups, so that the listen backlog never overflows
            group = yield defer.gatherResults([endpoint.connect(factory) for _ in range(25)])
            clients.extend(group)
            yield task.deferLater(reactor, 0.05, lambda: None)
        yield task.deferLater(reactor, 1.0, lambda: None)
        refused = sum(1 for c in clients if c.closed.called)
        answered = stats["503"] - refused_before
        sampler.sample()
        results["cap"] = (
            f"{count} idle connections with max_connections={args.max_connections}: "
            f"{refused} closed by the input, {answered} of them answered 503"
        )
        over = count - args.max_connections
        ok = ok and refused == over and answered == over
        for client in clients:
            client.transport.loseConnection()

    @defer.inlineCallbacks
    def scenario():
        sampler.sample()
        try:
            yield overload()
            results["input_peak_mb"] = mb(sampler.hwm)
            results["input_requests"] = dict(stats)
            yield slowloris()
            yield cap()
        finally:
            reactor.stop()

    reactor.callWhenRunning(scenario)
    reactor.run()
    sampler.sample()
    child.send_signal(signal.SIGTERM)
    child.wait(10)
    results["input_peak_mb_all_phases"] = mb(sampler.hwm)
    bound_ok = results["input_peak_mb"] <= args.input_bound_mb
    print(
        f"input: peak RSS {results['input_peak_mb']} MB under {args.load_factor}x overload "
        f"for {args.seconds} s (bound {args.input_bound_mb} MB: {'ok' if bound_ok else 'OVER'}); "
        f"requests {results['input_requests']}"
    )
    print(f"slowloris: {results.get('slowloris')}")
    print(f"cap: {results.get('cap')}")
    print(f"input: peak RSS over all phases {results['input_peak_mb_all_phases']} MB")
    return ok and bound_ok


def child_args(args, sink: str = "slow") -> list[str]:
    return [
        f"--sink={sink}",
        f"--max-held-bytes={args.max_held_bytes}",
        f"--sink-rate={args.sink_rate}",
        f"--max-pending={args.max_pending}",
        f"--max-connections={args.max_connections}",
        f"--header-timeout={args.header_timeout}",
    ]


# -- issue 11's attacks, each against a fresh input ------------------------------------------------


def start_input(args, sink: str):
    child = subprocess.Popen(
        [PYTHON, __file__, "--serve-input", *child_args(args, sink)],
        stdout=subprocess.PIPE,
        text=True,
    )
    port = int(child.stdout.readline().split()[1])
    return child, port, Sampler(child.pid)


def stop_input(child) -> None:
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def flood_request(lines: int) -> bytes:
    body = gzip.compress(b"{}\n" * lines, 9)
    return (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


def sample_while(sampler: Sampler, seconds: float, until=lambda: False) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds and not until():
        sampler.sample()
        time.sleep(0.05)
    sampler.sample()
    return time.monotonic() - start


def attack_gzip_flood(args, request: bytes) -> str:
    child, port, sampler = start_input(args, "null")
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(request)
        client.setblocking(False)
        answer = bytearray()

        def answered() -> bool:
            try:
                answer.extend(client.recv(65536))
            except BlockingIOError:
                pass
            return b"\r\n\r\n" in answer

        took = sample_while(sampler, args.attack_seconds, answered)
    stop_input(child)
    status = bytes(answer[:12]).decode(errors="replace") or "no answer"
    return (
        f"gzip-flood: {len(request) // 1024} KiB of gzip, 105 MB of {{}} lines: '{status}' after "
        f"{took:.1f} s; peak RSS {mb(sampler.hwm)} MB"
    )


def attack_unfinished(args, request: bytes) -> str:
    child, port, sampler = start_input(args, "stuck")
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    for client in clients:
        client.sendall(request[:-1000])
    sample_while(sampler, min(args.attack_seconds, 10.0))
    for client in clients:
        client.close()
    stop_input(child)
    sent = 10 * (len(request) - 1000) / 1e6
    return (
        f"unfinished: 10 gzip bodies left unfinished ({sent:.1f} MB sent), a sink that never "
        f"settles: peak RSS {mb(sampler.hwm)} MB"
    )


def attack_no_reader(args) -> str:
    child, port, sampler = start_input(args, "null")
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # 405, no sink
    chunk = request * (65536 // len(request))
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.setblocking(False)
        start = time.monotonic()
        while time.monotonic() - start < min(args.attack_seconds, 10.0) and sent < 120e6:
            try:
                sent += client.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)  # the input stopped reading: its buffers and ours are full
            sampler.sample()
        sample_while(sampler, 1.0)
    stop_input(child)
    return (
        f"no-reader: {sent / 1e6:.1f} MB of requests sent in 10 s, answers never read: "
        f"peak RSS {mb(sampler.hwm)} MB"
    )


def run_attacks(args, results: dict) -> bool:
    request = flood_request(args.flood_lines)
    budget = args.max_held_bytes / 2**20
    lines = [
        attack_gzip_flood(args, request),
        attack_unfinished(args, request),
        attack_no_reader(args),
    ]
    results["attacks"] = lines
    results["max_held_bytes"] = args.max_held_bytes
    for line in lines:
        print(f"{line} (budget {budget:.0f} MiB)")
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_output(args, results: dict) -> bool:
    """The output program with every receiver down, fed by a generator of millions."""
    down = [free_port(), free_port()]  # nothing listens there: every connect is refused
    work = OUT / "output-run"
    work.mkdir(parents=True, exist_ok=True)
    log_path = OUT / "output.log"
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [
                TWISTD,
                "-n",
                "--pidfile=",
                "logstash-output",
                "--hosts",
                ",".join(f"127.0.0.1:{p}" for p in down),
                "--ssl-enabled",
                "false",
                "--source",
                f"generator:{args.events}",
                "--queue-max-events",
                str(args.queue),
                "--cooloff",
                "1",
            ],
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sampler = Sampler(child.pid)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline and child.poll() is None:
        sampler.sample()
        time.sleep(0.1)
    sampler.sample()
    alive = child.poll() is None
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    text = log_path.read_text(errors="replace")
    retries = text.count("retrying in")
    results["output_peak_mb"] = mb(sampler.hwm)
    bound_ok = results["output_peak_mb"] <= args.output_bound_mb
    print(
        f"output: peak RSS {results['output_peak_mb']} MB with queue {args.queue}, "
        f"generator:{args.events}, both receivers down for {args.seconds} s, {retries} retries "
        f"logged (bound {args.output_bound_mb} MB: {'ok' if bound_ok else 'OVER'})"
    )
    if not alive:
        print(f"output: the program exited early; see {log_path}")
    return bound_ok and alive and retries > 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-input", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--scenario", choices=("all", "input", "output", "framed", "attacks"), default="all"
    )
    parser.add_argument("--sink", choices=("slow", "null", "stuck"), default="slow")
    parser.add_argument("--max-held-bytes", type=int, default=256 * 2**20)
    parser.add_argument("--flood-lines", type=int, default=34_900_000)
    parser.add_argument("--attack-seconds", type=float, default=120.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sink-rate", type=float, default=2000.0, help="events/s")
    parser.add_argument("--load-factor", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=250)
    parser.add_argument("--retry-delay", type=float, default=0.1)
    parser.add_argument("--max-pending", type=int, default=200)
    parser.add_argument("--max-connections", type=int, default=400)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--slow-clients", type=int, default=300)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--queue", type=int, default=4096)
    parser.add_argument("--input-bound-mb", type=float, default=150.0)
    parser.add_argument("--output-bound-mb", type=float, default=100.0)
    add_framed_arguments(parser)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.serve_framed:
        serve_framed(args)
        return 0
    if args.serve_input:
        serve_input(args)
        return 0
    results: dict = {}
    ok = True
    if args.scenario in ("all", "output"):
        ok = run_output(args, results) and ok
    if args.scenario in ("all", "input"):
        ok = run_input(args, results) and ok
    if args.scenario in ("all", "framed"):
        ok = run_framed(args, results) and ok
    if args.scenario in ("all", "attacks"):
        ok = run_attacks(args, results) and ok
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


# -- the framed input (Lumberjack) under issue 11's attacks ----------------------------------------


def serve_framed(args) -> None:
    """The child: a framed input whose sink takes every window at once; prints ``PORT n``."""
    from twisted.internet import defer, reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )
    from zope.interface import implementer

    from twisted_logstash.interfaces import IEventSink
    from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory

    log_file = open(OUT / "framed.log", "w")  # noqa: SIM115 - open for the process' life
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(log_file), [predicate])],
        redirectStandardIO=False,
    )

    @implementer(IEventSink)
    class Sink:
        def deliver(self, events):
            return defer.succeed(None)

    options = {"max_connections": args.max_connections}
    if args.max_window_bytes:
        options["max_window_bytes"] = args.max_window_bytes
    factory = LumberjackInputFactory(Sink(), reactor, **options)

    def listening(port) -> None:
        print(f"PORT {port.getHost().port}", flush=True)

    TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory).addCallback(listening)
    reactor.run()


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def _c_frame_of_big_events(first: int, count: int = 10, size: int = 100_000) -> bytes | None:
    """One C frame of ``count`` J frames of ``size`` bytes of 'x' (about 1 KB on the wire, a
    megabyte inflated), or None once the next would complete a window of 10000 events."""
    if first + count > 10_000:
        return None
    import zlib

    payload = b'{"message":"' + b"x" * size + b'"}'
    inner = b"".join(
        b"2J" + _u32(seq) + _u32(len(payload)) + payload for seq in range(first, first + count)
    )
    body = zlib.compress(inner, 9)
    return b"2C" + _u32(len(body)) + body


def _framed_connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def _send_until_closed(socks: list[socket.socket], frames, budget: int) -> tuple[int, int]:
    """Send ``frames(n)`` round-robin on every socket until ``budget`` bytes went on each, the
    input closed it or there are no more frames; (bytes sent in all, connections the input
    closed)."""
    sent = 0
    live = list(socks)
    each = dict.fromkeys(range(len(socks)), 0)
    n = 0
    while live:
        for sock in list(live):
            index = socks.index(sock)
            data = frames(n)
            if data is None:
                live.remove(sock)
                continue
            try:
                sock.sendall(data)
            except OSError:
                live.remove(sock)
                continue
            sent += len(data)
            each[index] += len(data)
            if each[index] >= budget:
                live.remove(sock)
        n += 1
    closed = 0
    for sock in socks:
        sock.settimeout(5)
        try:
            closed += sock.recv(65536) == b""
        except TimeoutError:
            pass  # still open
        except OSError:
            closed += 1
    return sent, closed


def _reset_peak(pid: int, sampler: Sampler) -> None:
    """Start a new peak (VmHWM) for the next attack, where the kernel lets us (clear_refs 5)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return
    sampler.hwm = 0
    sampler.sample()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_framed(args, results: dict) -> bool:
    """The framed input against: a W 10000 whose C frames never complete it, the same on many
    connections at once, a W 0 flood from a client that never reads, 8 MB of v1 D frames."""
    log_path = OUT / "framed-child.log"
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [PYTHON, __file__, "--serve-framed", f"--max-connections={args.max_connections}"]
            + ([f"--max-window-bytes={args.max_window_bytes}"] if args.max_window_bytes else []),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    port = int(child.stdout.readline().split()[1])
    sampler = Sampler(child.pid)
    import threading

    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            sampler.sample()
            time.sleep(0.02)

    sampling = threading.Thread(target=sample, daemon=True)
    sampling.start()
    ok = True
    framed: dict = {}
    results["framed"] = framed
    try:
        sampler.sample()
        framed["baseline_mb"] = mb(sampler.hwm)

        def attack(name: str, run) -> None:
            if args.framed_only and name.split()[0] not in args.framed_only.split(","):
                return
            before = mb(sampler.hwm)
            _reset_peak(child.pid, sampler)
            start = time.monotonic()
            outcome = run()
            sampler.sample()
            framed[name] = dict(
                outcome, peak_mb=mb(sampler.hwm), seconds=round(time.monotonic() - start, 1)
            )
            print(f"framed: {name}: {framed[name]} (highest peak before: {before} MB)")

        # 1. one connection: W 10000, then C frames of 100 events of 10 KB that never complete it
        def unfinished_window():
            sock = _framed_connect(port)
            sock.sendall(b"2W" + _u32(10_000))
            sent, closed = _send_until_closed(
                [sock], lambda n: _c_frame_of_big_events(n * 10 + 1), args.framed_send
            )
            sock.close()
            return {"sent_bytes": sent, "closed": closed}

        attack("W 10000 with unfinished C frames", unfinished_window)

        # 2. the same on many connections at once (round-robin: all hold their windows together)
        def many_unfinished():
            socks = [_framed_connect(port) for _ in range(args.framed_connections)]
            for sock in socks:
                sock.sendall(b"2W" + _u32(10_000))
            sent, closed = _send_until_closed(
                socks, lambda n: _c_frame_of_big_events(n * 10 + 1), args.framed_send
            )
            for sock in socks:
                sock.close()
            return {"connections": len(socks), "sent_bytes": sent, "closed": closed}

        attack("many unfinished windows", many_unfinished)

        # 3. a W 0 flood from a client that never reads its A 0 answers
        def w0_flood():
            sock = _framed_connect(port)
            chunk = b"2W" + _u32(0)
            chunk *= 65536 // len(chunk)
            sent = 0
            sock.settimeout(2)
            try:
                while sent < args.framed_flood:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            sock.close()
            return {"sent_bytes": sent, "stalled": sent < args.framed_flood}

        attack("flood of W 0, answers never read", w0_flood)

        # 4. 8 MB of v1 D frames (one window of one frame of many fields), and its CPU time
        def v1_data():
            pairs = b"".join(
                _u32(len(k)) + k + _u32(100) + b"y" * 100
                for k in (b"f%d" % i for i in range(72_000))
            )
            stream = b"1W" + _u32(1) + b"1D" + _u32(1) + _u32(72_000) + pairs
            cpu = _cpu_seconds(child.pid)
            sock = _framed_connect(port)
            sock.settimeout(120)
            for at in range(0, len(stream), 16384):
                sock.sendall(stream[at : at + 16384])
            answer = sock.recv(6)
            sock.close()
            return {
                "sent_bytes": len(stream),
                "acked": answer == b"1A" + _u32(1),
                "cpu_seconds": round(_cpu_seconds(child.pid) - cpu, 2),
            }

        attack("8 MB of v1 D frames", v1_data)
    finally:
        stop.set()
        sampling.join()
        child.terminate()
        child.wait(30)
    results["framed_peak_mb"] = max(
        [framed["baseline_mb"]] + [v["peak_mb"] for v in framed.values() if isinstance(v, dict)]
    )
    bound_ok = results["framed_peak_mb"] <= args.framed_bound_mb
    ok = ok and bound_ok and framed.get("8 MB of v1 D frames", {}).get("acked", True)
    print(
        f"framed: peak RSS {results['framed_peak_mb']} MB over all attacks "
        f"(bound {args.framed_bound_mb} MB: {'ok' if bound_ok else 'OVER'})"
    )
    return ok


def add_framed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--serve-framed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--max-window-bytes", type=int, default=0, help="0: the default")
    parser.add_argument("--framed-connections", type=int, default=10)
    parser.add_argument("--framed-send", type=int, default=1_000_000, help="bytes per connection")
    parser.add_argument("--framed-flood", type=int, default=120_000_000, help="W 0 bytes")
    parser.add_argument("--framed-bound-mb", type=float, default=1000.0)
    parser.add_argument(
        "--framed-only", default="", help="first words of the attacks to run: W,many,flood,8"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
