"""TLS over real loopback sockets: client authentication, verification, protocols, failures.

Every connection is 127.0.0.1; each failure is asserted through ``describe_tls_failure``, the
one line a user reads.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from OpenSSL import SSL
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from tests import support_tls
from tests.support_tls import AckServerFactory, ping
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.security import contexts, failures, handshake
from twisted_logstash.security.endpoints import TLSServerEndpoint
from twisted_logstash.security.settings import (
    DEFAULT_PROTOCOLS,
    ClientTLSSettings,
    ServerTLSSettings,
)

certs = support_tls.certs  # the session fixture, under its name


def server_settings(certs, **extra):
    settings = {
        "ssl_certificate": str(certs / "server.crt"),
        "ssl_key": str(certs / "server.pkcs8.key"),
    }
    settings.update(extra)
    return settings


def client_settings(certs, **extra):
    settings = {"ssl_certificate_authorities": [str(certs / "ca.crt")]}
    settings.update(extra)
    return settings


def _record(kind, settings, **extra):
    """A settings object as given, unchecked: the errors under test are the contexts' own."""
    values = {**settings, **extra}
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def server_record(settings, **extra) -> ServerTLSSettings:
    return _record(ServerTLSSettings, settings, **extra)


def client_record(settings, **extra) -> ClientTLSSettings:
    return _record(ClientTLSSettings, settings, **extra)


CLIENT_IDENTITIES = {
    "valid": {"ssl_certificate": "client.crt", "ssl_key": "client.pkcs8.key"},
    "none": {},
    "other-ca": {"ssl_certificate": "other-client.crt", "ssl_key": "other-client.pkcs8.key"},
}


@defer.inlineCallbacks
def serving(settings, handshake_timeout=5.0):
    from twisted.internet import reactor

    factory = AckServerFactory()
    endpoint = TLSServerEndpoint(
        reactor,
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
        server_record(settings, ssl_handshake_timeout=int(handshake_timeout * 1000)),
    )
    port = yield endpoint.listen(factory)
    return port, factory


def connect_to(port, settings, hostname="127.0.0.1"):
    from twisted.internet import reactor

    tcp = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    return ping(
        reactor, wrapClientTLS(contexts.client_options(client_record(settings), hostname), tcp)
    )


@defer.inlineCallbacks
def outcome(port, settings, hostname="127.0.0.1"):
    """'ok', or the one-line description of why the client failed."""
    try:
        answer = yield connect_to(port, settings, hostname)
    except Exception as error:  # the reason the connection was lost
        return failures.describe_tls_failure(error)
    assert answer == b"ack:ping"
    return "ok"


# (client authentication, client identity) -> what the client reads
MATRIX = {
    ("none", "valid"): "ok",
    ("none", "none"): "ok",
    ("none", "other-ca"): "ok",
    ("optional", "valid"): "ok",
    ("optional", "none"): "ok",
    ("optional", "other-ca"): "the peer does not trust our certificate (unknown CA)",
    ("required", "valid"): "ok",
    ("required", "none"): "the server requires a client certificate; none was presented",
    ("required", "other-ca"): "the peer does not trust our certificate (unknown CA)",
}
SERVER_SIDE = {
    ("optional", "other-ca"): "certificate verify failed",
    ("required", "none"): "peer did not present a certificate",
    ("required", "other-ca"): "certificate verify failed",
}


