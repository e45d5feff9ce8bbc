"""The framed wire against Beats' own Lumberjack library (go-lumber, what Filebeat sends with).

Our framed input receives from go-lumber's client, and our framed output sends to go-lumber's
server, plain and over TLS, as real processes (tests/peers/golumber/ljpeer.go). go-lumber is not
in any registry CI reaches, so these tests run only where ``GO_LUMBER_SRC`` names a checkout of
it (and Debian's golang-go and golang-github-klauspost-compress-dev are installed); elsewhere
they skip with the reason. tests/peers/README.md says how to run them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from support_programs import programs_fixture  # noqa: F401

from tests import support_tls

certs = support_tls.certs
BUILD = Path(__file__).resolve().parent / "peers" / "golumber" / "build.sh"
COUNT = 5000


@pytest.fixture(scope="session")
def ljpeer() -> str:
    done = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=300)
    if done.returncode == 3:
        pytest.skip(done.stderr.strip())
    if done.returncode != 0:
        pytest.fail(f"{BUILD} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout.strip()


def tls_input_flags(certs: Path) -> tuple[str, ...]:
    return (
        "--ssl-enabled=true",
        f"--ssl-certificate={certs / 'server.crt'}",
        f"--ssl-key={certs / 'server.pkcs8.key'}",
    )


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize("level", [0, 3, 9])
@pytest_twisted.inlineCallbacks
def test_go_lumber_client_into_our_input(programs, ljpeer, certs, tmp_path, tls, level):
    """Every event of go-lumber's windows arrives once, intact (UTF-8 and nesting), whatever
    its compression level, and each window is acknowledged."""
    if tls and level != 3:
        pytest.skip("TLS once, at the Beats' default level")
    sink = tmp_path / "events.ndjson"
    flags = tls_input_flags(certs) if tls else ()
    receiver = programs.input(
        "--protocol=lumberjack", "--host=127.0.0.1", "--port=0", f"--sink=file:{sink}", *flags
    )
    port = yield receiver.wait_port()
    argv = [ljpeer, "send", f"127.0.0.1:{port}", str(COUNT), "2048", str(level)]
    if tls:
        argv.append(str(certs / "ca.crt"))
    sender = programs.spawn("ljpeer", argv)
    assert (yield sender.ended()) == 0, sender.output
    assert f"acked {COUNT}" in sender.output
    assert (yield receiver.terminate()) == 0, receiver.output
    events = [json.loads(line) for line in sink.read_text(encoding="utf-8").splitlines()]
    assert sorted(event["n"] for event in events) == list(range(COUNT))
    for event in events:
        assert event["message"] == f"go {event['n']}"
        assert event["nested"] == {"ü": "ß ✓"}
        assert "@timestamp" in event and "@metadata" not in event


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest_twisted.inlineCallbacks
def test_our_output_into_go_lumber_server(programs, ljpeer, certs, tls):
    """go-lumber's server reads every window of our framed output (zlib level 3 `C` frames)
    and our output finishes once go-lumber acknowledged them all."""
    argv = [ljpeer, "serve", str(COUNT)]
    flags: tuple[str, ...] = ()
    if tls:
        argv += [str(certs / "server.crt"), str(certs / "server.pkcs8.key")]
        flags = ("--ssl-enabled=true", f"--ssl-certificate-authorities={certs / 'ca.crt'}")
    server = programs.spawn("ljpeer", argv)
    match = yield server.wait_for(rb"listening on (\d+)")
    port = int(match.group(1))
    host = "localhost" if tls else "127.0.0.1"
    sender = programs.output(
        "--protocol=lumberjack", f"--hosts={host}:{port}", f"--source=generator:{COUNT}", *flags
    )
    assert (yield sender.ended()) == 0, sender.output
    assert (yield server.ended()) == 0, server.output
    lines = [line for line in server.stdout.decode().splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    assert len(events) == COUNT
    assert sorted(event["sequence"] for event in events) == list(range(COUNT))
    assert all(event["message"] == "Hello world!" and "@timestamp" in event for event in events)
