"""``logstash-tls`` endpoint strings: built from settings, parsed by Twisted, used for real.

The exchanges run over 127.0.0.1 only, with endpoints made by serverFromString and
clientFromString alone, as any Twisted program would.
"""

from __future__ import annotations

import shutil

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import getPlugins

from tests import support_tls
from tests.support_tls import AckServerFactory, ping
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.security import endpoints, failures
from twisted_logstash.security.settings import ClientTLSSettings, ServerTLSSettings
from twisted_logstash.transport.hosts import Host

certs = support_tls.certs  # the session fixture, under its name


@pytest.fixture
def odd_certs(certs, tmp_path):
    """The certificate set in a folder whose name needs escaping (colon, backslash, '=', and a
    comma, which list settings such as the CA files also use between items)."""
    folder = tmp_path / "odd:name\\with=signs,and,commas"
    shutil.copytree(certs, folder)
    return folder


def mtls_settings(folder):
    return {
        "ssl_certificate": str(folder / "server.crt"),
        "ssl_key": str(folder / "server-encrypted.pkcs8.key"),
        "ssl_key_passphrase": "change:it\\=",  # replaced below; exercises escaping only
        "ssl_client_authentication": "required",
        "ssl_certificate_authorities": [str(folder / "ca.crt")],
        "ssl_supported_protocols": ["TLSv1.2", "TLSv1.3"],
        "ssl_handshake_timeout": 5000,
    }


def client_settings(folder):
    return {
        "ssl_certificate": str(folder / "client.crt"),
        "ssl_key": str(folder / "client.pkcs8.key"),
        "ssl_certificate_authorities": [str(folder / "ca.crt")],
        "ssl_verification_mode": "full",
    }


def test_plain_tcp_when_ssl_is_disabled():
    settings = {"ssl_enabled": False}
    assert endpoints.server_endpoint_string(settings, "0.0.0.0", 9800) == (
        "tcp:port=9800:interface=0.0.0.0"
    )
    assert endpoints.server_endpoint_string(settings, "::1", 9800) == (
        "tcp:port=9800:interface=\\:\\:1"
    )
    assert endpoints.client_endpoint_string(settings, Host("::1", 9800)) == (
        "tcp:host=\\:\\:1:port=9800"
    )


def test_ipv6_interface_is_escaped_and_parsed(certs):
    from twisted.internet import reactor

    plain = serverFromString(
        reactor, endpoints.server_endpoint_string({"ssl_enabled": False}, "::1", 0)
    )
    # plain tcp: listens on IPv6 when the interface is an IPv6 address
    assert plain._interface == "::1"


def test_tls_string_carries_every_setting(certs):
    settings = mtls_settings(certs)
    text = endpoints.server_endpoint_string(settings, "127.0.0.1", 9800)
    assert text.startswith("logstash-tls:port=9800:interface=127.0.0.1:")
    assert "ssl_key_passphrase=change\\:it\\\\\\=" in text
    assert "ssl_supported_protocols=TLSv1.2,TLSv1.3" in text
    assert "ssl_client_authentication=required" in text
    assert "ssl_handshake_timeout=5000" in text


def test_list_settings_split_at_commas_but_not_escaped_ones():
    assert endpoints.split_list("a.crt, b.crt,,") == ["a.crt", "b.crt"]
    assert endpoints.split_list("/x/a\\,b.crt,/y/c.crt") == ["/x/a,b.crt", "/y/c.crt"]
    assert endpoints.split_list("C:\\certs\\ca.crt") == ["C:\\certs\\ca.crt"]


def test_escape():
    assert endpoints.escape("a:b\\c=d") == "a\\:b\\\\c\\=d"


