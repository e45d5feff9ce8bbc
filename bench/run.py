"""``make bench``: every measurement of docs/benchmarks.md, side by side, in one run.

Each measurement runs its parts in fresh processes on 127.0.0.1: a receiver (pinned to the
last core) and a client (load generator or sender, pinned to the first core), so that two
processes never share a core and the figures are stable. Every client warms up, then counts
acknowledged events over ``--repeats`` windows; the table shows the median and the range,
and events per CPU-second of the process under test (the receiver on receiver rows, the
sender or the codec loop on the others), with the client's and the receiver's CPU next to it.

    python bench/run.py [--quick] [--only NAME[,NAME...]] [--list] [--external SPEC]...

Rows (``--list`` prints them; ``--only`` takes names and groups):
- codec: ``codec`` (native: isal gunzip + orjson per line) and ``codec-framed`` (inflate a
  Lumberjack window, walk its J frames, orjson each), the ceilings of the two wires;
- receivers: the references (aiohttp, twisted.web) and our inputs, ``native`` and ``framed``,
  plain and ``-tls``, all under the C load generator bench/cloadgen.c (built here with gcc;
  it replays pre-encoded bytes: the gzip bodies of 125 events, or Beats-style windows of 2048
  events in one zlib-3 `C` frame, over 4 connections with one request or window in flight on
  each, and costs the receiver's core nothing: its own CPU is in the client column). Without
  gcc, the native rows fall back to bench/loadgen.py (Python, aiohttp), the framed rows are
  skipped; ``--python-loadgen`` forces that fallback to compare the two;
- workers: ``native-wN``, ``framed-wN``: ``twistd -n logstash-input --workers N --sink null``,
  unpinned (N workers need N cores, the load generator shares them), the receiver CPU being
  the parent's and all its workers'; skipped while ``--workers`` is not accepted;
- external (``--external``): a receiver built outside the project, e.g. Logstash's own beats
  input, under the same load. ``--external NAME:WIRE=COMMAND`` (repeatable): WIRE is
  ``native``, ``framed``, ``native-tls`` or ``framed-tls``; COMMAND is run by ``sh -c`` in
  its own process group with ``{port}`` (a free port it must listen on, 127.0.0.1),
  ``{cert}``, ``{key}`` (PKCS#8), ``{ca}`` and ``{certdir}`` replaced; it is ready once the
  port accepts a connection (up to 180 s) and is stopped with SIGTERM to its group. Its
  receiver CPU is that of the shell and everything under it. Unpinned, like the workers rows.
  A JVM needs a longer ``--warmup`` (its JIT compiles during the first seconds). Example,
  the project's Netty HTTP peer (gunzip and count lines, no JSON; it exits when its stdin
  closes, hence the ``sleep``): ``--external "netty-http:native=sleep 1d | exec java -cp
  $(cat tests/peers/netty/build/classpath) HttpReceiver {port}"``;
- senders: send-aiohttp, send-output (native wire, into the aiohttp reference),
  ``send-output-framed`` (our Output on the framed wire, into the C program's ACKing
  receiver: inflate, count, ACK, no JSON), e2e rows (our Output into our inputs);
- queues: the output's queue alone.

Results are printed and written to bench/out/results.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import rows  # noqa: E402
import tlscert  # noqa: E402
import workload  # noqa: E402
from harness import BUSY_LIMIT, cores, measure_one, summarize  # noqa: E402, F401
from rows import Measurement, measurements  # noqa: E402, F401
from table import machine_line, num, pct, table  # noqa: E402


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


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only these names or groups (comma list, repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list the measurements and exit")
    parser.add_argument(
        "--external",
        action="append",
        default=[],
        metavar="NAME:WIRE=COMMAND",
        help="add a receiver row running COMMAND (see above; repeatable)",
    )
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
        help="connections of the load generators, requests in flight of the senders and the "
        "Output's max_in_flight; default 4",
    )
    parser.add_argument(
        "--python-loadgen",
        action="store_true",
        help="drive the native receiver rows with bench/loadgen.py (aiohttp) instead of the "
        "C load generator (framed rows are then skipped)",
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


def select_measurements(only: list[str], externals: list[str] | None = None):
    """The rows named in ``only`` (names or groups), all when empty."""
    return rows.select(only, externals)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    chosen = select_measurements(opts.only, opts.external)
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
    ctx = harness.Context(python_loadgen=opts.python_loadgen)
    ctx.prepare(OUT)
    print(
        f"workload: {shape['events_per_batch']} events/batch, ~{shape['mean_event_bytes']:.0f} "
        f"bytes/event, gzip-1 body ~{shape['mean_batch_gzip_bytes']} bytes, "
        f"{shape['distinct_batches']} distinct batches (digest {shape['digest']}); framed: "
        f"{workload.DISTINCT_WINDOWS} windows of {workload.WINDOW_SIZE} (zlib "
        f"{workload.WINDOW_LEVEL}, digest {ctx.digests['framed']}); {opts.in_flight} "
        f"connections or requests in flight; warm-up {opts.warmup}s, "
        f"{opts.repeats} x {opts.window}s windows",
        flush=True,
    )
    print(
        f"load generator: {ctx.cloadgen.relative_to(ROOT)}"
        if ctx.cloadgen
        else f"C load generator unavailable: {ctx.cloadgen_error}",
        flush=True,
    )
    if any(x.tls for x in chosen):
        try:
            ctx.certs, how = tlscert.ensure(OUT / "certs")
            print(f"TLS certificates: {how}", flush=True)
        except Exception as e:  # a broken generator should not stop the plain measurements
            print(f"TLS certificates unavailable: {e}", flush=True)
    results = []
    started = time.monotonic()
    for meas in chosen:
        row = measure_one(meas, opts, ctx)
        results.append(row)
        if row["status"] == "ok":
            print(
                f"  {meas.name:18} {row['median']:>10,} events/s  "
                f"[{row['min']:,}-{row['max']:,}]  {num(row['per_cpu_s'])}/CPU-s  "
                f"client {pct(row['client_cpu'])}  "
                f"receiver {pct(row['receiver_cpu'])}  other {pct(row['other_cpu'])}  "
                f"clean {row['clean']}"
                + ("  PROBLEMS: " + "; ".join(row["problems"]) if row["problems"] else "")
                + ("  (machine busy)" if row["warnings"] else ""),
                flush=True,
            )
        else:
            print(f"  {meas.name:18} {row['status']}: {row['reason']}", flush=True)
    elapsed = time.monotonic() - started
    print()
    print(table(results))
    print(f"total {elapsed:.0f} s")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(
        json.dumps(
            {
                "machine": m,
                "versions": v,
                "workload": shape,
                "framed_workload": {
                    "windows": workload.DISTINCT_WINDOWS,
                    "events_per_window": workload.WINDOW_SIZE,
                    "zlib_level": workload.WINDOW_LEVEL,
                    "digest": ctx.digests["framed"],
                },
                "settings": {
                    "warmup": opts.warmup,
                    "window": opts.window,
                    "repeats": opts.repeats,
                    "in_flight": opts.in_flight,
                    "pinned": opts.pin and cores() != (None, None),
                    "load_generator": str(ctx.cloadgen) if ctx.cloadgen else ctx.cloadgen_error,
                },
                "elapsed_s": round(elapsed, 1),
                "results": results,
            },
            indent=2,
        )
    )
    print(f"results written to {opts.out}")
    failed = [r for r in results if r["status"] == "failed" or r.get("problems")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
