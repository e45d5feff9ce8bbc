"""Chaos run: the real programs under network faults and kill -9, counting every event.

    .venv/bin/python bench/chaos.py [--events N] [--duration S] [--seed S] [--workdir DIR]
        [--protocol http|lumberjack] [--no-stuck] [--oversized N] [--no-disk-full]

One ``twistd logstash-output`` (``--queue disk:DIR``, ``--source file:EVENTS``) sends to three
``twistd logstash-input`` processes (``--ssl-enabled false``, ``--sink file:...``), each behind a
FaultProxy (bench/proxy.py) on 127.0.0.1. The run goes in rounds: each round appends ``--events``
events to the events file and starts the output on it with the same queue directory (a clean
restart must read on after what it already sent). During a round, at set points of progress,
the run injects a reset, a stall and a partition; kills the output with SIGKILL and starts it
again (it must resume: the file position and the unacknowledged events are in the queue); kills
an input with SIGKILL and starts it again (on a new port; its proxy follows it). Between these,
one fault every ``--every`` seconds hits the proxies in turn. A round ends when the output exits
by itself after its last acknowledgement; no new round starts after ``--duration`` seconds.

Then every sink file is read: ``received`` is the number of distinct event ids, ``duplicates``
the extra copies (at-least-once delivery allows them), ``lost`` the ids sent and never received.
One summary line is printed; the exit status is 1 if anything was lost (or dead-lettered, or the
run missed its deadline), else 0.

Each input keeps its sink file across its incarnations. A kill -9 in mid-write may leave a
torn last line, too rarely to count on: after each kill -9 of an input the run writes one by
hand (part of an event, no newline), and the restarted input must cut it, so that every line
of every sink parses (``unknown`` is 0).
Three more faults of issue 11, each a flag, on by default (the run's length is set by
``--duration``; together they take a round of 50,000 events from about 4 s to about 7.5 s, so a
90 s run makes 10 rounds instead of 24; the stuck receiver costs most, each batch it takes
waiting ``--timeout``):

- ``--stuck``: one more host in the output's ``--hosts``, a receiver that accepts connections and
  never acknowledges. On the framed wire it sends keep-alive ACKs (``A 0``) every half second,
  forever; on the native wire it never answers. The output must give up on it after
  ``--timeout`` and send its batches to the other hosts: nothing is lost.
- ``--oversized N``: N events of about 1 MB each, one after the other, mixed into each round's
  events, with the inputs' ``--max-content-length`` (native wire) at 4 MiB, so that a batch sized
  by count only (125 events) would be refused; the output's ``--batch-max-bytes`` of 2 MiB must
  cut the batch: nothing is lost or dead-lettered.
- ``--disk-full``: the output's queue directory on a small tmpfs (needs root and ``mount``; the
  fault is skipped with a note otherwise), filled to the last byte by a ballast file for
  ``--disk-full-hold`` seconds mid-round, then freed: the output retries its queue writes
  (``--queue-retry-timeout``) and nothing is lost.

Progress is read by counting lines in the sink files every few milliseconds: this is a
benchmark, the tests wait on Deferreds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet import defer, error, protocol, task

from twisted_logstash.wires.lumberjack.frames import encode_ack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy import FaultProxy

BINDIR = Path(sys.executable).parent
LISTENING = re.compile(rb"input listening on (\S+):(\d+)")
POLL = 0.02  # seconds between looks at the sink files
TIMEOUT = 5.0  # the output's --timeout: seconds an attempt may take
BIG = 1_000_000  # bytes of padding of an --oversized event
MAX_CONTENT_LENGTH = 4 * 1024 * 1024  # the inputs' limit under --oversized
BATCH_MAX_BYTES = 2 * 1024 * 1024  # the output's cut under --oversized
KEEPALIVE = 0.5  # seconds between the stuck receiver's keep-alive ACKs
QUEUE_FS = "64m"  # the tmpfs under the queue for --disk-full


# -- child processes ---------------------------------------------------------------------------


class Child(protocol.ProcessProtocol):
    """A twistd program: its output kept, Deferreds for a line and for its end."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log
        self.log = open(log, "ab")  # noqa: SIM115 - the process writes to it as it runs
        self.seen = b""
        self.status: int | None = None
        self.ended: defer.Deferred = defer.Deferred()
        self._waiting: list[tuple[re.Pattern, defer.Deferred]] = []

    def outReceived(self, data: bytes) -> None:
        self.log.write(data)
        self.seen = (self.seen + data)[-65536:]
        for entry in list(self._waiting):
            match = entry[0].search(self.seen)
            if match:
                self._waiting.remove(entry)
                entry[1].callback(match)

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        value = reason.value
        if isinstance(value, error.ProcessTerminated) and value.signal is not None:
            self.status = -value.signal
        else:
            self.status = getattr(value, "exitCode", 0) or 0
        self.log.close()
        for _, d in self._waiting:
            d.errback(RuntimeError(f"{self.name} exited with {self.status}; see {self.log_path}"))
        self._waiting = []
        self.ended.callback(self.status)

    def wait_for(self, pattern: bytes, reactor, timeout: float = 30.0) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        compiled = re.compile(pattern)
        match = compiled.search(self.seen)
        if match:
            return defer.succeed(match)
        if self.status is not None:
            return defer.fail(RuntimeError(f"{self.name} exited with {self.status}"))
        self._waiting.append((compiled, d))
        return d.addTimeout(timeout, reactor)

    def kill(self, number: int) -> None:
        if self.status is None:
            try:
                self.transport.signalProcess(number)
            except error.ProcessExitedAlready:
                pass


