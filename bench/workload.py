"""The one workload every measurement uses: the same events, the same batch bytes.

Everything is derived from a fixed seed, so that every process (receiver, load generator,
sender) builds byte-identical batches without passing them around; ``digest()`` lets the
harness check that claim instead of trusting it.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import struct
import zlib

import orjson

BATCH_SIZE = 125
DISTINCT_BATCHES = 64
SEED = 20261125

WINDOW_SIZE = 2048  # the framed wire: Filebeat's default bulk_max_size
DISTINCT_WINDOWS = 4  # 8,192 events: the native wire's 8,000, then 192 more of the same seed
WINDOW_LEVEL = 3  # zlib level of the Beats' `C` frames

_WORDS = [
    "GET",
    "POST",
    "PUT",
    "user",
    "order",
    "payment",
    "session",
    "cache",
    "miss",
    "hit",
    "timeout",
    "retry",
    "upstream",
    "downstream",
    "accepted",
    "rejected",
    "queue",
    "worker",
    "shard",
    "index",
    "node",
    "disk",
    "memory",
    "latency",
    "request",
    "response",
    "error",
    "warning",
    "info",
    "debug",
    "trace",
    "token",
    "account",
    "invoice",
    "checkout",
]
_LEVELS = ("INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG")
_SERVICES = ("checkout", "billing", "search", "gateway", "inventory")


def make_event(rng: random.Random, sequence: int) -> dict:
    """One log event of about 300 bytes of JSON: seven flat fields, a ~200-byte message.

    Flat on purpose: orjson's cost grows with the number of keys (a nested, ECS-shaped
    event of the same size decodes about 2x slower), and the receivers are compared on
    what they add to the codec, which a heavier codec would hide.
    """
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(18, 26)))
    return {
        "@timestamp": f"2026-11-25T10:{sequence // 60000 % 60:02d}:"
        f"{sequence // 1000 % 60:02d}.{sequence % 1000:03d}Z",
        "@version": "1",
        "message": f"{rng.choice(_LEVELS)} [{rng.randrange(1 << 32):08x}] {words}",
        "host": f"web-{rng.randint(1, 40):02d}.example.internal",
        "service": rng.choice(_SERVICES),
        "level": rng.choice(_LEVELS),
        "sequence": sequence,
    }


def make_events(count: int, seed: int = SEED) -> list[dict]:
    """``count`` events, always the same ones for the same seed."""
    rng = random.Random(seed)
    return [make_event(rng, n) for n in range(count)]


def make_batches(count: int = DISTINCT_BATCHES, size: int = BATCH_SIZE) -> list[list[dict]]:
    """``count`` batches of ``size`` distinct events (cycled by the load generators)."""
    events = make_events(count * size)
    return [events[i * size : (i + 1) * size] for i in range(count)]


def ndjson(events: list[dict]) -> bytes:
    """The wire body before compression: one compact JSON object per line."""
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def gzip_body(events: list[dict]) -> bytes:
    """The pre-built request body: gzip level 1 (stdlib, mtime 0, so deterministic)."""
    return gzip.compress(ndjson(events), compresslevel=1, mtime=0)


def make_bodies(count: int = DISTINCT_BATCHES, size: int = BATCH_SIZE) -> list[bytes]:
    """The request bodies every receiver is sent, in the order they are sent."""
    return [gzip_body(batch) for batch in make_batches(count, size)]


def lumberjack_window(events: list[dict]) -> bytes:
    """One window as go-lumber's v2 client and the Beats write it: `2W count`, then one `2C`
    frame holding the `2J seq length json` frames numbered 1..count, zlib level 3.

    Written here, not by the project's encoder, so that the bench does not take the code it
    measures on trust (tests/test_bench_loadgen.py checks both give the same bytes)."""
    frames = b"".join(
        struct.pack(">2sII", b"2J", seq, len(doc)) + doc
        for seq, doc in enumerate(map(orjson.dumps, events), 1)
    )
    compressed = zlib.compress(frames, WINDOW_LEVEL)
    return (
        struct.pack(">2sI", b"2W", len(events))
        + struct.pack(">2sI", b"2C", len(compressed))
        + compressed
    )


def make_windows(count: int = DISTINCT_WINDOWS, size: int = WINDOW_SIZE) -> list[bytes]:
    """The framed wire's windows, from the same events as the native wire's bodies (the same
    seed, so the first 8,000 events are the bodies' events)."""
    events = make_events(count * size)
    return [lumberjack_window(events[i * size : (i + 1) * size]) for i in range(count)]


def digest(bodies: list[bytes]) -> str:
    """A short fingerprint of the bodies, reported by every process that sends them."""
    h = hashlib.sha256()
    for body in bodies:
        h.update(body)
    return h.hexdigest()[:16]


def describe(bodies: list[bytes], batches: list[list[dict]]) -> dict:
    """Sizes a reader needs to judge the figures."""
    raw = sum(len(ndjson(b)) for b in batches)
    events = sum(len(b) for b in batches)
    return {
        "events_per_batch": len(batches[0]),
        "distinct_batches": len(batches),
        "mean_event_bytes": round(raw / events, 1),
        "mean_batch_gzip_bytes": round(sum(map(len, bodies)) / len(bodies)),
        "mean_batch_raw_bytes": round(raw / len(batches)),
        "digest": digest(bodies),
    }
