"""How one row is measured: its processes started, pinned, awaited, measured and stopped.

The contract with a client process (bench/loadgen.py, bench/senders.py, bench/codec.py, the C
bench/cloadgen.c): it takes ``--warmup --window --repeats --in-flight`` (and ``--port
--peer-pid --cafile`` when there is a receiver), warms up, counts only acknowledged events over
the windows, and prints one line ``RESULT {json}``: per window the events, the wall time, its
own CPU, the receiver's CPU (``--peer-pid`` and every process under it) and the CPU of the
whole machine; the totals, refused answers, errors, and the digest of the bytes it sent.

A receiver started from bench/ (receivers.py, ``cloadgen serve-framed``) prints ``READY
<port>``, and ``COUNT <events decoded>`` on SIGTERM, so that no acknowledgement is believed
for events the receiver did not decode. ``twistd`` and external receivers get a free port
chosen here and are ready once it accepts a connection; they say no COUNT.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cloadgen
import measure
from rows import Measurement

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"

READY_TIMEOUT = 30.0
EXTERNAL_READY_TIMEOUT = 180.0  # a JVM and its plugins take their time
BUSY_LIMIT = 0.25  # cores used by other work during a window before a row is flagged


@dataclass
class Context:
    """What every row of a run shares: certificates, payload files and their digests, the C
    load generator (or why there is none), and what ``twistd logstash-input`` accepts."""

    certs: Path | None = None
    digests: dict[str, str] = field(default_factory=dict)
    payloads: dict[str, Path] = field(default_factory=dict)
    cloadgen: Path | None = None
    cloadgen_error: str | None = None
    python_loadgen: bool = False
    _workers_flag: bool | None = None

    def prepare(self, out: Path) -> None:
        """Build the C load generator and write its payload files (a failed build is kept,
        as the reason of the rows that need it)."""
        try:
            self.cloadgen = cloadgen.build(out)
        except (cloadgen.BuildError, OSError, subprocess.SubprocessError) as e:
            self.cloadgen_error = str(e)
        for wire, (path, digest) in cloadgen.payload_files(out).items():
            self.payloads[wire], self.digests[wire] = path, digest

    def workers_flag(self) -> bool:
        """Does ``twistd logstash-input`` take ``--workers``? (Asked once.)"""
        if self._workers_flag is None:
            try:
                done = subprocess.run(
                    [*twistd(), "logstash-input", "--help"],
                    capture_output=True,
                    timeout=60,
                    cwd=ROOT,
                )
                self._workers_flag = b"--workers" in done.stdout + done.stderr
            except (OSError, subprocess.SubprocessError):
                self._workers_flag = False
        return self._workers_flag


def twistd() -> list[str]:
    """The twistd of this interpreter."""
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


# --- processes -----------------------------------------------------------------------------


def cores() -> tuple[int | None, int | None]:
    """(client core, receiver core): distinct cores when there are two, else no pinning."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[-1]


def pin(pid: int, core: int | None) -> None:
    if core is not None:
        try:
            os.sched_setaffinity(pid, {core})
        except OSError:
            pass


def free_port() -> int:
    """A port nobody listens on now, for receivers that cannot tell theirs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Receiver:
    """A receiver process: started, awaited (its READY line, or its port accepting),
    stopped with SIGTERM (its whole process group when it has one), COUNT read."""

    def __init__(
        self,
        argv: list[str],
        log: Path,
        core: int | None,
        port: int | None = None,
        timeout: float = READY_TIMEOUT,
        group: bool = False,
    ) -> None:
        self.log = log
        self.group = group
        self._log_file = open(log, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if port is None else self._log_file,
            stderr=self._log_file,
            cwd=ROOT,
            start_new_session=group,
        )
        pin(self.proc.pid, core)
        self.port = self._await_line(timeout) if port is None else self._await_port(port, timeout)

    def _await_line(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith(b"READY "):
                    return int(line.split()[1])
                if not line:
                    break
            elif self.proc.poll() is not None:
                break
        self._gave_up(timeout)

    def _await_port(self, port: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if accepts(port):
                return port
            time.sleep(0.2)
        self._gave_up(timeout)

    def _gave_up(self, timeout: float):
        alive = self.proc.poll() is None
        self.stop()
        tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] or ["(empty)"]
        what = f"was not ready within {timeout:.0f} s" if alive else "exited"
        raise RuntimeError(
            f"receiver {what}; last log line: {tail[0][:200]} (see {self.log.relative_to(ROOT)})"
        )

    def _signal(self, sig: int) -> None:
        try:
            if self.group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def stop(self) -> int | None:
        """Stop it; the events it says it decoded (None if it did not say)."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            out, _ = self.proc.communicate()
        if self.group:
            self._signal(signal.SIGKILL)  # whatever of the group outlived its leader
        self._log_file.close()
        for line in (out or b"").splitlines():
            if line.startswith(b"COUNT "):
                return int(line.split()[1])
        return None


