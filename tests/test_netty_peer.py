"""``logstash-output`` into a receiver on the JDK/Netty stack real Logstash runs (issue 10).

The receiver is tests/peers/netty (see support_netty): Netty's ``SslHandler`` on the JDK's
``SSLEngine`` with Logstash's TLS defaults, ``HttpServerCodec``, ``HttpObjectAggregator``. Under
TLS 1.3 the JDK does not answer a ``close_notify``, and Netty keeps an idle connection open: a
sender that closes its idle connections gracefully and waits for the peer's answer waits forever.
One receiver of each kind (plain, TLS) serves the whole module; each test counts from the total
it found.
"""

from __future__ import annotations

import signal

import pytest
import pytest_twisted
from support_netty import start_netty_receiver
from support_programs import ProgramError, programs_fixture  # noqa: F401
from twisted.internet import defer

EVENTS = 2000
#: seconds a finite output may take to exit once its source is done (the real run takes < 2 s)
EXIT_DEADLINE = 20.0


@pytest.fixture(scope="module")
def netty_plain():
    yield from start_netty_receiver()


@pytest.fixture(scope="module")
def netty_tls(certs):
    yield from start_netty_receiver(certs)


def tls_flags(certs) -> tuple[str, ...]:
    return (f"--ssl-certificate-authorities={certs / 'ca.crt'}",)


@defer.inlineCallbacks
def exit_status(program, timeout: float = EXIT_DEADLINE):
    """The exit status; a program still running at the deadline is killed (SIGTERM does not
    stop a hung output either: its shutdown waits on the same close) and the test fails."""
    try:
        status = yield program.ended(timeout)
    except ProgramError:
        program.signal(signal.SIGKILL)
        yield program.ended()
        raise
    return status


@pytest_twisted.inlineCallbacks
def test_plain_output_into_netty_exits_0_with_every_event_counted(programs, netty_plain):
    before = netty_plain.total()
    sender = programs.output(
        f"--hosts={netty_plain.host}", "--ssl-enabled=false", f"--source=generator:{EVENTS}"
    )
    status = yield exit_status(sender)
    assert status == 0, sender.failure(f"exited with {status}")
    yield netty_plain.counted(before + EVENTS)
    assert "every event was handled" in sender.stdout.decode()


@pytest_twisted.inlineCallbacks
def test_tls_output_into_netty_delivers_every_event(programs, netty_tls, certs):
    before = netty_tls.total()
    sender = programs.output(
        f"--hosts={netty_tls.host}", *tls_flags(certs), f"--source=generator:{EVENTS}"
    )
    yield netty_tls.counted(before + EVENTS)
    yield sender.wait_for("source finished and every event was handled")
    yield sender.wait_for(f"sent: {EVENTS} events acknowledged in ")
    # whether it then exits is the next test's question; do not wait here
    sender.signal(signal.SIGKILL)
    yield sender.ended()


@pytest_twisted.inlineCallbacks
def test_tls_output_into_netty_exits_0_once_every_event_is_acknowledged(programs, netty_tls, certs):
    before = netty_tls.total()
    sender = programs.output(
        f"--hosts={netty_tls.host}", *tls_flags(certs), f"--source=generator:{EVENTS}"
    )
    status = yield exit_status(sender)
    assert status == 0, sender.failure(f"exited with {status}")
    yield netty_tls.counted(before + EVENTS)
    assert "every event was handled" in sender.stdout.decode()
    # closed cleanly (close_notify, then a FIN), not aborted after the pool's grace
    assert "did not close within" not in sender.stdout.decode(), sender.output
