"""Endpoints built from the TLS settings objects, and the ``logstash-tls`` endpoint strings.

The programs build their endpoints directly from a ``ServerTLSSettings`` or
``ClientTLSSettings``: ``server_endpoint(reactor, host, port, settings)`` for an input,
``client_endpoint_factory(reactor, settings)`` for the hosts of an output (TLS when
``ssl_enabled``, plain TCP otherwise).

The ``logstash-tls`` strings are one more way in, for any Twisted program:

    serverFromString(reactor, "logstash-tls:port=9800:interface=127.0.0.1:"
                              "ssl_certificate=/etc/ls/server.crt:ssl_key=/etc/ls/server.pkcs8.key:"
                              "ssl_client_authentication=required:"
                              "ssl_certificate_authorities=/etc/ls/ca.crt")
    clientFromString(reactor, "logstash-tls:host=127.0.0.1:port=9800:"
                              "ssl_certificate_authorities=/etc/ls/ca.crt")

Every key after the address is a Logstash TLS setting; list settings
(``ssl_certificate_authorities``, ``ssl_supported_protocols``, ``ssl_cipher_suites``) are comma
separated, a comma inside an item written ``\\\\,`` (``split_list``). Colons, equal signs
and backslashes inside a value are escaped with a backslash (``escape``). A string is parsed
into the same settings object as flags are (``from_settings``: the same defaults, Logstash's
rules), and that object goes to the same builders, so a broken string fails before anything
listens or connects. ``server_endpoint_string`` and ``client_endpoint_string`` write such a
string from settings, for handing to another program.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.security.settings import LISTS, ClientTLSSettings, ServerTLSSettings
from twisted_logstash.transport.hosts import Host

PREFIX = "logstash-tls"
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_BACKLOG = 50


def _names(kind: type) -> tuple[str, ...]:
    return tuple(
        spec.name
        for spec in dataclasses.fields(kind)
        if spec.name not in ("ssl_enabled", "warnings")
    )


#: TLS settings a ``logstash-tls`` string may carry, per side
SERVER_SETTINGS = _names(ServerTLSSettings)
CLIENT_SETTINGS = _names(ClientTLSSettings)


# ---------------------------------------------------------------------------- builders


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """Listen on ``endpoint`` with the TLS of ``settings``, dropping peers that do not finish
    the handshake within ``ssl_handshake_timeout``.

    The context is built here, so that a file that does not hold what it should fails before
    anything listens.
    """

    def __init__(self, reactor, endpoint: IStreamServerEndpoint, settings: ServerTLSSettings):
        from twisted_logstash.security.contexts import server_options

        self.settings = settings
        self.endpoint = endpoint
        self._reactor = reactor
        self._creator = server_options(settings)

    def listen(self, protocolFactory):
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from twisted_logstash.security.handshake import HandshakeTimeoutFactory

        timed = HandshakeTimeoutFactory(
            protocolFactory, self._reactor, self.settings.handshake_timeout
        )
        return self.endpoint.listen(TLSMemoryBIOFactory(self._creator, False, timed))


def server_endpoint(
    reactor,
    host: str,
    port: int,
    settings: ServerTLSSettings,
    backlog: int = DEFAULT_BACKLOG,
) -> IStreamServerEndpoint:
    """Where an input listens: ``host`` (an IPv4 or IPv6 address, empty for every one) and
    ``port``, with TLS when ``settings.ssl_enabled``."""
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

    kind = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
    tcp = kind(reactor, port, backlog, host)
    if not settings.ssl_enabled:
        return tcp
    return TLSServerEndpoint(reactor, tcp, settings)


class ClientEndpoints:
    """Gives each output host its endpoint: TLS verified for that host, or plain TCP.

    The TLS context (trust, identity, protocols, ciphers) is built once, here, so that a
    broken setting fails now; each host gets its own name check (DNS name or IP address).
    """

    def __init__(self, reactor, settings: ClientTLSSettings, timeout: float):
        self.settings = settings
        self.timeout = timeout
        self._reactor = reactor
        self._context = None
        if settings.ssl_enabled:
            from twisted_logstash.security.contexts import client_context

            self._context = client_context(settings)

    def __call__(self, host: Host) -> IStreamClientEndpoint:
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

        tcp = HostnameEndpoint(self._reactor, host.host, host.port, timeout=self.timeout)
        if self._context is None:
            return tcp
        from twisted_logstash.security.contexts import ClientTLS

        return wrapClientTLS(ClientTLS(self._context, host.host, self.settings.verify), tcp)


def client_endpoint_factory(
    reactor, settings: ClientTLSSettings, timeout: float = DEFAULT_CONNECT_TIMEOUT
) -> ClientEndpoints:
    """A callable giving each output host (a ``Host``) its endpoint (see ``ClientEndpoints``)."""
    return ClientEndpoints(reactor, settings, timeout)


# ---------------------------------------------------------------------------- strings


def escape(value: object) -> str:
    """Escape a value for an endpoint string (backslash, colon and equal sign)."""
    text = str(value)
    for char in ("\\", ":", "="):
        text = text.replace(char, "\\" + char)
    return text


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


def _endpoint_string(
    settings: Mapping | ServerTLSSettings | ClientTLSSettings,
    address: str,
    names: tuple[str, ...],
) -> str:
    """``tcp:ADDRESS`` when SSL is off, else ``logstash-tls:ADDRESS`` and the given settings
    among ``names``."""
    from twisted_logstash import config

    if isinstance(settings, ServerTLSSettings | ClientTLSSettings):
        settings = settings.to_settings()
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


def server_endpoint_string(settings: Mapping | ServerTLSSettings, host: str, port: int) -> str:
    """A server endpoint string for an input's settings (``tcp:`` when SSL is off), for
    another program: this one builds its endpoints with ``server_endpoint``."""
    return _endpoint_string(settings, f"port={int(port)}:interface={escape(host)}", SERVER_SETTINGS)


def client_endpoint_string(settings: Mapping | ClientTLSSettings, host: Host) -> str:
    """A client endpoint string for one output host (``tcp:`` when SSL is off), for another
    program: this one builds its endpoints with ``client_endpoint_factory``."""
    address = f"host={escape(host.host)}:port={int(host.port)}"
    return _endpoint_string(settings, address, CLIENT_SETTINGS)


def _settings(kwargs: dict, allowed: tuple[str, ...], side: str) -> dict:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigurationError(
            f"{PREFIX} {side} endpoint: unknown parameter(s) {', '.join(unknown)}"
        )
    return {name: split_list(value) if name in LISTS else value for name, value in kwargs.items()}


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
        if args:
            kwargs.setdefault("port", args[0])
        port = _number("server", "port", kwargs.pop("port", "9800"))
        interface = kwargs.pop("interface", "")
        backlog = _number("server", "backlog", kwargs.pop("backlog", str(DEFAULT_BACKLOG)))
        settings = ServerTLSSettings.from_settings(_settings(kwargs, SERVER_SETTINGS, "server"))
        return server_endpoint(reactor, interface, port, settings, backlog)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class LogstashTLSClientParser:
    """``logstash-tls:host=H:port=P[:timeout=S][:ssl_...=...]`` for connecting, verified."""

    prefix = PREFIX

    def parseStreamClient(self, reactor, *args, **kwargs) -> IStreamClientEndpoint:
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
        settings = ClientTLSSettings.from_settings(_settings(kwargs, CLIENT_SETTINGS, "client"))
        return client_endpoint_factory(reactor, settings, timeout)(Host(host, port))
