"""TLS test support: a generated certificate set and a tiny echo/ack protocol.

The certificate set is made once per test session by ``certs/make_certs.py`` into a temporary
folder (nothing is committed). The echo protocol lets TLS tests run over real loopback sockets
without depending on either wire's protocol code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from twisted.internet import defer, protocol

_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10.0


def _load_make_certs():
    spec = importlib.util.spec_from_file_location("make_certs", _ROOT / "certs" / "make_certs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_certs_module = _load_make_certs()


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    """A folder holding the full certificate set (see certs/make_certs.py)."""
    return make_certs_module.make_certs(tmp_path_factory.mktemp("tls") / "certs")


class AckServer(protocol.Protocol):
    """Answers every chunk with ``ack:`` + the chunk; records why the connection ended."""

    def connectionMade(self) -> None:
        made, self.factory.made = self.factory.made, []
        for d in made:
            d.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(b"ack:" + data)

    def connectionLost(self, reason) -> None:
        self.factory.lost.append(reason)
        waiting, self.factory.waiting = self.factory.waiting, []
        for d in waiting:
            d.callback(reason.value)


class AckServerFactory(protocol.Factory):
    protocol = AckServer

    def __init__(self):
        self.lost = []
        self.waiting = []
        self.made = []

    def next_made(self) -> defer.Deferred:
        """Fires when the next connection is accepted (under TLS: before the handshake)."""
        d = defer.Deferred()
        self.made.append(d)
        return d

    def next_lost(self) -> defer.Deferred:
        """Fires with the exception that ended the next server-side connection."""
        d = defer.Deferred()
        self.waiting.append(d)
        return d


class PingClient(protocol.Protocol):
    """Sends ``ping`` and fires ``done`` with the answer, or fails with the loss reason."""

    def __init__(self):
        self.done = defer.Deferred()
        self.received = b""

    def connectionMade(self) -> None:
        self.transport.write(b"ping")

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.received == b"ack:ping" and not self.done.called:
            self.done.callback(self.received)
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        if not self.done.called:
            self.done.errback(reason)


@defer.inlineCallbacks
def ping(reactor, endpoint):
    """Connect, send ping, return the answer; fail with the reason the connection was lost."""
    client = PingClient()
    factory = protocol.Factory.forProtocol(lambda: client)
    yield endpoint.connect(factory)
    client.done.addTimeout(TIMEOUT, reactor)
    answer = yield client.done
    return answer
