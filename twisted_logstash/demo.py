"""``make demo``: an input and an output on loopback with mutual TLS and basic auth.

Makes throwaway certificates with the project's ``certs/make_certs.py``, starts
``twistd -n logstash-input`` on a free port of 127.0.0.1 (TLS with client certificates required,
basic auth), sends a few events through ``twistd -n logstash-output`` from a file, shows what the
input wrote, stops the input with SIGTERM and exits 0 when every event arrived.

Everything lands in ``demo-run/`` (certificates, logs, the events sent and received). The
commands it prints are the ones it ran, with absolute paths and quoted for a POSIX shell, so that
a user can paste them (the input in one terminal, the output in another) to run them again.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = Path.cwd() / "demo-run"
USER = "demo"
EVENTS = [
    {"message": "hello from the upstream output", "n": 1},
    {"message": "batched, gzip-compressed, sent over mutual TLS", "n": 2},
    {"message": "acknowledged only once the input wrote it to its sink", "n": 3},
    'a plain line becomes {"message": LINE}',
]


def twistd(*args: str) -> list[str]:
    bindir = Path(sys.executable).parent
    return [str(bindir / "twistd"), "-n", "--pidfile=", *args]


def pasteable(argv: list[str]) -> str:
    """``argv`` as a shell command to paste: quoted, one flag a line after the program's name."""
    program = (
        argv.index("logstash-input") if "logstash-input" in argv else argv.index("logstash-output")
    )
    lines = [shlex.join(argv[: program + 1]), *(shlex.quote(arg) for arg in argv[program + 1 :])]
    return " \\\n        ".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: the input exited early ({process.returncode}); see its log")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("demo: the input did not start listening in time")


def main() -> int:
    RUN.mkdir(exist_ok=True)
    certs = RUN / "certs"
    subprocess.run([sys.executable, str(ROOT / "certs" / "make_certs.py"), str(certs)], check=True)
    password_file = RUN / "password"
    password_file.write_text("demo-secret-" + os.urandom(6).hex() + "\n")
    password_file.chmod(0o600)
    events_file = RUN / "events.ndjson"
    events_file.write_text(
        "".join((json.dumps(e) if isinstance(e, dict) else e) + "\n" for e in EVENTS)
    )
    received = RUN / "received.ndjson"
    received.unlink(missing_ok=True)
    port = free_port()

    input_args = twistd(
        "--logfile",
        str(RUN / "input.log"),
        "logstash-input",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--ssl-certificate={certs / 'server.crt'}",
        f"--ssl-key={certs / 'server.pkcs8.key'}",
        f"--ssl-certificate-authorities={certs / 'ca.crt'}",
        "--ssl-client-authentication=required",
        f"--username={USER}",
        f"--password-file={password_file}",
        f"--sink=file:{received}",
    )
    output_args = twistd(
        "--logfile",
        str(RUN / "output.log"),
        "logstash-output",
        f"--hosts=127.0.0.1:{port}",
        f"--ssl-certificate-authorities={certs / 'ca.crt'}",
        f"--ssl-certificate={certs / 'client.crt'}",
        f"--ssl-key={certs / 'client.pkcs8.key'}",
        f"--username={USER}",
        f"--password-file={password_file}",
        f"--source=file:{events_file}",
        f"--dead-letter={RUN / 'dead-letter.ndjson'}",
    )
    print(f"demo: input  on https://127.0.0.1:{port} (mutual TLS required, basic auth):")
    print("   ", pasteable(input_args))
    server = subprocess.Popen(input_args, cwd=RUN)
    try:
        wait_listening(port, server)
        print(f"demo: output sending {len(EVENTS)} events from {events_file.name}:")
        print("   ", pasteable(output_args))
        sent = subprocess.run(output_args, cwd=RUN, timeout=120)
        print(f"demo: output exited with status {sent.returncode}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    how = "on SIGTERM" if server.returncode == -signal.SIGTERM else f"with {server.returncode}"
    print(f"demo: input stopped {how}; it received:")
    lines = received.read_text().splitlines() if received.exists() else []
    for line in lines:
        print("   ", line)
    if sent.returncode != 0 or len(lines) != len(EVENTS):
        print(f"demo: FAILED: {len(lines)} of {len(EVENTS)} events arrived; logs in {RUN}/")
        return 1
    print(f"demo: all {len(EVENTS)} events arrived over mutual TLS with basic auth; logs in {RUN}/")
    print(
        "demo: to run it again yourself, paste the input's command into one terminal and the "
        "output's into another (the output appends to the same received.ndjson)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
