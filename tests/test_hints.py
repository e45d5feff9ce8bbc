"""The sending side says what is probably wrong, at once, when it meets the wrong receiver.

Real sockets on 127.0.0.1, real certificates: each case sends one batch with one of our
transmitters (both wires, plain or TLS) to one of our inputs (both wires, plain or TLS) set up
the wrong way, and waits for the attempt's failure at most ``DEADLINE`` seconds, far below the
transmitters' 30 s (ACK) and 60 s (attempt) timeouts: the hint comes from the first bytes
answered or the close, not from a timer. The same for the cases users meet with Logstash's
Java stack (the Netty receiver of tests/peers), and once through the real ``logstash-output``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import pytest_twisted
from support_netty import start_netty_receiver
from support_programs import programs_fixture  # noqa: F401
from twisted.internet import defer, reactor
from twisted.internet.endpoints import serverFromString
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from twisted_logstash.errors import RetriableError
from twisted_logstash.pipeline.sinks import CallableSink
from twisted_logstash.security.endpoints import client_endpoint_factory, server_endpoint_string
from twisted_logstash.security.settings import ClientTLSSettings
from twisted_logstash.transport.hosts import Host
from twisted_logstash.transport.inputservice import InputService
from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter
from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory
from twisted_logstash.wires.native.client import HttpTransmitter
from twisted_logstash.wires.native.server import HttpInputFactory

#: seconds a case may take to fail with its hint: far below every timeout of the transmitters
DEADLINE = 5.0
HTTP, LUMBERJACK = "http", "lumberjack"

IF_TLS = "if it speaks TLS, use --ssl-enabled true (and --ssl-certificate-authorities)"
NOT_TLS = "does not speak TLS: use --ssl-enabled false, or check the port"
NOT_HTTP = "is it a beats/lumberjack input? use --protocol lumberjack"
IF_LUMBERJACK = "if it is a beats/lumberjack input, use --protocol lumberjack"
SPEAKS_HTTP = "speaks HTTP: is it a logstash/http input? use --protocol http"
IF_HTTP = "if it is a logstash/http input, use --protocol http"
UNKNOWN_CA = (
    "presented a certificate from a CA we do not trust (CN=twisted-logstash test CA,"
    "O=twisted-logstash test): give that CA's certificate to --ssl-certificate-authorities"
    " (or --ssl-verification-mode none, which checks nothing)"
)
NAME_MISMATCH = (
    "presented a certificate for DNS:wrong.example, not for 127.0.0.1: --hosts must use that"
    " name (or the certificate must hold 127.0.0.1)"
)


@dataclass(frozen=True)
class Case:
    receiver: str  # HTTP or LUMBERJACK: our input of that wire
    server: dict  # its TLS settings ({} plain)
    sender: str  # the transmitter's wire
    client: dict  # its TLS settings ({} plain)
    hints: tuple[str, ...]  # every fragment the reason must hold
    bare: bool = False  # drawn from a close alone: said from the second close in a row


def _server(name: str = "server") -> dict:
    return {"ssl_certificate": f"{name}.crt", "ssl_key": f"{name}.pkcs8.key"}


TLS = _server()
TRUST = {"ssl_certificate_authorities": ["ca.crt"]}
TRUST_OTHER = {"ssl_certificate_authorities": ["other-ca.crt"]}

CASES = {
    # a. a plain sender at a TLS port: a close (our inputs and Netty send no alert)
    "a-native-plain-to-native-tls": Case(HTTP, TLS, HTTP, {}, (IF_TLS, IF_LUMBERJACK), True),
    "a-framed-plain-to-framed-tls": Case(LUMBERJACK, TLS, LUMBERJACK, {}, (IF_TLS, IF_HTTP), True),
    # b. a TLS sender at a plain port: plain bytes in the handshake (native), a close (framed)
    "b-native-tls-to-native-plain": Case(HTTP, {}, HTTP, TRUST, (NOT_TLS,)),
    "b-framed-tls-to-framed-plain": Case(LUMBERJACK, {}, LUMBERJACK, TRUST, (NOT_TLS,), True),
    # c. native sender at a framed port: a close, plain or after the handshake
    "c-native-to-framed-plain": Case(LUMBERJACK, {}, HTTP, {}, (IF_LUMBERJACK,), True),
    "c-native-to-framed-tls": Case(LUMBERJACK, TLS, HTTP, TRUST, (NOT_HTTP,), True),
    # d. framed sender at a native port: HTTP/1.1 400 at once
    "d-framed-to-native-plain": Case(HTTP, {}, LUMBERJACK, {}, (SPEAKS_HTTP,)),
    "d-framed-to-native-tls": Case(HTTP, TLS, LUMBERJACK, TRUST, (SPEAKS_HTTP,)),
    # e. a CA we do not trust
    "e-native-unknown-ca": Case(HTTP, TLS, HTTP, TRUST_OTHER, (UNKNOWN_CA,)),
    "e-framed-unknown-ca": Case(LUMBERJACK, TLS, LUMBERJACK, TRUST_OTHER, (UNKNOWN_CA,)),
    # f. a certificate for another name
    "f-native-name-mismatch": Case(HTTP, _server("wrong-name"), HTTP, TRUST, (NAME_MISMATCH,)),
    "f-framed-name-mismatch": Case(
        LUMBERJACK, _server("wrong-name"), LUMBERJACK, TRUST, (NAME_MISMATCH,)
    ),
}


def _paths(settings: dict, certs) -> dict:
    """The settings with file names made absolute in the certificate folder."""
    return {
        name: [str(certs / v) for v in value] if isinstance(value, list) else str(certs / value)
        for name, value in settings.items()
    }


@pytest.fixture
def logged():
    """The project's log lines (level, text) while the test runs."""
    lines: list[tuple[LogLevel, str]] = []

    def observe(event):
        if str(event.get("log_namespace", "")).startswith("twisted_logstash"):
            lines.append((event.get("log_level"), formatEvent(event)))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