@pytest.mark.parametrize(("mode", "identity"), sorted(MATRIX))
@pytest_twisted.inlineCallbacks
def test_client_authentication_matrix(certs, mode, identity):
    extra = {"ssl_client_authentication": mode}
    if mode != "none":
        extra["ssl_certificate_authorities"] = [str(certs / "ca.crt")]
    port, factory = yield serving(server_settings(certs, **extra))
    try:
        client = client_settings(
            certs, **{k: str(certs / v) for k, v in CLIENT_IDENTITIES[identity].items()}
        )
        server_lost = factory.next_lost()
        result = yield outcome(port, client)
        assert result == MATRIX[(mode, identity)]
        reason = yield server_lost
        if (mode, identity) in SERVER_SIDE:
            assert failures.describe_tls_failure(reason) == SERVER_SIDE[(mode, identity)]
    finally:
        yield port.stopListening()


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        ("127.0.0.1", "ok"),
        ("localhost", "ok"),
        ("127.0.0.2", "server certificate does not match 127.0.0.2"),
        ("wrong.example", "server certificate does not match wrong.example"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_names_are_checked_for_ip_and_dns(certs, hostname, expected):
    """Always connected to 127.0.0.1; the name checked is an IP SAN or a DNS SAN."""
    port, _ = yield serving(server_settings(certs))
    try:
        assert (yield outcome(port, client_settings(certs), hostname)) == expected
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_wrong_name_fails_under_full_and_passes_under_none(certs):
    settings = server_settings(
        certs,
        ssl_certificate=str(certs / "wrong-name.crt"),
        ssl_key=str(certs / "wrong-name.pkcs8.key"),
    )
    port, _ = yield serving(settings)
    try:
        full = yield outcome(port, client_settings(certs))
        assert full == "server certificate does not match 127.0.0.1"
        unverified = yield outcome(port, {"ssl_verification_mode": "none"})
        assert unverified == "ok"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_expired_server_certificate_fails_under_full(certs):
    settings = server_settings(
        certs, ssl_certificate=str(certs / "expired.crt"), ssl_key=str(certs / "expired.pkcs8.key")
    )
    port, _ = yield serving(settings)
    try:
        result = yield outcome(port, client_settings(certs))
        assert result == "certificate verify failed: certificate has expired"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_unknown_server_ca_fails_under_full(certs):
    port, _ = yield serving(server_settings(certs))
    try:
        result = yield outcome(port, {"ssl_certificate_authorities": [str(certs / "other-ca.crt")]})
        assert result == "certificate verify failed: unable to get local issuer certificate"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_protocol_mismatch(certs):
    port, factory = yield serving(server_settings(certs, ssl_supported_protocols=["TLSv1.3"]))
    try:
        server_lost = factory.next_lost()
        result = yield outcome(port, client_settings(certs, ssl_supported_protocols=["TLSv1.2"]))
        assert result == "no protocol version in common"
        reason = yield server_lost
        assert failures.describe_tls_failure(reason) == "no protocol version in common"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_keystores_and_truststore(certs):
    """PKCS#12 identity on both sides, PKCS#12 trust store on the client, mutual TLS."""
    server = {
        "ssl_keystore_path": str(certs / "server.p12"),
        "ssl_keystore_password": "changeit",
        "ssl_client_authentication": "required",
        "ssl_certificate_authorities": [str(certs / "ca.crt")],
    }
    client = {
        "ssl_keystore_path": str(certs / "client.p12"),
        "ssl_keystore_password": "changeit",
        "ssl_truststore_path": str(certs / "truststore.p12"),
        "ssl_truststore_password": "changeit",
    }
    port, _ = yield serving(server)
    try:
        assert (yield outcome(port, client)) == "ok"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_encrypted_key_and_cipher_suites(certs):
    settings = server_settings(
        certs,
        ssl_key=str(certs / "server-encrypted.pkcs8.key"),
        ssl_key_passphrase="changeit",
        ssl_cipher_suites=["TLS_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
    )
    port, factory = yield serving(settings)
    try:
        first_lost = factory.next_lost()
        tls12 = yield outcome(port, client_settings(certs, ssl_supported_protocols=["TLSv1.2"]))
        assert tls12 == "ok"
        yield first_lost
        # the client offers only a TLSv1.3 suite the server does not allow
        server_lost = factory.next_lost()
        other = yield outcome(
            port, client_settings(certs, ssl_cipher_suites=["TLS_CHACHA20_POLY1305_SHA256"])
        )
        assert other == "handshake failure (no cipher suite or protocol in common?)"
        assert failures.describe_tls_failure((yield server_lost)) == "no cipher suite in common"
    finally:
        yield port.stopListening()


def test_wrong_passphrase_names_key_and_passphrase(certs):
    settings = server_settings(
        certs, ssl_key=str(certs / "server-encrypted.pkcs8.key"), ssl_key_passphrase="wrong"
    )
    with pytest.raises(ConfigurationError) as raised:
        contexts.server_options(server_record(settings))
    message = str(raised.value)
    assert str(certs / "server-encrypted.pkcs8.key") in message
    assert "ssl_key_passphrase" in message
    assert "wrong passphrase" in message


def test_missing_passphrase_names_the_setting(certs):
    settings = server_settings(certs, ssl_key=str(certs / "server-encrypted.pkcs8.key"))
    with pytest.raises(
        ConfigurationError, match="is encrypted: give its passphrase with `ssl_key_passphrase`"
    ):
        contexts.server_options(server_record(settings))


def test_certificate_without_key(certs):
    with pytest.raises(ConfigurationError, match="`ssl_key` is required"):
        contexts.client_options(
            client_record({"ssl_certificate": str(certs / "client.crt")}), "localhost"
        )


def test_certificate_given_as_key(certs):
    settings = server_settings(certs, ssl_key=str(certs / "server.crt"))
    with pytest.raises(ConfigurationError, match=r"not a PEM private key \(PKCS#8 expected\)"):
        contexts.server_options(server_record(settings))


def test_key_that_does_not_match_its_certificate(certs):
    settings = server_settings(certs, ssl_key=str(certs / "client.pkcs8.key"))
    with pytest.raises(ConfigurationError, match="does not match `ssl_certificate`"):
        contexts.server_options(server_record(settings))


def test_wrong_keystore_password(certs):
    settings = {"ssl_keystore_path": str(certs / "server.p12"), "ssl_keystore_password": "nope"}
    with pytest.raises(ConfigurationError, match="cannot be opened with the given `ssl_keystore"):
        contexts.server_options(server_record(settings))


def test_truststore_is_not_an_identity(certs):
    settings = {
        "ssl_keystore_path": str(certs / "truststore.p12"),
        "ssl_keystore_password": "changeit",
    }
    with pytest.raises(ConfigurationError, match="holds no private key"):
        contexts.server_options(server_record(settings))


def test_ca_file_without_certificate(certs):
    settings = client_settings(certs, ssl_certificate_authorities=[str(certs / "ca.pkcs8.key")])
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):
        contexts.client_options(client_record(settings), "localhost")


@pytest.mark.parametrize(
    ("protocols", "expected"),
    [
        (["TLSv1.2"], (SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION)),
        (["TLSv1.3"], (SSL.TLS1_3_VERSION, SSL.TLS1_3_VERSION)),
        (["TLSv1.3", "TLSv1.2"], (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION)),
        (None, (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION)),
        (["TLSv1.1", "TLSv1.2"], (SSL.TLS1_1_VERSION, SSL.TLS1_2_VERSION)),
    ],
)
def test_protocol_range(protocols, expected):
    assert contexts.protocol_range(protocols or DEFAULT_PROTOCOLS) == expected


def test_protocol_gap_and_unknown_are_refused():
    with pytest.raises(ConfigurationError, match="contiguous range"):
        contexts.protocol_range(["TLSv1.1", "TLSv1.3"])
    with pytest.raises(ConfigurationError, match="SSLv3 not supported"):
        contexts.protocol_range(["SSLv3"])


def test_cipher_suite_names():
    assert contexts.translate_cipher_suites([]) == (None, None)
    assert contexts.translate_cipher_suites(
        ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "AES128-SHA"]
    ) == ("ECDHE-RSA-AES256-GCM-SHA384:AES128-SHA", "TLS_AES_128_GCM_SHA256")
    with pytest.raises(ConfigurationError, match="TLS_FANCY_NEW_SUITE"):
        contexts.translate_cipher_suites(["TLS_FANCY_NEW_SUITE"])


