"""What the file sink costs: events/s through ``FileSink.deliver``, with and without fsync.

    .venv/bin/python bench/filesink.py [--batches N] [--dir DIR]

Rows:
- ``no fsync``: 125-event batches delivered one after the other; each Deferred has fired when
  ``deliver`` returns (write only, the page cache takes it).
- ``fsync, 1 at a time``: ``fsync=True``, the next batch delivered when the last one's Deferred
  fired: one sender on one connection, every batch pays a whole fsync.
- ``fsync, 8 at a time``: ``fsync=True`` with 8 batches outstanding, as 8 connections would
  keep them: batches written while an fsync runs share the next one.

The events are the harness's ~300-byte log events (bench/workload.py). The DIR's file system
matters (the fsync cost): the table names it. Each row is the best of ``--repeat`` runs, each
on a new file. Not a test: the figures are for docs/input.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import workload
from twisted.internet import defer, task

from twisted_logstash.pipeline.sinks import FileSink


def file_system(path: str) -> str:
    try:
        out = subprocess.run(
            ["df", "-T", path], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        return out[-1].split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "?"


@defer.inlineCallbacks
def run(sink: FileSink, batches: list[list[dict]], count: int, outstanding: int):
    """Seconds to deliver ``count`` batches with at most ``outstanding`` waiting at once."""
    start = time.perf_counter()
    waiting: list[defer.Deferred] = []
    for n in range(count):
        waiting.append(sink.deliver(batches[n % len(batches)]))
        if len(waiting) >= outstanding:
            yield waiting.pop(0)
    yield defer.gatherResults(waiting)
    return time.perf_counter() - start


@defer.inlineCallbacks
def main(reactor, argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000, help="batches without fsync")
    parser.add_argument("--synced", type=int, default=300, help="batches with fsync")
    parser.add_argument("--dir", default=None, help="where the file goes [a temporary dir]")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each row; the best counts")
    args = parser.parse_args(argv)
    batches = workload.make_batches()
    size = len(batches[0])
    with tempfile.TemporaryDirectory(dir=args.dir) as where:
        print(f"python {platform.python_version()}, {where} on {file_system(where)}")
        print(f"{'row':<22}{'batches':>9}{'events/s':>12}{'ms/batch':>10}")
        rows = [
            ("no fsync", False, args.batches, 1),
            ("fsync, 1 at a time", True, args.synced, 1),
            ("fsync, 8 at a time", True, args.synced, 8),
        ]
        for name, fsync, count, outstanding in rows:
            path = os.path.join(where, name.replace(" ", "_").replace(",", ""))
            times = []
            for _ in range(args.repeat):
                sink = FileSink(path, fsync=fsync)
                try:
                    times.append((yield run(sink, batches, count, outstanding)))
                finally:
                    sink.close()
                    os.unlink(path)
            seconds = min(times)
            rate = count * size / seconds
            print(f"{name:<22}{count:>9}{rate:>12,.0f}{1000 * seconds / count:>10.3f}")


if __name__ == "__main__":
    task.react(main, [sys.argv[1:]])