def spawn(reactor, name: str, args: list[str], workdir: Path, log: Path) -> Child:
    argv = [str(BINDIR / "twistd"), "-n", "--pidfile=", *args]
    child = Child(name, argv, log)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    reactor.spawnProcess(child, argv[0], argv, env=env, path=str(workdir))
    return child


# -- a stuck receiver ----------------------------------------------------------------------------


class Stuck(protocol.Protocol):
    """Reads everything and acknowledges nothing; on the framed wire, once a window began to
    arrive, sends keep-alive ACKs forever (a receiver stuck behind its sink)."""

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self._keepalive: task.LoopingCall | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.factory.framed and self._keepalive is None:
            self._keepalive = task.LoopingCall(self.transport.write, encode_ack(0))
            self._keepalive.clock = self.factory.reactor
            self._keepalive.start(KEEPALIVE, now=True)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()


class StuckFactory(protocol.Factory):
    protocol = Stuck

    def __init__(self, reactor, framed: bool) -> None:
        self.reactor = reactor
        self.framed = framed
        self.connections = 0


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Result:
    sent: int = 0
    received: int = 0
    duplicates: int = 0
    lost: int = 0
    unknown: int = 0  # lines in the sinks that are not events of this run
    dead_lettered: int = 0
    stuck_connections: int = 0  # connections the output made to the stuck receiver
    oversized: int = 0  # events of about 1 MB sent
    disk_full: int = 0  # disk-full spells under the output's queue
    resets: int = 0
    stalls: int = 0
    partitions: int = 0
    kills: int = 0
    rounds: int = 0
    output_restarts: int = 0
    input_restarts: int = 0
    output_status: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0 and self.unknown == 0 and self.dead_lettered == 0 and not self.timed_out
        )

    def summary(self) -> str:
        return (
            f"chaos: sent={self.sent} received={self.received} duplicates={self.duplicates} "
            f"lost={self.lost} resets={self.resets} stalls={self.stalls} "
            f"partitions={self.partitions} kills={self.kills} "
            f"stuck_connections={self.stuck_connections} oversized={self.oversized} "
            f"disk_full={self.disk_full} unknown={self.unknown} "
            f"dead_lettered={self.dead_lettered} rounds={self.rounds} seconds={self.seconds:.0f}"
        )


