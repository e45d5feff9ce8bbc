"""The framed wire over mutual TLS on 127.0.0.1, with the project's TLS endpoints."""

from __future__ import annotations

import pytest
import pytest_twisted
from support_lumberjack import HeldSink
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint

from tests import support_tls
from twisted_logstash.errors import RetriableError
from twisted_logstash.security.endpoints import TLSServerEndpoint, client_endpoint_factory
from twisted_logstash.security.settings import ClientTLSSettings, ServerTLSSettings
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter
from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory

certs = support_tls.certs  # the session fixture, under its name
TIMEOUT = 10.0


@defer.inlineCallbacks
def serving_mtls(certs, sink):
    settings = {
        "ssl_handshake_timeout": 5000,
        "ssl_certificate": str(certs / "server.crt"),
        "ssl_key": str(certs / "server.pkcs8.key"),
        "ssl_client_authentication": "required",
        "ssl_certificate_authorities": [str(certs / "ca.crt")],
    }
    endpoint = TLSServerEndpoint(
        reactor,
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
        ServerTLSSettings.from_settings(settings),
    )
    port = yield endpoint.listen(LumberjackInputFactory(sink, reactor))
    return port, Host("127.0.0.1", port.getHost().port)


def client_settings(certs, identity: bool):
    settings = {"ssl_enabled": True, "ssl_certificate_authorities": [str(certs / "ca.crt")]}
    if identity:
        settings["ssl_certificate"] = str(certs / "client.crt")
        settings["ssl_key"] = str(certs / "client.pkcs8.key")
    return settings


@pytest_twisted.inlineCallbacks
def test_windows_over_mutual_tls(certs):
    sink = HeldSink(auto=True)
    port, host = yield serving_mtls(certs, sink)
    factory = client_endpoint_factory(
        reactor, ClientTLSSettings.from_settings(client_settings(certs, identity=True))
    )
    transmitter = LumberjackTransmitter(reactor, factory, ack_timeout=TIMEOUT)
    try:
        for w in range(2):
            payload = transmitter.encode([{"w": w, "i": i} for i in range(100)])
            yield transmitter.transmit(host, payload).addTimeout(TIMEOUT, reactor)
        assert [(e["w"], e["i"]) for e in sink.events] == [
            (w, i) for w in range(2) for i in range(100)
        ]
    finally:
        yield transmitter.close()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_client_without_certificate_is_refused_and_retriable(certs):
    sink = HeldSink(auto=True)
    port, host = yield serving_mtls(certs, sink)
    factory = client_endpoint_factory(
        reactor, ClientTLSSettings.from_settings(client_settings(certs, identity=False))
    )
    transmitter = LumberjackTransmitter(reactor, factory, ack_timeout=TIMEOUT)
    try:
        with pytest.raises(RetriableError, match="requires a client certificate"):
            yield transmitter.transmit(host, transmitter.encode([{"a": 1}])).addTimeout(
                TIMEOUT, reactor
            )
        assert sink.batches == []
    finally:
        yield transmitter.close()
        yield port.stopListening()