@defer.inlineCallbacks
def serving(wire: str, tls: dict):
    """Our input of ``wire`` on 127.0.0.1 (TLS when ``tls`` has settings); (service, host)."""
    sink = CallableSink(lambda events: None)
    factory = (HttpInputFactory if wire == HTTP else LumberjackInputFactory)(sink, reactor)
    settings = tls or {"ssl_enabled": False}
    endpoint = serverFromString(reactor, server_endpoint_string(settings, "127.0.0.1", 0))
    service = InputService(endpoint, factory, reactor, drain_timeout=DEADLINE)
    service.startService()
    port = yield service.listening
    return service, Host("127.0.0.1", port.getHost().port)


def transmitter(wire: str, tls: dict):
    """A transmitter of ``wire`` with its default timeouts (TLS when ``tls`` has settings)."""
    settings = ClientTLSSettings.from_settings(dict(tls, ssl_enabled=bool(tls)))
    endpoints = client_endpoint_factory(reactor, settings)
    if wire == HTTP:
        return HttpTransmitter(reactor, endpoints)
    return LumberjackTransmitter(reactor, endpoints)


@defer.inlineCallbacks
def failed_reason(sender, host: Host) -> str:
    """The reason one batch to ``host`` fails with, waited for at most DEADLINE seconds."""
    attempt = sender.transmit(host, sender.encode([{"message": "hint"}]))
    try:
        yield attempt.addTimeout(DEADLINE, reactor)
    except RetriableError as error:
        return error.reason
    except defer.TimeoutError:
        pytest.fail(f"no failure within {DEADLINE} s: the sender waited for a timeout")
    pytest.fail("delivered, but it should have failed")


def hint_lines(logged) -> list[tuple[LogLevel, str]]:
    return [(level, text) for level, text in logged if text.startswith("the receiver at ")]


@pytest.mark.parametrize("name", list(CASES))
@pytest_twisted.inlineCallbacks
def test_our_inputs(certs, logged, name):
    case = CASES[name]
    service, host = yield serving(case.receiver, _paths(case.server, certs))
    sender = transmitter(case.sender, _paths(case.client, certs))
    try:
        reasons = []
        for _ in range(3):
            reasons.append((yield failed_reason(sender, host)))
    finally:
        yield sender.close()
        yield service.stopService()
    if case.bare:  # a receiver that is stopping closes once the same way: no hint yet
        assert "; the receiver at" not in reasons.pop(0), reasons
    for reason in reasons:
        for hint in case.hints:
            assert f"the receiver at {host} " in reason, reason
            assert hint in reason, reason
    # logged once for the host, however many attempts fail the same way; at error level
    lines = hint_lines(logged)
    assert len(lines) == 1, lines
    level, text = lines[0]
    assert level == LogLevel.error
    assert reasons[0].endswith("; " + text)


