"""``logstash-tls`` endpoint strings: TLS configured once, usable by any Twisted program.

    serverFromString(reactor, "logstash-tls:port=9800:interface=127.0.0.1:"
                              "ssl_certificate=/etc/ls/server.crt:ssl_key=/etc/ls/server.pkcs8.key:"
                              "ssl_client_authentication=required:"
                              "ssl_certificate_authorities=/etc/ls/ca.crt")
    clientFromString(reactor, "logstash-tls:host=127.0.0.1:port=9800:"
                              "ssl_certificate_authorities=/etc/ls/ca.crt")

Every key after the address is a Logstash TLS setting (see ``tls.py``); list settings
(``ssl_certificate_authorities``, ``ssl_supported_protocols``, ``ssl_cipher_suites``) are comma
separated, a comma inside an item written ``\\\\,`` (``split_list``). Colons, equal signs
and backslashes inside a value are escaped with a backslash (``escape``). The strings are
checked with Logstash's rules (``config.py``) when parsed, so a broken string fails before
anything listens or connects.

The programs never assemble these strings by hand: ``server_endpoint_string`` builds one from
the settings, and ``client_endpoint_factory`` builds client endpoints per output host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.transport.hosts import Host

PREFIX = "logstash-tls"
DEFAULT_CONNECT_TIMEOUT = 30.0

#: TLS settings a ``logstash-tls`` string may carry, per side
SERVER_SETTINGS = (
    "ssl_certificate",
    "ssl_key",
    "ssl_key_passphrase",
    "ssl_keystore_path",
    "ssl_keystore_password",
    "ssl_client_authentication",
    "ssl_certificate_authorities",
    "ssl_handshake_timeout",
    "ssl_supported_protocols",
    "ssl_cipher_suites",
)
CLIENT_SETTINGS = (
    "ssl_certificate",
    "ssl_key",
    "ssl_key_passphrase",
    "ssl_keystore_path",
    "ssl_keystore_password",
    "ssl_certificate_authorities",
    "ssl_truststore_path",
    "ssl_truststore_password",
    "ssl_verification_mode",
    "ssl_supported_protocols",
    "ssl_cipher_suites",
)
LISTS = ("ssl_certificate_authorities", "ssl_supported_protocols", "ssl_cipher_suites")


def escape(value: object) -> str:
    """Escape a value for an endpoint string (backslash, colon and equal sign)."""
    text = str(value)
    for char in ("\\", ":", "="):
        text = text.replace(char, "\\" + char)
    return text


def _endpoint_string(settings: Mapping, address: str, names: tuple[str, ...]) -> str:
    """``tcp:ADDRESS`` when SSL is off, else ``logstash-tls:ADDRESS`` and the given settings
    among ``names``."""
    from twisted_logstash import config

    if not config.ssl_on(settings):
        return f"tcp:{address}"
    parts = [
        f"{name}={_escape_setting(name, settings[name])}"
        for name in names
        if config.is_given(settings, name)
    ]
    return ":".join([f"{PREFIX}:{address}", *parts])


def _escape_setting(name: str, value) -> str:
    if name not in LISTS:
        return escape(value)
    return ",".join(escape(str(item).replace(",", "\\,")) for item in value)


def split_list(value: str) -> list[str]:
    """A list setting's items: cut at commas, except a comma written ``\\,`` (which is how a
    CA path holding a comma is written; any other backslash is kept as it is)."""
    items, current, chars = [], [], iter(value)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            current.append("," if following == "," else char + following)
        elif char == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def server_endpoint_string(settings: Mapping, host: str, port: int) -> str:
    """The server endpoint string for the input's settings (``tcp:`` when SSL is off)."""
    return _endpoint_string(settings, f"port={int(port)}:interface={escape(host)}", SERVER_SETTINGS)


def client_endpoint_string(settings: Mapping, host: Host) -> str:
    """The client endpoint string for one output host (``tcp:`` when SSL is off)."""
    address = f"host={escape(host.host)}:port={int(host.port)}"
    return _endpoint_string(settings, address, CLIENT_SETTINGS)