def start_receiver(make, tries: int = 2) -> Receiver:
    """A started receiver (``make()`` starts one); one more try if the first did not come up
    (seen once on a busy machine, never reproduced)."""
    for attempt in range(tries):
        try:
            return make()
        except RuntimeError as e:
            print(f"    receiver start {attempt + 1}/{tries} failed: {e}", flush=True)
            if attempt + 1 == tries:
                raise
    raise AssertionError("unreachable")


def receiver_for(m: Measurement, ctx: Context, opts, core: int | None) -> Receiver:
    """The receiver process of row ``m``."""
    log = OUT / "logs" / f"{m.name}.receiver.log"
    if m.launch == "receivers":
        args = list(m.receiver) + (["--tls", str(ctx.certs)] if m.tls else [])
        if opts.profile:
            args += ["--profile", str(OUT / f"{m.name}.receiver.prof")]
        argv = [sys.executable, str(BENCH / "receivers.py"), *args]
        return start_receiver(lambda: Receiver(argv, log, core))
    if m.launch == "cserve":
        argv = [str(ctx.cloadgen), "serve-framed"]
        return start_receiver(lambda: Receiver(argv, log, core))
    port = free_port()
    if m.launch == "twistd":
        argv = [
            *twistd(),
            "-n",
            "--pidfile=",
            f"--logfile={OUT / 'logs' / f'{m.name}.twistd.log'}",
            "logstash-input",
            "--protocol=" + ("lumberjack" if m.wire == "framed" else "http"),
            "--host=127.0.0.1",
            f"--port={port}",
            "--ssl-enabled=false",
            "--sink=null",
            f"--workers={m.workers}",
            *m.flags,
        ]
        receiver = start_receiver(lambda: Receiver(argv, log, core, port, group=True))
        settle_workers(receiver.proc.pid, m.workers or 1)
        return receiver
    certs = ctx.certs or OUT / "certs"
    command = m.command.format(
        port=port,
        cert=certs / "server.crt",
        key=certs / "server.pkcs8.key",
        ca=certs / "ca.crt",
        certdir=certs,
    )
    argv = ["sh", "-c", command]
    return Receiver(argv, log, core, port, EXTERNAL_READY_TIMEOUT, group=True)


def settle_workers(pid: int, workers: int, limit: float = 10.0) -> None:
    """Wait (up to ``limit`` s) until the parent has its workers, then until the tree's CPU
    is quiet: a worker still importing during a window would count against the figures."""
    deadline = time.monotonic() + limit
    while workers > 1 and len(measure.tree_pids(pid)) <= workers:
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)
    before = measure.tree_cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        after = measure.tree_cpu(pid)
        if before is None or after is None or after - before < 0.05:
            return
        before = after


def client_argv(m: Measurement, ctx: Context) -> tuple[list[str] | None, str | None]:
    """The client's command line; or None and why it cannot run here."""
    if m.client[0] != "cloadgen":
        return [sys.executable, str(BENCH / m.client[0]), *m.client[1:]], None
    if ctx.cloadgen is not None and not ctx.python_loadgen:
        return [
            str(ctx.cloadgen),
            "load",
            "--mode",
            m.wire,
            "--payloads",
            str(ctx.payloads[m.wire]),
        ], None
    if m.wire == "native" and m.launch == "receivers":
        return [sys.executable, str(BENCH / "loadgen.py")], None
    return None, ctx.cloadgen_error or "the Python load generator speaks the native wire only"


def run_client(argv: list[str], log: Path, core: int | None, timeout: float) -> dict:
    with open(log, "wb") as err:
        proc = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
            timeout=timeout,
            preexec_fn=(lambda: pin(0, core)) if core is not None else None,
        )
    for line in proc.stdout.splitlines():
        if line.startswith(b"RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(
        f"client exited {proc.returncode} without a result (see {log.relative_to(ROOT)})"
    )


def missing(modules: tuple[str, ...]) -> list[str]:
    gone = []
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                gone.append(name)
        except ModuleNotFoundError:
            gone.append(name)
    return gone


def wait_quiet(limit: float) -> float | None:
    """Wait up to ``limit`` seconds for the machine to be idle; the busy cores last seen."""
    deadline = time.monotonic() + limit
    while True:
        before = measure.system_busy()
        time.sleep(0.3)
        after = measure.system_busy()
        if before is None or after is None:
            return None
        busy = (after - before) / 0.3
        if busy < 0.15 or time.monotonic() >= deadline:
            return round(busy, 2)


# --- one measurement -----------------------------------------------------------------------