# -- Logstash's Java stack: the Netty/JDK HTTP receiver of tests/peers ---------------------------


@pytest.fixture(scope="module")
def netty_plain():
    yield from start_netty_receiver()


@pytest.fixture(scope="module")
def netty_tls(certs):
    yield from start_netty_receiver(certs)


def _netty_host(receiver) -> Host:
    return Host("127.0.0.1", receiver.port)


@defer.inlineCallbacks
def _against(receiver, client: dict, certs, wire: str = HTTP, attempts: int = 1, **options):
    """The reason of the last of ``attempts`` failed attempts to send to ``receiver``."""
    sender = transmitter(wire, _paths(client, certs))
    for name, value in options.items():
        setattr(sender, name, value)
    try:
        for _ in range(attempts):
            reason = yield failed_reason(sender, _netty_host(receiver))
    finally:
        yield sender.close()
    return reason


@pytest_twisted.inlineCallbacks
def test_netty_a_plain_sender_at_its_tls_port(certs, logged, netty_tls):
    reason = yield _against(netty_tls, {}, certs, attempts=2)  # a bare close: said the 2nd time
    assert f"; the receiver at {_netty_host(netty_tls)} closed the connection" in reason
    assert IF_TLS in reason, reason
    assert [level for level, _ in hint_lines(logged)] == [LogLevel.error]


@pytest_twisted.inlineCallbacks
def test_netty_b_a_tls_sender_at_its_plain_port(certs, logged, netty_plain):
    reason = yield _against(netty_plain, TRUST, certs)
    assert reason == (
        "TLS handshake failed: the server answered bytes that are not TLS; the receiver at"
        f" {_netty_host(netty_plain)} {NOT_TLS}"
    )
    assert len(hint_lines(logged)) == 1


@pytest_twisted.inlineCallbacks
def test_netty_e_a_ca_we_do_not_trust(certs, logged, netty_tls):
    reason = yield _against(netty_tls, TRUST_OTHER, certs)
    assert reason.endswith(f"; the receiver at {_netty_host(netty_tls)} {UNKNOWN_CA}"), reason


@pytest_twisted.inlineCallbacks
def test_netty_d_a_framed_sender_hears_nothing_then_the_hint(certs, logged, netty_plain):
    """Netty's HTTP decoder waits for a line end that a window never sends: no answer at all.
    The framed sender says so when its wait for an ACK ends (made 1 s here)."""
    reason = yield _against(netty_plain, {}, certs, LUMBERJACK, ack_timeout=1.0)
    assert reason == (
        f"no ACK within 1.0 s (0 of 1 events acknowledged); the receiver at"
        f" {_netty_host(netty_plain)} answered nothing, not even a keep-alive: is it a"
        " logstash/http input? use --protocol http"
    )


# -- the real program -------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_logstash_output_with_the_wrong_protocol_prints_the_hint(programs):
    """``twistd -n logstash-output --protocol lumberjack`` into a native input: the hint is
    printed within seconds (process start included), long before any timeout."""
    service, host = yield serving(HTTP, {})
    try:
        sender = programs.output(
            "--protocol=lumberjack",
            f"--hosts={host}",
            "--source=generator:10",
        )
        yield sender.wait_for(
            rf"the receiver at {host} speaks HTTP: is it a logstash/http input\? use"
            r" --protocol http",
            timeout=15.0,
        )
        yield sender.wait_for(r"retrying in 0\.2 s", timeout=15.0)  # the second retry
        sender.signal()
        yield sender.ended()
    finally:
        yield service.stopService()
    # the hint once, however many retries (the final line says it once more, as its last
    # reason); each retry line says what happened in short
    text = sender.stdout.decode()
    lines = text.splitlines()
    hint = f"the receiver at {host} speaks HTTP"
    assert len([line for line in lines if hint in line and "sent: " not in line]) == 1, text
    retries = [line for line in lines if "retrying in" in line]
    assert len(retries) >= 2, text
    for line in retries:
        assert line.endswith(
            f"sending 10 events to {host} failed (protocol error: unknown protocol version"
            f" byte 0x48); retrying in {line.rsplit(' ', 2)[1]} s"
        ), line