class Chaos:
    """One run; ``run()`` returns a Deferred firing with a Result."""

    def __init__(
        self,
        reactor,
        workdir: Path,
        *,
        events: int = 50_000,
        duration: float = 90.0,
        inputs: int = 3,
        seed: int = 1,
        every: float = 2.0,
        stall: float = 1.5,
        long_stall: float | None = None,
        protocol: str = "http",
        partition: float = 2.0,
        deadline: float = 300.0,
        kill_output_at: float = 0.35,
        kill_input_at: float = 0.6,
        stuck: bool = False,
        oversized: int = 0,
        disk_full: bool = False,
        disk_full_hold: float = 0.5,
        quiet: bool = False,
    ) -> None:
        self.reactor = reactor
        self.workdir = workdir
        self.events = events
        self.duration = duration
        self.inputs = inputs
        self.rng = random.Random(seed)
        self.every = every
        self.stall_seconds = stall
        self.long_stall = long_stall
        self._stalls = 0
        self.protocol = protocol
        self.partition_seconds = partition
        self.deadline = deadline
        self.kill_output_at = kill_output_at
        self.kill_input_at = kill_input_at
        self.stuck = stuck
        self.oversized = oversized
        self.disk_full = disk_full
        self.disk_full_hold = disk_full_hold
        self._stuck_port = None
        self._stuck_factory: StuckFactory | None = None
        self._mounted: Path | None = None
        self.queue_dir = workdir / "queue"
        self.quiet = quiet
        self.result = Result()
        self._round_start = 0
        self.proxies: list[FaultProxy] = []
        self.receivers: list[Child | None] = [None] * inputs
        self.incarnations = [0] * inputs
        self.sinks: list[Path] = []
        self.output: Child | None = None
        self._lines = 0
        self._offsets: dict[Path, int] = {}
        self._faults = 0
        self._start = 0.0

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"chaos: [{time.monotonic() - self._start:6.1f}s] {text}", flush=True)

    # -- set-up ---------------------------------------------------------------------------

    def append_events(self, path: Path) -> None:
        """Append this round's events; ids go on from the previous round's."""
        first = self.result.sent
        pad = "x" * 40
        big = "x" * BIG
        # the big ones come one after the other, a third of the way in: a batch sized by count
        # only would hold them all
        start = first + self.events // 3
        bigs = range(start, start + min(self.oversized, self.events))
        with open(path, "a") as f:
            for i in range(first, first + self.events):
                event = {"id": i, "message": f"chaos event {i}", "pad": big if i in bigs else pad}
                f.write(json.dumps(event) + "\n")
        self.result.sent += self.events
        self.result.oversized += len(bigs)

    async def start_input(self, index: int) -> int:
        self.incarnations[index] += 1
        sink = self.sink_of(index)
        if sink not in self.sinks:
            self.sinks.append(sink)
        log = self.workdir / f"input-{index}.log"
        child = spawn(
            self.reactor,
            f"input {index}",
            [
                "logstash-input",
                f"--protocol={self.protocol}",
                "--host=127.0.0.1",
                "--port=0",
                "--ssl-enabled=false",
                f"--sink=file:{sink}",
                *(
                    [f"--max-content-length={MAX_CONTENT_LENGTH}"]
                    if self.oversized and self.protocol == "http"
                    else []
                ),
            ],
            self.workdir,
            log,
        )
        self.receivers[index] = child
        match = await child.wait_for(LISTENING, self.reactor)
        return int(match.group(2))

    def sink_of(self, index: int) -> Path:
        return self.workdir / f"sink-{index}.ndjson"

    def start_output(self, events_file: Path) -> Child:
        ports = [p.port for p in self.proxies]
        if self._stuck_port is not None:
            ports.append(self._stuck_port.getHost().port)
        hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
        return spawn(
            self.reactor,
            "output",
            [
                "logstash-output",
                f"--protocol={self.protocol}",
                f"--hosts={hosts}",
                "--ssl-enabled=false",
                f"--source=file:{events_file}",
                f"--queue=disk:{self.queue_dir}",
                f"--dead-letter={self.workdir / 'dead-letter.ndjson'}",
                "--cooloff=1",
                f"--timeout={TIMEOUT:g}",
                *([f"--batch-max-bytes={BATCH_MAX_BYTES}"] if self.oversized else []),
            ],
            self.workdir,
            self.workdir / "output.log",
        )

    # -- progress -------------------------------------------------------------------------

    def count_lines(self) -> int:
        """Lines written to the sinks so far (duplicates included), read incrementally."""
        for sink in self.sinks:
            try:
                with open(sink, "rb") as f:
                    f.seek(self._offsets.get(sink, 0))
                    data = f.read()
            except FileNotFoundError:
                continue
            self._offsets[sink] = self._offsets.get(sink, 0) + len(data)
            self._lines += data.count(b"\n")
        return self._lines

    async def progress(self, fraction: float) -> None:
        """Wait until about ``fraction`` of this round's events reached the sinks (or the
        output ended)."""
        target = self._round_start + fraction * self.events
        while self.count_lines() < target:
            if self.output is not None and self.output.status is not None:
                return
            await task.deferLater(self.reactor, POLL, lambda: None)

    # -- faults ---------------------------------------------------------------------------

    def inject(self, kind: str | None = None) -> None:
        proxy = self.proxies[self._faults % len(self.proxies)]
        kind = kind or self.rng.choice(("reset", "stall", "partition"))
        self._faults += 1
        if kind == "reset":
            count = proxy.reset()
            self.say(f"reset {count} connections to input {self.proxies.index(proxy)}")
        elif kind == "stall":
            # every other stall outlasts the output's attempt timeout, if a long one is set:
            # the attempt fails and is retried elsewhere while its request is still on its way
            self._stalls += 1
            seconds = self.stall_seconds
            if self.long_stall is not None and self._stalls % 2 == 0:
                seconds = self.long_stall
            proxy.stall(seconds)
            self.say(f"stall input {self.proxies.index(proxy)} for {seconds} s")
        else:
            proxy.partition(self.partition_seconds)
            self.say(f"partition input {self.proxies.index(proxy)} for {self.partition_seconds} s")

    def mount_queue(self) -> None:
        """Put the queue directory on a small tmpfs for --disk-full, or say why not."""
        if os.geteuid() != 0:
            self.result.notes.append("disk-full skipped: not root (mount needs it)")
            self.disk_full = False
            return
        mountpoint = self.workdir / "queuefs"
        mountpoint.mkdir(exist_ok=True)
        status = os.system(f"mount -t tmpfs -o size={QUEUE_FS} tmpfs {mountpoint} 2>/dev/null")
        if status != 0:
            self.result.notes.append(f"disk-full skipped: mount -t tmpfs failed ({status})")
            self.disk_full = False
            return
        self._mounted = mountpoint
        self.queue_dir = mountpoint / "queue"
        self.say(f"queue on a tmpfs of {QUEUE_FS} at {mountpoint}")

    def unmount_queue(self) -> None:
        if self._mounted is not None:
            status = os.system(f"umount {self._mounted}")
            if status != 0:
                self.result.notes.append(f"umount {self._mounted} failed ({status})")
            self._mounted = None

    async def fill_disk(self) -> None:
        """Fill the queue's filesystem to the last byte, hold, then free it."""
        ballast = self._mounted / "ballast"
        chunk = b"\0" * 65536
        written = 0
        with open(ballast, "wb", buffering=0) as f:
            while True:
                try:
                    written += f.write(chunk)
                except OSError:
                    break
        self.result.disk_full += 1
        self.say(
            f"disk full under the queue ({written} bytes of ballast) for {self.disk_full_hold} s"
        )
        await task.deferLater(self.reactor, self.disk_full_hold, lambda: None)
        ballast.unlink()
        self.say("disk space freed")

    async def kill_output(self, events_file: Path) -> None:
        self.say(f"kill -9 the output at {self._lines} lines received")
        self.output.kill(signal.SIGKILL)
        await self.output.ended
        self.result.kills += 1
        self.result.output_restarts += 1
        self.output = self.start_output(events_file)
        self.say("output restarted on the same queue directory")

    async def kill_input(self, index: int) -> None:
        self.say(f"kill -9 input {index} at {self._lines} lines received")
        child = self.receivers[index]
        child.kill(signal.SIGKILL)
        await child.ended
        with open(self.sink_of(index), "ab") as sink:  # as a kill in mid-write leaves it
            sink.write(b'{"id":0,"message":"torn by a kill -9 in mid-wri')
        self.result.kills += 1
        self.result.input_restarts += 1
        port = await self.start_input(index)
        self.proxies[index].retarget(port)
        self.say(f"input {index} restarted on port {port}")

    # -- the whole run --------------------------------------------------------------------

    def run(self) -> defer.Deferred:
        return defer.ensureDeferred(self._run())

    async def _run(self) -> Result:
        self._start = time.monotonic()
        events_file = self.workdir / "events.ndjson"
        try:
            if self.disk_full:
                self.mount_queue()
            if self.stuck:
                self._stuck_factory = StuckFactory(self.reactor, self.protocol == "lumberjack")
                self._stuck_port = self.reactor.listenTCP(
                    0, self._stuck_factory, interface="127.0.0.1"
                )
                self.say(f"stuck receiver on port {self._stuck_port.getHost().port}")
            for index in range(self.inputs):
                port = await self.start_input(index)
                proxy = FaultProxy(self.reactor, "127.0.0.1", port)
                proxy.listen()
                self.proxies.append(proxy)
            timer = self.reactor.callLater(self.deadline, self._timeout)
            faults = task.LoopingCall(self.inject)
            faults.clock = self.reactor
            try:
                while not self.result.timed_out:
                    self.result.rounds += 1
                    self.append_events(events_file)
                    self._round_start = self.count_lines()
                    self.say(f"round {self.result.rounds}: {self.events} more events")
                    self.output = self.start_output(events_file)
                    await self._round(events_file, faults)
                    if self.result.output_status != 0:
                        break
                    if time.monotonic() - self._start >= self.duration:
                        break
            finally:
                if faults.running:
                    faults.stop()
                if timer.active():
                    timer.cancel()
        finally:
            await self._stop_all()
            self.unmount_queue()
        self._count()
        self.result.seconds = time.monotonic() - self._start
        return self.result

    async def _round(self, events_file: Path, faults: task.LoopingCall) -> None:
        """One output run over this round's events: a fault of each kind, a kill -9 of the
        output and of an input, faults every few seconds, until the output exits."""
        for kind, at in (("reset", 0.05), ("stall", 0.12), ("partition", 0.2)):
            await self.progress(at)
            self.inject(kind)
        if not faults.running:
            faults.start(self.every, now=False)
        await self.progress(self.kill_output_at)
        if self.output.status is None:
            await self.kill_output(events_file)
        if self.disk_full:
            await self.progress(0.45)
            if self.output.status is None:
                await self.fill_disk()
        await self.progress(self.kill_input_at)
        if self.output.status is None:
            await self.kill_input(self.rng.randrange(self.inputs))
        status = await self.output.ended
        self.result.output_status = status
        self.say(f"output exited with {status}")
        if status != 0:
            self.result.notes.append(f"the output exited with {status}")

    def _timeout(self) -> None:
        self.result.timed_out = True
        self.result.notes.append(f"deadline of {self.deadline} s reached")
        self.say("deadline reached: stopping everything")
        if self.output is not None:
            self.output.kill(signal.SIGKILL)

    async def _stop_all(self) -> None:
        if self._stuck_port is not None:
            self.result.stuck_connections = self._stuck_factory.connections
            await self._stuck_port.stopListening()
        for proxy in self.proxies:
            self.result.resets += proxy.stats.resets
            self.result.stalls += proxy.stats.stalls
            self.result.partitions += proxy.stats.partitions
            await proxy.close()
        children = [c for c in [self.output, *self.receivers] if c is not None]
        for child in children:
            child.kill(signal.SIGTERM)
        for child in children:
            try:
                await child.ended.addTimeout(20, self.reactor)
            except defer.TimeoutError:
                child.kill(signal.SIGKILL)

    def _count(self) -> None:
        seen: set[int] = set()
        copies = 0
        unknown = 0
        for sink in self.sinks:
            if not sink.exists():
                continue
            with open(sink, "rb") as f:
                for line in f:
                    try:
                        ident = json.loads(line)["id"]
                    except (ValueError, KeyError, TypeError):
                        unknown += 1  # a torn line the restarted input did not cut
                        continue
                    if not isinstance(ident, int) or not 0 <= ident < self.result.sent:
                        unknown += 1
                        continue
                    copies += 1
                    seen.add(ident)
        self.result.received = len(seen)
        self.result.duplicates = copies - len(seen)
        self.result.lost = self.result.sent - len(seen)
        self.result.unknown = unknown
        dead = self.workdir / "dead-letter.ndjson"
        if dead.exists():
            with open(dead, "rb") as f:
                self.result.dead_lettered = sum(1 for _ in f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per round [50000]")
    parser.add_argument(
        "--duration", type=float, default=90.0, help="start no new round after [90] s"
    )
    parser.add_argument(
        "--protocol",
        choices=("http", "lumberjack"),
        default="http",
        help="the wire: http (native, default) or lumberjack (framed)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the faults [1]")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between faults [2]")
    parser.add_argument("--stall", type=float, default=1.5, help="seconds a stall lasts [1.5]")
    parser.add_argument(
        "--long-stall",
        type=float,
        default=TIMEOUT + 1.0,
        help=f"seconds every other stall lasts, beyond the output's --timeout={TIMEOUT:g} "
        f"[{TIMEOUT + 1.0:g}]; 0 for none",
    )
    parser.add_argument("--partition", type=float, default=2.0, help="seconds of a partition [2]")
    parser.add_argument(
        "--stuck",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add a receiver that never acknowledges (keep-alives forever on lumberjack) [on]",
    )
    parser.add_argument(
        "--oversized",
        type=int,
        default=8,
        help=f"events of {BIG} bytes per round, with --max-content-length={MAX_CONTENT_LENGTH} "
        f"on the inputs and --batch-max-bytes={BATCH_MAX_BYTES} on the output [8]; 0 for none",
    )
    parser.add_argument(
        "--disk-full",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"queue on a {QUEUE_FS} tmpfs filled for a moment mid-round (root only) [on]",
    )
    parser.add_argument(
        "--disk-full-hold", type=float, default=0.5, help="seconds the disk stays full [0.5]"
    )
    parser.add_argument("--deadline", type=float, default=300.0, help="give up after [300] s")
    parser.add_argument(
        "--workdir",
        help="keep everything here (default: a temporary directory, removed after a good run)",
    )
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    chaos = Chaos(
        reactor,
        workdir,
        events=args.events,
        duration=args.duration,
        seed=args.seed,
        every=args.every,
        stall=args.stall,
        long_stall=args.long_stall or None,
        protocol=args.protocol,
        partition=args.partition,
        deadline=args.deadline,
        stuck=args.stuck,
        oversized=args.oversized,
        disk_full=args.disk_full,
        disk_full_hold=args.disk_full_hold,
    )
    outcome: list[Result] = []

    def done(result):
        outcome.append(result)
        reactor.stop()

    def failed(failure):
        failure.printTraceback()
        reactor.stop()

    reactor.callWhenRunning(lambda: chaos.run().addCallbacks(done, failed))
    reactor.run()
    if not outcome:
        print("chaos: the run failed; see the logs in", workdir)
        return 2
    result = outcome[0]
    print(result.summary())
    for note in result.notes:
        print("chaos: note:", note)
    if result.ok and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)  # hundreds of MB of events and sinks
    else:
        print(f"chaos: logs and sinks in {workdir}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
