"""Coverage-guided fuzzing of both inputs with atheris (libFuzzer for Python).

The hypothesis tests (tests/test_fuzz_native.py, tests/test_fuzz_lumberjack.py) run a bounded
number of examples in every test run; this runs the same invariants for as long as you like,
guided by coverage. Four targets:

- ``http11``: the sans-IO request parser alone; only ``RequestError`` may come out, the parser
  stays dead after one, its buffer stays under the head limit between requests.
- ``native``: the native input's protocol over a TCP-like transport, a Clock and a scripted sink,
  with every check of tests/test_fuzz_native.py (well-formed answers only, 200 only after the
  sink confirmed, bounded buffers, every connection closes once time passes, nothing logged as an
  error).
- ``lumberjack-decoder``: the sans-IO ``FrameDecoder`` alone; only ``LumberjackProtocolError``
  (and its subclasses) may come out, and the decoder holds at most one frame.
- ``lumberjack``: the Lumberjack input's protocol, with every check of
  tests/test_fuzz_lumberjack.py.

The sink's scripted failures are logged to stderr as they happen (they are expected); the
checks ignore them. The first 4 bytes of an input steer the run (sink outcomes, cut points,
clock steps, flags); the rest is the byte stream. Seeds (valid requests and windows) are written to
bench/out/fuzz/<target>/seeds, crashes to bench/out/fuzz/<target>/crash-*.

atheris must not go into the project's venv; use a throwaway one::

    python3.11 -m venv /tmp/atheris-venv
    /tmp/atheris-venv/bin/pip install atheris hypothesis pytest 'twisted[tls]' \\
        python-snappy cramjam orjson isal
    PYTHONPATH=. /tmp/atheris-venv/bin/python bench/fuzz_atheris.py --all 150
    PYTHONPATH=. /tmp/atheris-venv/bin/python bench/fuzz_atheris.py native -max_total_time=60 \\
        bench/out/fuzz/native/seeds

``--all SECONDS`` runs each target for SECONDS in its own process and prints one line per
target: runs, coverage, and whether a crash was found.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "fuzz"
TARGETS = ("http11", "native", "lumberjack-decoder", "lumberjack")
MODES = ("ok", "held", "fail", "held-fail", "raise")


def _steer(data: bytes):
    """(sink modes, cut points, clock steps, flags, stream) from one fuzzer input."""
    control, stream = data[:4].ljust(4, b"\0"), data[4:]
    modes = tuple(MODES[(control[0] >> shift) % len(MODES)] for shift in (0, 3, 5))
    rng = random.Random(control[1])
    points = sorted(rng.randrange(len(stream) + 1) for _ in range(control[1] % 7))
    steps = tuple(
        ((0, 0, 0, 1, 3, 6, 31, 61)[(control[2] >> shift) & 7], bool(control[2] >> shift & 8))
        for shift in (0, 4)
    )
    return modes, points, steps, control[3], stream


# -- targets ------------------------------------------------------------------------------------


def target_http11(data: bytes) -> None:
    from twisted_logstash.wires.native.http import NEED_DATA, RequestError, RequestParser

    _, points, _, flags, stream = _steer(data)
    parser = RequestParser(max_head=1024, max_body=4096 if flags & 1 else None)
    from support_fuzz import split

    for piece in split(stream, points):
        parser.feed(piece)
        try:
            while parser.next_event() is not NEED_DATA:
                pass
        except RequestError as error:
            assert 400 <= error.status < 600, error.status
            try:
                parser.next_event()
            except RequestError:
                return
            raise AssertionError("the parser went on after an error") from None
        assert parser.buffered <= 4096 + 4, parser.buffered


def target_native(data: bytes) -> None:
    import test_fuzz_native as native

    modes, points, steps, flags, stream = _steer(data)
    native.run(stream, points, modes, steps, auth=bool(flags & 1), hang_up=bool(flags & 2))


def target_lumberjack_decoder(data: bytes) -> None:
    from support_fuzz import split

    from twisted_logstash.wires.lumberjack.decoder import FrameDecoder
    from twisted_logstash.wires.lumberjack.frames import LumberjackProtocolError

    _, points, _, _, stream = _steer(data)
    decoder = FrameDecoder(max_window=16, max_frame=2048, max_inflated=4096)
    for piece in split(stream, points):
        try:
            decoder.feed(piece)
        except LumberjackProtocolError:
            return
        assert len(decoder._buffer) <= 2048 + 10


def target_lumberjack(data: bytes) -> None:
    import test_fuzz_lumberjack as lumberjack

    modes, points, steps, flags, stream = _steer(data)
    lumberjack.run(stream, points, modes, steps, hang_up=bool(flags & 2))


HARNESSES = {
    "http11": target_http11,
    "native": target_native,
    "lumberjack-decoder": target_lumberjack_decoder,
    "lumberjack": target_lumberjack,
}


# -- seeds ----------------------------------------------------------------------------------------


def _seeds(target: str) -> list[bytes]:
    """Valid streams to start from, each behind 4 steering bytes."""
    from twisted_logstash.codecs import compression, ndjson
    from twisted_logstash.wires.lumberjack.frames import encode_window

    events = [{"message": "hello", "n": 1}, {"message": "wörld", "n": 2}]
    streams = []
    if target in ("http11", "native"):
        auth = b"Authorization: Basic bG9nc3Rhc2g6czNjcmV0\r\n"
        for encoding in compression.ENCODINGS:
            body = compression.compress(ndjson.encode(events), encoding)
            head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1:9800\r\n" + auth
            if encoding != "identity":
                head += b"Content-Encoding: " + encoding.encode() + b"\r\n"
            streams.append(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            chunked = head + b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
            chunked += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            streams.append(chunked)
        streams.append(streams[0] + streams[1] + streams[2])
    else:
        streams.append(encode_window(events, 1, None))
        streams.append(encode_window(events, 7, 3))
        v1 = b"1W\0\0\0\x01" + b"1D\0\0\0\x01\0\0\0\x01" + b"\0\0\0\x01a\0\0\0\x01b"
        streams.append(v1)
        body = zlib.compress(v1[6:])
        streams.append(b"1W\0\0\0\x01" + b"1C" + len(body).to_bytes(4, "big") + body)
        streams.append(streams[0] + streams[1] + b"2W\0\0\0\0")
    controls = [b"\0\0\0\0", b"\x09\x05\x18\x01", b"\x12\x03\x81\x02"]
    return [control + stream for stream in streams for control in controls]


def write_seeds(target: str) -> Path:
    folder = OUT / target / "seeds"
    folder.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(_seeds(target)):
        (folder / f"seed-{index:02d}").write_bytes(seed)
    return folder


# -- running ---------------------------------------------------------------------------------------


def fuzz(target: str, argv: list[str]) -> None:
    import atheris

    sys.path.insert(0, str(ROOT / "tests"))
    with atheris.instrument_imports(include=["twisted_logstash"]):
        import twisted_logstash.wires.lumberjack.decoder
        import twisted_logstash.wires.lumberjack.server
        import twisted_logstash.wires.native.http
        import twisted_logstash.wires.native.server  # noqa: F401
    harness = HARNESSES[target]
    harness(b"")  # import the test modules outside the fuzzing loop
    atheris.Setup([sys.argv[0], *argv], harness)
    atheris.Fuzz()


def run_all(seconds: int) -> int:
    """Each target in its own process for ``seconds``; one summary line per target."""
    failed = 0
    for target in TARGETS:
        seeds = write_seeds(target)
        folder = OUT / target
        corpus = folder / "corpus"
        corpus.mkdir(exist_ok=True)
        log_path = folder / "fuzz.log"
        with open(log_path, "w") as log:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    target,
                    f"-max_total_time={seconds}",
                    f"-artifact_prefix={folder}/",
                    "-max_len=8192",
                    "-rss_limit_mb=1024",
                    str(corpus),
                    str(seeds),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONPATH=f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"),
                check=False,
            )
        text = log_path.read_text(errors="replace")
        runs = re.findall(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE)\s+cov: (\d+)", text)
        crashes = sorted(p.name for p in folder.glob("crash-*"))
        last = runs[-1] if runs else ("?", "?")
        status = "ok" if proc.returncode == 0 and not crashes else "CRASH"
        failed += status != "ok"
        print(
            f"{target:20s} {status:5s} runs={last[0]} cov={last[1]} exit={proc.returncode} "
            f"crashes={crashes} log={log_path}"
        )
    return 1 if failed else 0


def main() -> int:
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--all":
        return run_all(int(args[1]))
    if not args or args[0] not in HARNESSES:
        print(__doc__)
        print(f"targets: {', '.join(TARGETS)}")
        return 2
    fuzz(args[0], args[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