def test_only_tls13_suites_with_only_tls12_protocol_is_refused(certs):
    settings = server_settings(
        certs, ssl_supported_protocols=["TLSv1.2"], ssl_cipher_suites=["TLS_AES_128_GCM_SHA256"]
    )
    with pytest.raises(ConfigurationError, match=r"only TLSv1\.3 suites"):
        contexts.server_options(server_record(settings))


class Recorder:
    """An application protocol that records what the wrapper tells it."""

    def __init__(self):
        self.events = []

    def makeConnection(self, transport):
        self.transport = transport
        self.events.append("made")

    def dataReceived(self, data):
        self.events.append(data)

    def connectionLost(self, reason):
        self.events.append("lost")


class RecorderFactory:
    def __init__(self):
        self.built = []

    def buildProtocol(self, addr):
        protocol = Recorder()
        self.built.append(protocol)
        return protocol

    def doStart(self):
        pass

    def doStop(self):
        pass


def _timed_connection(clock):
    factory = handshake.HandshakeTimeoutFactory(RecorderFactory(), clock, 10.0)
    wrapper = factory.buildProtocol(None)
    transport = StringTransport()
    transport.abortConnection = lambda: setattr(transport, "aborted", True)
    transport.aborted = False
    wrapper.makeConnection(transport)
    return wrapper, transport


