"""``make bench``: every measurement of docs/benchmarks.md, side by side, in one run.

Each measurement runs its parts in fresh processes on 127.0.0.1: a receiver (pinned to the
last core) and a client (load generator or sender, pinned to the first core), so that two
processes never share a core and the figures are stable. Every client warms up, then counts
acknowledged events over ``--repeats`` windows; the table shows the median and the range.

    python bench/run.py [--quick] [--only NAME[,NAME...]] [--list]

Results are printed and written to bench/out/results.json.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))

import measure  # noqa: E402
import tlscert  # noqa: E402
import workload  # noqa: E402

READY_TIMEOUT = 30.0
BUSY_LIMIT = 0.25  # cores used by other work during a window before a row is flagged


@dataclass
class Measurement:
    """One row of the table: an optional receiver process and one client process."""

    name: str
    group: str
    title: str
    client: list[str]
    receiver: list[str] | None = None
    tls: bool = False
    needs: tuple[str, ...] = ()


def measurements() -> list[Measurement]:
    """The default run, in the order printed."""
    load = ["loadgen.py"]
    ms = [
        Measurement("codec", "codec", "isal gunzip + orjson per line, no network", ["codec.py"]),
    ]
    for tls in (False, True):
        suffix, label = ("-tls", " over TLS") if tls else ("", "")
        ms += [
            Measurement(
                "aiohttp" + suffix,
                "receivers",
                "aiohttp.web reference" + label,
                load,
                ["aiohttp"],
                tls,
            ),
            Measurement(
                "native" + suffix,
                "receivers",
                "our native input (HttpInputFactory)" + label,
                load,
                ["native"],
                tls,
                ("twisted_logstash.wires.native.server",),
            ),
            Measurement(
                "twistedweb" + suffix,
                "receivers",
                "twisted.web Resource reference" + label,
                load,
                ["twistedweb"],
                tls,
            ),
        ]
    ms.insert(
        3,
        Measurement(
            "native-asyncio",
            "receivers",
            "our native input on the asyncio reactor",
            load,
            ["native", "--reactor", "asyncio"],
            False,
            ("twisted_logstash.wires.native.server",),
        ),
    )
    into = ["aiohttp"]
    ms += [
        Measurement(
            "send-aiohttp",
            "senders",
            "aiohttp client reference sender",
            ["senders.py", "aiohttp"],
            into,
        ),
        Measurement(
            "send-transmitter",
            "senders",
            "our HttpTransmitter, 4 in flight",
            ["senders.py", "transmitter"],
            into,
            needs=("twisted_logstash.wires.native.client",),
        ),
        Measurement(
            "send-output",
            "senders",
            "our Output service end to end (send())",
            ["senders.py", "output"],
            into,
            needs=("twisted_logstash.wires.native.client", "twisted_logstash.pipeline.output"),
        ),
        Measurement(
            "e2e-native",
            "senders",
            "our Output into our native input (both ends ours)",
            ["senders.py", "output"],
            ["native"],
            needs=(
                "twisted_logstash.wires.native.client",
                "twisted_logstash.pipeline.output",
                "twisted_logstash.wires.native.server",
            ),
        ),
        Measurement(
            "send-agent",
            "senders",
            "twisted.web.client Agent reference sender",
            ["senders.py", "agent"],
            into,
        ),
    ]
    # the output's queue alone, put(125)+get(125)+ack (bench/diskqueue.py has the full table)
    ms += [
        Measurement(
            f"queue-{kind}",
            "queues",
            title,
            ["diskqueue.py", "--row", kind],
            needs=("twisted_logstash.pipeline.diskqueue",),
        )
        for kind, title in (
            ("memory", "MemoryQueue cycle of 125, no network"),
            ("normal", "DiskQueue sync=normal (kill -9 safe) cycle of 125"),
            ("full", "DiskQueue sync=full (fsync per put and ack) cycle of 125"),
        )
    ]
    return ms


# --- machine -------------------------------------------------------------------------------


def machine() -> dict:
    """What a reader needs to place the figures."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def versions() -> dict:
    out = {}
    for name in ("twisted", "aiohttp", "orjson", "isal"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:
            out[name] = "?"
    return out


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


class Receiver:
    """A receiver process: started, READY awaited, stopped with SIGTERM, COUNT read."""

    def __init__(self, args: list[str], log: Path, core: int | None) -> None:
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "receivers.py"), *args],
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            cwd=ROOT,
        )
        pin(self.proc.pid, core)
        self.port = self._await_ready()

    def _await_ready(self) -> int:
        deadline = time.monotonic() + READY_TIMEOUT
        line = b""
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
        alive = self.proc.poll() is None
        self.stop()
        tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] or ["(empty)"]
        what = f"gave no READY within {READY_TIMEOUT:.0f} s" if alive else "exited"
        raise RuntimeError(
            f"receiver {what}; last log line: {tail[0][:200]} (see {self.log.relative_to(ROOT)})"
        )

    def stop(self) -> int | None:
        """Stop it; the events it says it decoded (None if it did not say)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self._log_file.close()
        for line in out.splitlines():
            if line.startswith(b"COUNT "):
                return int(line.split()[1])
        return None


def start_receiver(args: list[str], log: Path, core: int | None, tries: int = 2) -> Receiver:
    """A started receiver; one more try if the first did not come up (seen once on a busy
    machine, never reproduced)."""
    for attempt in range(tries):
        try:
            return Receiver(args, log, core)
        except RuntimeError as e:
            print(f"    receiver start {attempt + 1}/{tries} failed: {e}", flush=True)
            if attempt + 1 == tries:
                raise
    raise AssertionError("unreachable")


def run_client(args: list[str], log: Path, core: int | None, timeout: float) -> dict:
    with open(log, "wb") as err:
        proc = subprocess.run(
            [sys.executable, str(BENCH / args[0]), *args[1:]],
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


def measure_one(m: Measurement, opts, certs: Path | None, expect_digest: str) -> dict:
    row: dict = {"name": m.name, "group": m.group, "title": m.title}
    gone = missing(m.needs)
    if gone:
        row.update(status="skipped", reason="not available: " + ", ".join(gone))
        return row
    if m.tls and certs is None:
        row.update(status="skipped", reason="no TLS certificates")
        return row
    client_core, receiver_core = cores() if opts.pin else (None, None)
    if opts.settle > 0:
        row["busy_before"] = wait_quiet(opts.settle)
    logs = OUT / "logs"
    client = [
        *m.client,
        "--warmup",
        str(opts.warmup),
        "--window",
        str(opts.window),
        "--repeats",
        str(opts.repeats),
        "--in-flight",
        str(opts.in_flight),
    ]
    receiver = None
    try:
        if m.receiver is not None:
            rargs = list(m.receiver) + (["--tls", str(certs)] if m.tls else [])
            if opts.profile:
                rargs += ["--profile", str(OUT / f"{m.name}.receiver.prof")]
            receiver = start_receiver(rargs, logs / f"{m.name}.receiver.log", receiver_core)
            client += ["--port", str(receiver.port), "--peer-pid", str(receiver.proc.pid)]
            if m.tls:
                client += ["--cafile", str(certs / "ca.crt")]
        budget = opts.warmup + opts.window * opts.repeats + 60
        result = run_client(client, logs / f"{m.name}.client.log", client_core, budget)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        row.update(status="failed", reason=str(e))
        if receiver is not None:
            receiver.stop()
        return row
    decoded = receiver.stop() if receiver is not None else None
    if receiver is not None:
        lines = receiver.log.read_text(errors="replace").splitlines()
        row["receiver_notes"] = [line[:200] for line in lines[:5]]
    row.update(summarize(result, "peer_cpu" if m.group == "receivers" else "self_cpu"))
    row["status"] = "ok"
    row["receiver_decoded"] = decoded
    problems = []
    if result.get("digest") != expect_digest:
        problems.append(f"workload digest {result.get('digest')} != {expect_digest}")
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


# --- output --------------------------------------------------------------------------------

GROUP_TITLES = {
    "codec": "a. codec ceiling (one core, no network)",
    "receivers": "b. receivers under the same aiohttp load generator",
    "senders": "c. senders end to end into the aiohttp reference receiver (e2e-native: into ours)",
    "queues": "d. the output's queue alone: put(125) + get(125) + ack, one core, no network",
}


def table(rows: list[dict]) -> str:
    """Markdown, so that docs/benchmarks.md can take it as is."""
    lines = []
    for group, title in GROUP_TITLES.items():
        members = [r for r in rows if r["group"] == group]
        if not members:
            continue
        lines += [f"**{title}**", ""]
        lines += [
            "| name | what | events/s median | range (min-max) | events per CPU-s "
            "| client CPU | receiver CPU | other CPU | clean windows |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in members:
            if r["status"] != "ok":
                lines.append(
                    f"| {r['name']} | {r['title']} | {r['status']}: {r['reason']} | | | | | | |"
                )
                continue
            flag = " (!)" if r["problems"] else (" (~)" if r.get("warnings") else "")
            lines.append(
                f"| {r['name']} | {r['title']} | {r['median']:,}{flag} | "
                f"{r['min']:,}-{r['max']:,} | {_num(r['per_cpu_s'])} | {_pct(r['client_cpu'])} | "
                f"{_pct(r['receiver_cpu'])} | {_pct(r['other_cpu'])} | {r['clean']} |"
            )
        lines.append("")
    for key, title in (("problems", "Problems (rows marked (!))"), ("warnings", "Warnings (~)")):
        notes = [(r["name"], p) for r in rows for p in r.get(key, [])]
        if notes:
            lines.append(title + ":")
            lines += [f"- {name}: {p}" for name, p in notes]
            lines.append("")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def machine_line(m: dict, v: dict) -> str:
    return (
        f"machine: {m['platform']}; CPU {m['cpu']}; os.cpu_count()={m['cpu_count']}; "
        f"{m['implementation']} {m['python']}; {m['date']}; "
        + ", ".join(f"{k} {val}" for k, val in v.items())
    )


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (~30 s)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only these names or groups (comma list, repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list the measurements and exit")
    parser.add_argument("--warmup", type=float, default=None)
    parser.add_argument("--window", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin client and receiver to distinct cores",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=None,
        help="wait up to this long for an idle machine before each row",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=4,
        help="requests in flight (load generator, senders, Output max_in_flight); default 4",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile receivers (cProfile, slower) into bench/out/NAME.receiver.prof",
    )
    parser.add_argument("--out", type=Path, default=OUT / "results.json")
    opts = parser.parse_args(argv)
    quick = {"warmup": 0.2, "window": 0.4, "repeats": 3, "settle": 0.0}
    full = {"warmup": 1.0, "window": 1.5, "repeats": 5, "settle": 2.0}
    for key, value in (quick if opts.quick else full).items():
        if getattr(opts, key) is None:
            setattr(opts, key, value)
    return opts


def select_measurements(only: list[str]) -> list[Measurement]:
    ms = measurements()
    wanted = {w.strip() for item in only for w in item.split(",") if w.strip()}
    if not wanted:
        return ms
    unknown = wanted - {m.name for m in ms} - {m.group for m in ms}
    if unknown:
        raise SystemExit(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    return [m for m in ms if m.name in wanted or m.group in wanted]


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    chosen = select_measurements(opts.only)
    if opts.list:
        for m in chosen:
            print(f"{m.name:18} {m.group:10} {m.title}")
        return 0
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    m, v = machine(), versions()
    print(machine_line(m, v), flush=True)
    batches = workload.make_batches()
    bodies = workload.make_bodies()
    shape = workload.describe(bodies, batches)
    print(
        f"workload: {shape['events_per_batch']} events/batch, ~{shape['mean_event_bytes']:.0f} "
        f"bytes/event, gzip-1 body ~{shape['mean_batch_gzip_bytes']} bytes, "
        f"{shape['distinct_batches']} distinct batches (digest {shape['digest']}); "
        f"{opts.in_flight} requests in flight; warm-up {opts.warmup}s, "
        f"{opts.repeats} x {opts.window}s windows",
        flush=True,
    )
    certs = None
    if any(x.tls for x in chosen):
        try:
            certs, how = tlscert.ensure(OUT / "certs")
            print(f"TLS certificates: {how}", flush=True)
        except Exception as e:  # a broken generator should not stop the plain measurements
            print(f"TLS certificates unavailable: {e}", flush=True)
    rows = []
    started = time.monotonic()
    for meas in chosen:
        row = measure_one(meas, opts, certs, shape["digest"])
        rows.append(row)
        if row["status"] == "ok":
            print(
                f"  {meas.name:18} {row['median']:>10,} events/s  "
                f"[{row['min']:,}-{row['max']:,}]  {_num(row['per_cpu_s'])}/CPU-s  "
                f"client {_pct(row['client_cpu'])}  "
                f"receiver {_pct(row['receiver_cpu'])}  other {_pct(row['other_cpu'])}  "
                f"clean {row['clean']}"
                + ("  PROBLEMS: " + "; ".join(row["problems"]) if row["problems"] else "")
                + ("  (machine busy)" if row["warnings"] else ""),
                flush=True,
            )
        else:
            print(f"  {meas.name:18} {row['status']}: {row['reason']}", flush=True)
    elapsed = time.monotonic() - started
    print()
    print(table(rows))
    print(f"total {elapsed:.0f} s")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(
        json.dumps(
            {
                "machine": m,
                "versions": v,
                "workload": shape,
                "settings": {
                    "warmup": opts.warmup,
                    "window": opts.window,
                    "repeats": opts.repeats,
                    "in_flight": opts.in_flight,
                    "pinned": opts.pin and cores() != (None, None),
                },
                "elapsed_s": round(elapsed, 1),
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"results written to {opts.out}")
    failed = [r for r in rows if r["status"] == "failed" or r.get("problems")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