def test_plugins_are_discovered():
    servers = [
        p for p in getPlugins(IStreamServerEndpointStringParser) if p.prefix == "logstash-tls"
    ]
    clients = [
        p
        for p in getPlugins(IStreamClientEndpointStringParserWithReactor)
        if p.prefix == "logstash-tls"
    ]
    assert [type(p) for p in servers] == [endpoints.LogstashTLSServerParser]
    assert [type(p) for p in clients] == [endpoints.LogstashTLSClientParser]


@pytest_twisted.inlineCallbacks
def test_mutual_tls_with_strings_alone(odd_certs):
    """Paths with ':', '\\', '=' and ',' survive the string; mTLS works end to end."""
    from twisted.internet import reactor

    server = mtls_settings(odd_certs)
    server["ssl_key_passphrase"] = "changeit"
    server_string = endpoints.server_endpoint_string(server, "127.0.0.1", 0)
    port = yield serverFromString(reactor, server_string).listen(AckServerFactory())
    try:
        client_string = endpoints.client_endpoint_string(
            client_settings(odd_certs), Host("127.0.0.1", port.getHost().port)
        )
        answer = yield ping(reactor, clientFromString(reactor, client_string))
        assert answer == b"ack:ping"
        # without a client certificate the same server refuses the client
        anonymous = dict(client_settings(odd_certs))
        del anonymous["ssl_certificate"], anonymous["ssl_key"]
        bare = endpoints.client_endpoint_string(anonymous, Host("127.0.0.1", port.getHost().port))
        with pytest.raises(Exception) as raised:
            yield ping(reactor, clientFromString(reactor, bare))
        assert failures.describe_tls_failure(raised.value) == (
            "the server requires a client certificate; none was presented"
        )
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_client_endpoint_factory_tls(certs):
    from twisted.internet import reactor

    server = mtls_settings(certs)
    server["ssl_key_passphrase"] = "changeit"
    server_string = endpoints.server_endpoint_string(server, "127.0.0.1", 0)
    port = yield serverFromString(reactor, server_string).listen(AckServerFactory())
    try:
        factory = endpoints.client_endpoint_factory(
            reactor, ClientTLSSettings.from_settings(client_settings(certs))
        )
        host = Host("127.0.0.1", port.getHost().port)
        assert (yield ping(reactor, factory(host))) == b"ack:ping"
        assert (yield ping(reactor, factory(host))) == b"ack:ping"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_client_endpoint_factory_plain():
    from twisted.internet import reactor

    settings = {"ssl_enabled": False}
    server_string = endpoints.server_endpoint_string(settings, "127.0.0.1", 0)
    port = yield serverFromString(reactor, server_string).listen(AckServerFactory())
    try:
        factory = endpoints.client_endpoint_factory(
            reactor, ClientTLSSettings.from_settings(settings)
        )
        answer = yield ping(reactor, factory(Host("127.0.0.1", port.getHost().port)))
        assert answer == b"ack:ping"
    finally:
        yield port.stopListening()


def test_client_endpoint_factory_checks_settings_once(certs):
    from twisted.internet import reactor

    broken = {"ssl_certificate_authorities": [str(certs / "ca.pkcs8.key")]}
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):
        endpoints.client_endpoint_factory(reactor, ClientTLSSettings.from_settings(broken))