def client_endpoint_factory(
    reactor, settings: Mapping, timeout: float = DEFAULT_CONNECT_TIMEOUT
) -> Callable[[Host], IStreamClientEndpoint]:
    """A callable giving each output host its endpoint: TLS verified for that host, or TCP.

    The TLS context (trust, identity, protocols, ciphers) is built once, here, so that a
    broken setting fails now; each host gets its own name check (DNS name or IP address).
    """
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    from twisted_logstash import config

    if not config.ssl_on(settings):

        def plain(host: Host) -> IStreamClientEndpoint:
            return HostnameEndpoint(reactor, host.host, host.port, timeout=timeout)

        return plain

    from twisted_logstash.security import tls

    context = tls.client_context(settings)
    verify = (settings.get("ssl_verification_mode") or "full") == "full"

    def secure(host: Host) -> IStreamClientEndpoint:
        creator = tls.ClientTLS(context, host.host, verify)
        return wrapClientTLS(
            creator, HostnameEndpoint(reactor, host.host, host.port, timeout=timeout)
        )

    return secure


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """Listen on ``endpoint`` with TLS, dropping peers that do not finish the handshake."""

    def __init__(self, reactor, endpoint: IStreamServerEndpoint, creator, handshake_timeout: float):
        self._reactor = reactor
        self._endpoint = endpoint
        self._creator = creator
        self._handshake_timeout = handshake_timeout

    def listen(self, protocolFactory):
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from twisted_logstash.security.tls import HandshakeTimeoutFactory

        timed = HandshakeTimeoutFactory(protocolFactory, self._reactor, self._handshake_timeout)
        return self._endpoint.listen(TLSMemoryBIOFactory(self._creator, False, timed))


def _settings(kwargs: dict, allowed: tuple[str, ...], side: str) -> dict:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigurationError(
            f"{PREFIX} {side} endpoint: unknown parameter(s) {', '.join(unknown)}"
        )
    settings: dict = {}
    for name, value in kwargs.items():
        if name in LISTS:
            settings[name] = split_list(value)
        else:
            settings[name] = value
    return settings


def _number(side: str, name: str, value: str, kind=int):
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(
            f"{PREFIX} {side} endpoint: {name} must be a number, not {value!r}"
        )


@implementer(IPlugin, IStreamServerEndpointStringParser)
class LogstashTLSServerParser:
    """``logstash-tls:port=P[:interface=A][:backlog=N][:ssl_...=...]`` for listening."""

    prefix = PREFIX

    def parseStreamServer(self, reactor, *args, **kwargs) -> IStreamServerEndpoint:
        from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

        from twisted_logstash import config
        from twisted_logstash.security import tls

        if args:
            kwargs.setdefault("port", args[0])
        port = _number("server", "port", kwargs.pop("port", "9800"))
        interface = kwargs.pop("interface", "")
        backlog = _number("server", "backlog", kwargs.pop("backlog", "50"))
        settings = _settings(kwargs, SERVER_SETTINGS, "server")
        config.check_input(settings, set(settings))
        timeout_ms = _number(
            "server",
            "ssl_handshake_timeout",
            settings.get("ssl_handshake_timeout", tls.DEFAULT_HANDSHAKE_TIMEOUT_MS),
        )
        kind = TCP6ServerEndpoint if ":" in interface else TCP4ServerEndpoint
        tcp = kind(reactor, port, backlog, interface)
        return TLSServerEndpoint(reactor, tcp, tls.server_options(settings), timeout_ms / 1000.0)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class LogstashTLSClientParser:
    """``logstash-tls:host=H:port=P[:timeout=S][:ssl_...=...]`` for connecting, verified."""

    prefix = PREFIX

    def parseStreamClient(self, reactor, *args, **kwargs) -> IStreamClientEndpoint:
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

        from twisted_logstash import config
        from twisted_logstash.security import tls

        if args:
            kwargs.setdefault("host", args[0])
        if len(args) > 1:
            kwargs.setdefault("port", args[1])
        host = kwargs.pop("host", None)
        if not host:
            raise ConfigurationError(f"{PREFIX} client endpoint: host= is required")
        port = _number("client", "port", kwargs.pop("port", "9800"))
        timeout = _number(
            "client", "timeout", kwargs.pop("timeout", str(DEFAULT_CONNECT_TIMEOUT)), float
        )
        settings = _settings(kwargs, CLIENT_SETTINGS, "client")
        config.check_output(settings, set(settings))
        return wrapClientTLS(
            tls.client_options(settings, host),
            HostnameEndpoint(reactor, host, port, timeout=timeout),
        )
