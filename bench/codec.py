"""The codec ceiling: isal gunzip + orjson per line of the very bodies the receivers get.

No network, one core: what a receiver could reach if HTTP and the reactor cost nothing.
Run as a script it is one client process of the harness and prints a RESULT line.
"""

from __future__ import annotations

import argparse
import time

import measure
import orjson
import workload
from isal import isal_zlib

_GZIP_WBITS = 31


def decode_body(body: bytes) -> list[dict]:
    """What every reference receiver does with a body: gunzip, split, orjson each line."""
    loads = orjson.loads
    return [
        loads(line) for line in isal_zlib.decompress(body, wbits=_GZIP_WBITS).split(b"\n") if line
    ]


def run(warmup: float, window: float, repeats: int) -> dict:
    """Decode the bodies round-robin for the warm-up and each window."""
    bodies = workload.make_bodies()
    counter = measure.Counter()
    windows = measure.Windows(counter)
    windows.mark()
    for delay in measure.schedule(warmup, window, repeats):
        deadline = time.perf_counter() + delay
        while time.perf_counter() < deadline:
            for body in bodies:
                counter.acked(len(decode_body(body)))
        windows.mark()
    return {"windows": windows.report(), "digest": workload.digest(bodies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    measure.client_args(parser)
    args = parser.parse_args()
    measure.emit(run(args.warmup, args.window, args.repeats))


if __name__ == "__main__":
    main()
