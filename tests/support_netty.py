"""The Netty peer (tests/peers/netty): a Logstash-like HTTP receiver on the JDK/Netty stack.

Real Logstash receives the native wire with its http input, which is Netty's ``SslHandler``
over the JDK's ``SSLEngine``, ``HttpServerCodec`` and ``HttpObjectAggregator``. Twisted peers
do not show how that stack behaves (it does not answer a TLS 1.3 ``close_notify``, for one), so
these tests run the real thing: a small Java program on Debian's ``libnetty-java``, built by
``tests/peers/build.sh`` (``make test`` runs it first). When it cannot be built, the tests skip
with the reason, and fail with it under ``CI=true``.

The receiver is a child process of the test reactor, like the programs of support_programs: it
prints ``events +COUNT total TOTAL`` for every batch, and a test waits for the total it expects.
It exits when its stdin closes, so it cannot outlive the test run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from support_programs import TIMEOUT, Program, ProgramError
from twisted.internet import defer, reactor

__all__ = ["NettyReceiver", "netty_classpath", "start_netty_receiver"]

PEERS = Path(__file__).resolve().parent / "peers"
BUILD = PEERS / "netty" / "build"
TOTAL = re.compile(rb"(?m)^events \+\d+ total (\d+)$")
#: seconds the build may take when it has to compile (it never installs from here)
BUILD_TIMEOUT = 120


def netty_classpath() -> str:
    """The receiver's java class path, built if need be; skip (fail under CI) if it cannot be."""
    try:
        done = subprocess.run(
            ["bash", str(PEERS / "build.sh"), "--no-install"],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"tests/peers/build.sh did not run: {e}")
    if done.returncode == 3:
        reason = done.stderr.strip() or "the Netty peer cannot be built"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI=true, and {reason}")
        pytest.skip(reason)
    if done.returncode != 0:
        pytest.fail(f"tests/peers/build.sh failed ({done.returncode}):\n{done.stderr}")
    return (BUILD / "classpath").read_text().strip()


class NettyReceiver:
    """A running receiver: its port, and Deferreds on the event totals it prints."""

    def __init__(self, program: Program, port: int):
        self.program = program
        self.port = port

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def total(self) -> int:
        """Events counted so far (the receiver is shared: take it before a test sends)."""
        totals = TOTAL.findall(bytes(self.program.stdout))
        return int(totals[-1]) if totals else 0

    def counted(self, total: int, timeout: float = TIMEOUT) -> defer.Deferred:
        """Fires once the receiver has counted exactly ``total`` events."""
        line = rf"(?m)^events \+\d+ total {total}$"
        return self.program.wait_for(line, timeout)

    @defer.inlineCallbacks
    def stop(self):
        """Close its stdin (it exits), kill it if it does not."""
        if not self.program.running:
            return
        self.program.transport.closeStdin()
        try:
            yield self.program.ended(10.0)
        except ProgramError:
            self.program.signal(signal.SIGKILL)
            yield self.program.ended(10.0)


def start_netty_receiver(certs: Path | None = None):
    """A receiver on a free port of 127.0.0.1 (TLS with the server identity of ``certs`` when
    given), for a fixture: ``yield from start_netty_receiver(...)`` stops it at teardown."""
    java = shutil.which("java")
    if java is None:
        pytest.fail("tests/peers/build.sh built the Netty peer, but there is no java on PATH")
    argv = [java, "-cp", netty_classpath(), "HttpReceiver", "0"]
    if certs is not None:
        argv += [str(certs / "server.crt"), str(certs / "server.pkcs8.key")]
    program = Program("netty-receiver", argv, PEERS, dict(os.environ))
    reactor.spawnProcess(program, java, argv, env=program.env, path=str(PEERS), childFDs=None)
    receiver = None
    try:
        match = pytest_twisted.blockon(program.wait_for(rb"listening on (\d+)\n"))
        receiver = NettyReceiver(program, int(match.group(1)))
        yield receiver
    finally:
        pytest_twisted.blockon((receiver or NettyReceiver(program, 0)).stop())
