"""Measurement windows shared by every client process (load generator, senders, codec).

A client counts acknowledged events in one counter; the harness takes snapshots of that
counter, the wall clock and the CPU time of this process and of the peer process at the
edges of each window. Warm-up is simply a window that is not reported. The CPU figures tell
a reader which side was the bottleneck (a process near 100 % of one core is).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system, all threads) used so far by ``pid``; None if unknown."""
    if pid is None:
        return time.process_time()
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces; the fields we want follow its closing paren.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def tree_pids(root: int) -> list[int]:
    """``root`` and every live process under it (a ``twistd --workers N`` parent and its
    workers); empty if ``root`` is gone."""
    parents = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rindex(b")") + 2 :].split()[1])
    if root not in parents:
        return []
    tree = [root]
    for pid in tree:
        tree += [child for child, parent in parents.items() if parent == pid]
    return tree


def tasks_cpu(pid: int) -> float | None:
    """CPU seconds of a live process's threads, from their schedstat (nanoseconds; the
    clock ticks of /proc/PID/stat are 10 ms, too coarse for a process that got 20 ms of a
    window on a busy machine); None if unreadable."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def tree_cpu(root: int) -> float | None:
    """CPU seconds used so far by ``root`` and every live process under it (their threads'
    schedstat, else their clock ticks), with the CPU of the children each has reaped (a
    worker that died still counts): what bench/cloadgen.c sums too. None if ``root`` is
    gone."""
    total = 0.0
    pids = tree_pids(root)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        precise = tasks_cpu(pid)
        own = precise if precise is not None else (int(fields[11]) + int(fields[12])) / _TICKS
        total += own + (int(fields[13]) + int(fields[14])) / _TICKS
    return total if pids else None


def system_busy() -> float | None:
    """CPU seconds all cores spent busy (steal included) since boot; None off Linux.

    Compared with the CPU of the two measured processes, it shows how much else ran on the
    machine during a window: a figure taken while something else ran is not comparable.
    """
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields[:8]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / _TICKS


@dataclass
class Counter:
    """What a client tallies: acknowledged events, refused answers by status, errors."""

    events: int = 0
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def acked(self, events: int) -> None:
        self.events += events
        self.requests += 1

    def refused(self, status: int) -> None:
        key = str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def failed(self, error: BaseException) -> None:
        key = type(error).__name__
        self.errors[key] = self.errors.get(key, 0) + 1


@dataclass
class Windows:
    """Snapshots at window edges; ``report()`` is the per-window figures."""

    counter: Counter
    peer_pid: int | None = None
    _marks: list[tuple] = field(default_factory=list)

    def mark(self) -> None:
        self._marks.append(
            (
                time.perf_counter(),
                self.counter.events,
                process_cpu(None),
                tree_cpu(self.peer_pid) if self.peer_pid else None,
                system_busy(),
            )
        )

    def report(self) -> list[dict]:
        """One entry per window after the first mark pair (the warm-up)."""
        out = []
        for (t0, n0, c0, p0, s0), (t1, n1, c1, p1, s1) in zip(
            self._marks[1:], self._marks[2:], strict=False
        ):
            seconds = t1 - t0
            out.append(
                {
                    "seconds": round(seconds, 3),
                    "events": n1 - n0,
                    "events_per_s": (n1 - n0) / seconds if seconds > 0 else 0.0,
                    "self_cpu": _share(c0, c1, seconds),
                    "peer_cpu": _share(p0, p1, seconds),
                    "system_cpu": _share(s0, s1, seconds),
                }
            )
        return out


def _share(before: float | None, after: float | None, seconds: float) -> float | None:
    """CPU used over the window as a fraction of one core."""
    if before is None or after is None or seconds <= 0:
        return None
    return round((after - before) / seconds, 3)


def schedule(warmup: float, window: float, repeats: int) -> list[float]:
    """Delays between marks: the warm-up, then one per window."""
    return [warmup] + [window] * repeats


def emit(result: dict) -> None:
    """The one line a client prints for the harness."""
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def client_args(parser) -> None:
    """Options every client process takes."""
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--peer-pid", type=int, default=None)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--cafile", default=None, help="TLS: trust this CA (enables https)")