def skip_reason(m: Measurement, ctx: Context) -> str | None:
    gone = missing(m.needs)
    if gone:
        return "not available: " + ", ".join(gone)
    if m.tls and ctx.certs is None:
        return "no TLS certificates"
    if m.launch == "cserve" and ctx.cloadgen is None:
        return ctx.cloadgen_error
    if m.launch == "twistd" and not ctx.workers_flag():
        return "twistd logstash-input does not accept --workers (yet)"
    return None


def measure_one(m: Measurement, opts, ctx: Context) -> dict:
    row: dict = {"name": m.name, "group": m.group, "title": m.title, "wire": m.wire}
    argv, why = client_argv(m, ctx)
    why = skip_reason(m, ctx) or why
    if why:
        row.update(status="skipped", reason=why)
        return row
    client_core, receiver_core = cores() if opts.pin and m.pin else (None, None)
    if opts.settle > 0:
        row["busy_before"] = wait_quiet(opts.settle)
    logs = OUT / "logs"
    argv += [
        "--warmup",
        str(opts.warmup),
        "--window",
        str(opts.window),
        "--repeats",
        str(opts.repeats),
        "--in-flight",
        str(opts.in_flight),
    ]
    row["client"] = " ".join(shlex.quote(Path(a).name if i == 0 else a) for i, a in enumerate(argv))
    receiver = None
    try:
        if m.receiver is not None or m.launch != "receivers":
            receiver = receiver_for(m, ctx, opts, receiver_core)
            argv += ["--port", str(receiver.port), "--peer-pid", str(receiver.proc.pid)]
            if m.tls:
                argv += ["--cafile", str(ctx.certs / "ca.crt")]
        budget = opts.warmup + opts.window * opts.repeats + 60
        result = run_client(argv, logs / f"{m.name}.client.log", client_core, budget)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        row.update(status="failed", reason=str(e))
        if receiver is not None:
            receiver.stop()
        return row
    decoded = receiver.stop() if receiver is not None else None
    if receiver is not None:
        lines = receiver.log.read_text(errors="replace").splitlines()
        row["receiver_notes"] = [line[:200] for line in lines[:5]]
    row.update(summarize(result, m.measured))
    row["status"] = "ok"
    row["receiver_decoded"] = decoded
    problems = []
    expect = ctx.digests.get(m.wire if m.group != "senders" else "native")
    if expect and result.get("digest") != expect:
        problems.append(f"workload digest {result.get('digest')} != {expect}")
    if decoded is not None and "acked_total" in result and decoded < result["acked_total"]:
        problems.append(f"acknowledged {result['acked_total']} events, receiver decoded {decoded}")
    if result.get("refused"):
        problems.append(f"refused answers {result['refused']}")
    if result.get("errors"):
        problems.append(f"errors {result['errors']}")
    if not row.get("median"):
        problems.append("nothing acknowledged")
    row["warnings"] = []
    if (row.get("other_cpu") or 0) > BUSY_LIMIT:
        row["warnings"].append(
            f"other work used {row['other_cpu']:.2f} cores meanwhile: events/s not comparable "
            "(events per CPU-s less affected); re-run on an idle machine"
        )
    row["problems"] = problems
    for key in ("acked_total", "requests", "refused", "errors", "info"):
        if key in result:
            row[key] = result[key]
    return row


def summarize(result: dict, measured: str = "self_cpu") -> dict:
    """Median and range of the windows; ``measured`` names the CPU figure of the process under
    test ("peer_cpu" for a receiver, "self_cpu" for a sender or the codec), from which comes
    events per CPU-second: what that process does with one core.

    Windows during which other work used more than BUSY_LIMIT cores are set aside when at
    least one window was clean: the figures are then those of the clean windows, and
    ``clean`` says how many of how many that was. Nothing else is ever dropped."""
    windows = result["windows"]
    for w in windows:
        if w.get("system_cpu") is not None:
            ours = (w.get("self_cpu") or 0) + (w.get("peer_cpu") or 0)
            w["other_cpu"] = round(max(0.0, w["system_cpu"] - ours), 3)
        if w.get(measured):
            w["per_cpu_s"] = round(w["events_per_s"] / w[measured])
    clean = [w for w in windows if w.get("other_cpu", 0) <= BUSY_LIMIT]
    used = clean or windows
    rates = [w["events_per_s"] for w in used]

    def med(key: str) -> float | None:
        values = [w[key] for w in used if w.get(key) is not None]
        return round(statistics.median(values), 2) if values else None

    per_cpu = med("per_cpu_s")
    return {
        "median": round(statistics.median(rates)) if rates else 0,
        "min": round(min(rates)) if rates else 0,
        "max": round(max(rates)) if rates else 0,
        "client_cpu": med("self_cpu"),
        "receiver_cpu": med("peer_cpu"),
        "other_cpu": med("other_cpu"),
        "per_cpu_s": round(per_cpu) if per_cpu else None,
        "clean": f"{len(clean)}/{len(windows)}",
        "windows": windows,
    }