def test_handshake_timeout_keeps_a_refusal():
    refusing = RecorderFactory()
    refusing.buildProtocol = lambda addr: None
    assert handshake.HandshakeTimeoutFactory(refusing, Clock(), 1.0).buildProtocol(None) is None


def test_handshake_timeout_drops_a_silent_peer():
    clock = Clock()
    _, transport = _timed_connection(clock)
    clock.advance(9.9)
    assert not transport.aborted
    clock.advance(0.1)
    assert transport.aborted
    assert clock.getDelayedCalls() == []


def test_handshake_timeout_is_cancelled_by_the_handshake():
    clock = Clock()
    wrapper, transport = _timed_connection(clock)
    wrapper.handshakeCompleted()
    assert clock.getDelayedCalls() == []
    clock.advance(60)
    assert not transport.aborted


def test_handshake_completion_reaches_a_listening_application():
    @implementer(IHandshakeListener)
    class Listening(Recorder):
        def handshakeCompleted(self):
            self.events.append("handshake")

    inner = RecorderFactory()
    inner.buildProtocol = lambda addr: inner.built.append(Listening()) or inner.built[-1]
    wrapper = handshake.HandshakeTimeoutFactory(inner, Clock(), 1.0).buildProtocol(None)
    wrapper.makeConnection(StringTransport())
    assert IHandshakeListener.providedBy(wrapper)
    wrapper.handshakeCompleted()
    assert inner.built[0].events == ["made", "handshake"]


def test_handshake_timeout_is_cancelled_when_the_peer_leaves():
    clock = Clock()
    wrapper, _ = _timed_connection(clock)
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    wrapper.connectionLost(Failure(ConnectionDone()))
    assert clock.getDelayedCalls() == []


@pytest_twisted.inlineCallbacks
def test_handshake_timeout_over_a_real_socket(certs):
    """A peer that connects and sends nothing is dropped; a real client still gets through."""
    from twisted.internet import reactor

    port, _ = yield serving(server_settings(certs), handshake_timeout=0.2)
    try:
        dropped = defer.Deferred()

        class Silent(protocol.Protocol):
            def connectionLost(self, reason):
                dropped.callback(reason.value)

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        yield endpoint.connect(protocol.Factory.forProtocol(Silent))
        dropped.addTimeout(5, reactor)
        yield dropped
        assert (yield outcome(port, client_settings(certs))) == "ok"
    finally:
        yield port.stopListening()


def test_describe_plain_errors():
    from twisted.internet.error import ConnectionRefusedError

    assert failures.describe_tls_failure(ConnectionRefusedError()) == "connection refused"
    error = SSL.Error([("SSL routines", "", "wrong version number")])
    assert failures.describe_tls_failure(error) == "the peer does not speak TLS (plain TCP?)"
    # a client knows the peer is the server it was sent to
    assert failures.describe_tls_failure(error, client=True) == (
        "the server answered bytes that are not TLS"
    )
    odd = SSL.Error([("SSL routines", "", "something new")])
    assert failures.describe_tls_failure(odd) == "TLS error: something new"


class TwoPings(protocol.Protocol):
    """Pings once, then again when told to, on the same connection."""

    def __init__(self):
        self.answers = []
        self.next = defer.Deferred()
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.write(b"1")

    def dataReceived(self, data):
        self.answers.append(data)
        waiting, self.next = self.next, defer.Deferred()
        waiting.callback(data)

    def connectionLost(self, reason):
        self.lost.callback(None)


