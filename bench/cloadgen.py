"""The C load generator (bench/cloadgen.c): its build and its payload files.

``make bench`` compiles it with gcc into bench/out/cloadgen (again whenever the source is
newer than the binary) and writes, for each wire, the pre-encoded bytes it replays: the gzip
ndjson bodies of the native wire, the Lumberjack windows of the framed wire. The C program
reports the digest of what it read, which the harness checks against the digest of what
Python wrote (bench/workload.py's digest()).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import workload

BENCH = Path(__file__).resolve().parent
SOURCE = BENCH / "cloadgen.c"
MAGIC = b"CLGPAY01"


class BuildError(Exception):
    """The C load generator cannot be built here (the message says why and what to install)."""


def build(out: Path) -> Path:
    """The compiled load generator in ``out``, built if missing or older than its source."""
    binary = out / "cloadgen"
    if binary.exists() and binary.stat().st_mtime >= SOURCE.stat().st_mtime:
        return binary
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise BuildError(
            "gcc not found: the C load generator (bench/cloadgen.c) cannot be built; "
            "install gcc, libssl-dev and zlib1g-dev"
        )
    out.mkdir(parents=True, exist_ok=True)
    command = [gcc, "-O2", "-Wall", "-o", str(binary), str(SOURCE), "-lssl", "-lcrypto", "-lz"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BuildError(
            f"{' '.join(command)} failed (OpenSSL and zlib headers needed: libssl-dev, "
            f"zlib1g-dev): {done.stderr.strip()[-500:]}"
        )
    return binary


def write_payloads(path: Path, payloads: list[tuple[int, bytes]]) -> str:
    """Write (events, bytes) pairs in the C program's format; their digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack(">I", len(payloads)))
        for events, data in payloads:
            f.write(struct.pack(">II", events, len(data)))
            f.write(data)
    return workload.digest([data for _, data in payloads])


def payload_files(out: Path) -> dict[str, tuple[Path, str]]:
    """For each wire, the payload file and its digest: ``native`` (the gzip bodies, batches of
    125) and ``framed`` (the windows of 2048)."""
    native = [(workload.BATCH_SIZE, body) for body in workload.make_bodies()]
    framed = [(workload.WINDOW_SIZE, window) for window in workload.make_windows()]
    return {
        "native": (out / "native.payloads", write_payloads(out / "native.payloads", native)),
        "framed": (out / "framed.payloads", write_payloads(out / "framed.payloads", framed)),
    }
