"""The codec ceilings: what a receiver could reach if the network, HTTP and the reactor cost
nothing. No network, one core, the very bytes the receivers get.

- native (``codec``): isal gunzip + ``orjson.loads`` per line of each gzip ndjson body;
- framed (``codec-framed``): inflate each Lumberjack window's `C` frame (isal), walk its `J`
  frames, ``orjson.loads`` each payload (a memoryview slice: no copy).

    python bench/codec.py [--wire native|framed] [--warmup S --window S --repeats N]

Run as a script it is one client process of the harness and prints a RESULT line.
"""

from __future__ import annotations

import argparse
import struct
import time

import measure
import orjson
import workload
from isal import isal_zlib

_GZIP_WBITS = 31
_HEAD = struct.Struct(">2sI")  # `2W count`, `2C length`
_J = struct.Struct(">2sII")  # `2J seq length`


def decode_body(body: bytes) -> list[dict]:
    """What every reference receiver does with a body: gunzip, split, orjson each line."""
    loads = orjson.loads
    return [
        loads(line) for line in isal_zlib.decompress(body, wbits=_GZIP_WBITS).split(b"\n") if line
    ]


def decode_window(window: bytes) -> list[dict]:
    """A whole window of `bench/workload.py`'s shape (`2W n`, one `2C` of `2J` frames): its
    events. Checks what a receiver must check (frame types, the count), nothing more."""
    kind, count = _HEAD.unpack_from(window, 0)
    ckind, length = _HEAD.unpack_from(window, 6)
    if kind != b"2W" or ckind != b"2C" or len(window) != 12 + length:
        raise ValueError("not a window of one C frame")
    inner = memoryview(isal_zlib.decompress(memoryview(window)[12:]))
    loads = orjson.loads
    unpack = _J.unpack_from
    events = []
    append = events.append
    pos, end = 0, len(inner)
    while pos < end:
        jkind, _seq, size = unpack(inner, pos)
        if jkind != b"2J":
            raise ValueError("not a J frame")
        pos += 10
        append(loads(inner[pos : pos + size]))
        pos += size
    if len(events) != count:
        raise ValueError(f"window of {count} holds {len(events)} events")
    return events


def run(warmup: float, window: float, repeats: int, wire: str = "native") -> dict:
    """Decode the bodies (or windows) round-robin for the warm-up and each window."""
    payloads, decode = (
        (workload.make_windows(), decode_window)
        if wire == "framed"
        else (workload.make_bodies(), decode_body)
    )
    counter = measure.Counter()
    windows = measure.Windows(counter)
    windows.mark()
    for delay in measure.schedule(warmup, window, repeats):
        deadline = time.perf_counter() + delay
        while time.perf_counter() < deadline:
            for payload in payloads:
                counter.acked(len(decode(payload)))
        windows.mark()
    return {"windows": windows.report(), "digest": workload.digest(payloads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wire", choices=("native", "framed"), default="native")
    measure.client_args(parser)
    args = parser.parse_args()
    measure.emit(run(args.warmup, args.window, args.repeats, args.wire))


if __name__ == "__main__":
    main()