@pytest_twisted.inlineCallbacks
def test_handshake_timeout_is_cancelled_over_a_real_socket(certs):
    """Real sockets, fake time: after the handshake, the timeout no longer applies."""
    from twisted.internet import reactor

    clock = Clock()
    endpoint = TLSServerEndpoint(
        clock,
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
        server_record(server_settings(certs), ssl_handshake_timeout=1000),
    )
    port = yield endpoint.listen(AckServerFactory())
    try:
        client = TwoPings()
        tcp = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        creator = contexts.client_options(client_record(client_settings(certs)), "127.0.0.1")
        yield wrapClientTLS(creator, tcp).connect(protocol.Factory.forProtocol(lambda: client))
        first = client.next
        first.addTimeout(10, reactor)
        assert (yield first) == b"ack:1"
        assert clock.getDelayedCalls() == []  # the handshake cancelled the timer
        clock.advance(3600)
        second = client.next
        second.addTimeout(10, reactor)
        client.transport.write(b"2")
        assert (yield second) == b"ack:2"
        client.transport.loseConnection()
        yield client.lost
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_handshake_timeout_with_fake_time_drops_silent_peer(certs):
    from twisted.internet import reactor

    clock = Clock()
    endpoint = TLSServerEndpoint(
        clock,
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
        server_record(server_settings(certs), ssl_handshake_timeout=10000),
    )
    factory = AckServerFactory()
    port = yield endpoint.listen(factory)
    try:
        lost = factory.next_lost()
        accepted = factory.next_made()
        client = TwoPings()
        client.connectionMade = lambda: None  # connects and says nothing
        tcp = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        yield tcp.connect(protocol.Factory.forProtocol(lambda: client))
        accepted.addTimeout(10, reactor)
        yield accepted
        assert len(clock.getDelayedCalls()) == 1
        clock.advance(9.9)
        assert not lost.called
        clock.advance(0.1)
        lost.addTimeout(10, reactor)
        yield lost
        yield client.lost
    finally:
        yield port.stopListening()