@pytest_twisted.inlineCallbacks
def test_handshake_timeout_from_the_string(certs):
    from twisted.internet import reactor

    server = {
        "ssl_certificate": str(certs / "server.crt"),
        "ssl_key": str(certs / "server.pkcs8.key"),
        "ssl_handshake_timeout": 100,
    }
    text = endpoints.server_endpoint_string(server, "127.0.0.1", 0)
    port = yield serverFromString(reactor, text).listen(AckServerFactory())
    try:
        dropped = defer.Deferred()

        class Silent(protocol.Protocol):
            def connectionLost(self, reason):
                dropped.callback(reason.value)

        tcp = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        yield tcp.connect(protocol.Factory.forProtocol(Silent))
        dropped.addTimeout(5, reactor)
        yield dropped
    finally:
        yield port.stopListening()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "logstash-tls:port=0:ssl_bogus=1",
            "logstash-tls server endpoint: unknown parameter(s) ssl_bogus",
        ),
        (
            "logstash-tls:port=0",
            "TLS is on but has no identity: give `ssl_certificate` and `ssl_key` (or "
            "`ssl_keystore_path` and `ssl_keystore_password`), or turn TLS off with "
            "`ssl_enabled => false`; `make certs` creates test certificates in certs/out",
        ),
        ("logstash-tls:port=x", "logstash-tls server endpoint: port must be a number, not 'x'"),
    ],
)
def test_server_string_errors(text, message):
    from twisted.internet import reactor

    with pytest.raises(ConfigurationError) as raised:
        serverFromString(reactor, text)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("logstash-tls:port=9800", "logstash-tls client endpoint: host= is required"),
        (
            "logstash-tls:host=h:ssl_verification_mode=none:ssl_truststore_path=/x",
            "`ssl_truststore_path` is not used with `ssl_verification_mode => none` "
            "(nothing is verified)",
        ),
        (
            "logstash-tls:host=h:ssl_client_authentication=none",
            "logstash-tls client endpoint: unknown parameter(s) ssl_client_authentication",
        ),
    ],
)
def test_client_string_errors(text, message):
    from twisted.internet import reactor

    with pytest.raises(ConfigurationError) as raised:
        clientFromString(reactor, text)
    assert str(raised.value) == message


def test_a_string_parses_into_the_settings_object_flags_make(certs):
    """One set of defaults: the object behind a ``logstash-tls`` string equals the one
    ``from_settings`` makes from the same settings, and both carry the documented defaults."""
    from twisted.internet import reactor

    given = {
        "ssl_certificate": str(certs / "server.crt"),
        "ssl_key": str(certs / "server.pkcs8.key"),
    }
    parsed = serverFromString(reactor, endpoints.server_endpoint_string(given, "127.0.0.1", 0))
    assert parsed.settings == ServerTLSSettings.from_settings(given)
    assert parsed.settings.ssl_client_authentication == "none"
    assert parsed.settings.ssl_handshake_timeout == 10000
    assert parsed.settings.ssl_supported_protocols == ("TLSv1.2", "TLSv1.3")
    # and back: an object written as a string parses into an equal object
    again = serverFromString(
        reactor, endpoints.server_endpoint_string(parsed.settings, "127.0.0.1", 0)
    )
    assert again.settings == parsed.settings


def test_a_client_string_parses_into_the_settings_object(certs, monkeypatch):
    """The client parser hands the object ``from_settings`` makes to the same builder."""
    from twisted.internet import reactor

    built = []
    real = endpoints.client_endpoint_factory

    def recording(reactor, settings, timeout):
        built.append((settings, timeout))
        return real(reactor, settings, timeout)

    monkeypatch.setattr(endpoints, "client_endpoint_factory", recording)
    given = client_settings(certs)
    clientFromString(reactor, endpoints.client_endpoint_string(given, Host("127.0.0.1", 9800)))
    assert built == [(ClientTLSSettings.from_settings(given), endpoints.DEFAULT_CONNECT_TIMEOUT)]
    assert built[0][0].ssl_verification_mode == "full"


def test_server_endpoint_from_a_settings_object(certs):
    from twisted.internet import reactor

    plain = endpoints.server_endpoint(
        reactor, "::1", 0, ServerTLSSettings.from_settings({"ssl_enabled": False})
    )
    assert plain._interface == "::1"
    assert not isinstance(plain, endpoints.TLSServerEndpoint)
    settings = ServerTLSSettings.from_settings(
        {"ssl_certificate": str(certs / "server.crt"), "ssl_key": str(certs / "server.pkcs8.key")}
    )
    secure = endpoints.server_endpoint(reactor, "127.0.0.1", 0, settings)
    assert isinstance(secure, endpoints.TLSServerEndpoint)
    assert secure.settings is settings