class SendsOnce(protocol.Protocol):
    payload = b""

    def connectionMade(self):
        self.transport.write(self.payload)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "the peer sent plain HTTP to a TLS port"),
        (b'{"message": "plain ndjson"}\n', "the peer does not speak TLS (plain TCP?)"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_plain_text_to_a_tls_port(certs, payload, expected):
    """What the input logs when a client forgot TLS (ssl_enabled false on one side only)."""
    from twisted.internet import reactor

    port, factory = yield serving(server_settings(certs))
    try:
        lost = factory.next_lost()
        sender = type("Sender", (SendsOnce,), {"payload": payload})
        tcp = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        yield tcp.connect(protocol.Factory.forProtocol(sender))
        lost.addTimeout(10, reactor)
        assert failures.describe_tls_failure((yield lost)) == expected
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_tls_client_to_a_plain_port(certs):
    from twisted.internet import reactor

    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(AckServerFactory())
    try:
        try:
            yield connect_to(port, client_settings(certs))
        except Exception as error:
            result = failures.describe_tls_failure(error, client=True)
        else:
            result = "connected"
        assert result == failures.SERVER_NOT_TLS
    finally:
        yield port.stopListening()


# -- why a handshake failed, as the server logs it ---------------------------------------------


class _Handle:
    """Stands for the server's SSL.Connection: whether it read a ClientHello."""

    def __init__(self, hello: bool):
        self.hello = hello

    def client_random(self):
        return b"r" * 32 if self.hello else None


def _watched(hello: bool | None = True):
    """A HandshakeTimeoutFactory connection on a StringTransport from 192.168.1.1:54321."""
    clock = Clock()
    wrapper, transport = _timed_connection(clock)
    if hello is not None:
        transport.getHandle = lambda: _Handle(hello)
    return wrapper, transport, clock


def _lines(events):
    from twisted.logger import formatEvent

    return [
        (event["log_level"].name, formatEvent(event))
        for event in events
        if event.get("log_namespace", "").startswith("twisted_logstash.security.")
    ]


def test_failed_handshake_is_logged_once_with_peer_and_cause():
    from twisted.logger import capturedLogs
    from twisted.python.failure import Failure

    wrapper, _, clock = _watched()
    with capturedLogs() as events:
        reason = Failure(SSL.Error([("SSL routines", "", "unsupported protocol")]))
        wrapper.connectionLost(reason)
    assert _lines(events) == [
        ("warn", "TLS handshake with 192.168.1.1:54321 failed: no protocol version in common")
    ]
    assert clock.getDelayedCalls() == []


def test_close_after_a_completed_handshake_is_not_logged():
    from twisted.internet.error import ConnectionDone, ConnectionLost
    from twisted.logger import capturedLogs
    from twisted.python.failure import Failure

    for reason in (ConnectionDone(), ConnectionLost(), SSL.Error([("", "", "bad record mac")])):
        wrapper, _, _ = _watched()
        wrapper.handshakeCompleted()
        with capturedLogs() as events:
            wrapper.connectionLost(Failure(reason))
        assert _lines(events) == []


def test_handshake_timeout_logs_only_its_own_line():
    from twisted.internet.error import ConnectionLost
    from twisted.logger import capturedLogs
    from twisted.python.failure import Failure

    wrapper, transport, clock = _watched()
    with capturedLogs() as events:
        clock.advance(10)
        assert transport.aborted
        wrapper.connectionLost(Failure(ConnectionLost()))
    assert _lines(events) == [("info", "dropped 192.168.1.1:54321: no TLS handshake within 10.0 s")]


def test_peer_leaving_during_the_handshake_is_logged_and_a_probe_is_not_a_warning():
    from twisted.internet.error import ConnectionDone, ConnectionLost
    from twisted.logger import capturedLogs
    from twisted.python.failure import Failure

    wrapper, _, _ = _watched(hello=True)
    with capturedLogs() as events:
        wrapper.connectionLost(Failure(ConnectionLost()))
    assert _lines(events) == [
        ("warn", f"TLS handshake with 192.168.1.1:54321 failed: {failures.CLOSED_DURING_HANDSHAKE}")
    ]
    probe, _, _ = _watched(hello=False)
    with capturedLogs() as events:
        probe.connectionLost(Failure(ConnectionDone()))
    assert _lines(events) == [
        ("info", "192.168.1.1:54321 closed the connection before starting a TLS handshake")
    ]


def test_closing_on_our_side_before_the_handshake_is_not_the_peers_failure():
    """The input stopping closes connections mid-handshake: not logged as a failed handshake."""
    from twisted.internet.error import ConnectionAborted, ConnectionLost
    from twisted.logger import capturedLogs
    from twisted.python.failure import Failure

    closing, _, _ = _watched()
    aborting, transport, _ = _watched()
    with capturedLogs() as events:
        closing.loseConnection()
        closing.connectionLost(Failure(ConnectionLost()))
        aborting.abortConnection()
        assert transport.aborted
        aborting.connectionLost(Failure(ConnectionLost()))
        other, _, _ = _watched()
        other.connectionLost(Failure(ConnectionAborted()))
    assert _lines(events) == []


def test_refused_client_certificate_goes_into_the_one_line(certs):
    """The verify callback gives its reason to the connection's line instead of logging alone."""
    from cryptography import x509 as cx509
    from OpenSSL import crypto
    from twisted.logger import capturedLogs
    from twisted.python.failure import Failure

    cert = crypto.X509.from_cryptography(
        cx509.load_pem_x509_certificate((certs / "other-client.crt").read_bytes())
    )
    wrapper, _, _ = _watched()
    tls_protocol = type("TLSProtocol", (), {"wrappedProtocol": wrapper})()
    conn = SSL.Connection(contexts.server_context(server_record(server_settings(certs))), None)
    conn.set_app_data(tls_protocol)
    refused = "refused a client certificate (CN=other-client,O=twisted-logstash test): "
    with capturedLogs() as events:
        assert contexts._server_verify(conn, cert, 20, 0, 0) is False
        assert _lines(events) == []
        wrapper.connectionLost(Failure(SSL.Error([("", "", "certificate verify failed")])))
        # without the wrapper (no app data), the callback logs the refusal itself
        alone = SSL.Connection(contexts.server_context(server_record(server_settings(certs))), None)
        assert contexts._server_verify(alone, cert, 20, 0, 0) is False
    assert _lines(events) == [
        (
            "warn",
            f"TLS handshake with 192.168.1.1:54321 failed: {refused}"
            "unable to get local issuer certificate",
        ),
        ("warn", refused + "unable to get local issuer certificate"),
    ]
