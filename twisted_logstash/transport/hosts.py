"""The output's `hosts` setting: Logstash's spellings, parsed once, checked early.

Entries are `IPv4`, `IPv4:port`, `hostname`, `hostname:port`, `[IPv6]` or `[IPv6]:port`; IPv6
must be bracketed (otherwise its colons are ambiguous with a port); a URL (`http://h:9800`) is
not a host. A bad entry is a ConfigurationError naming it (and the setting, ``--hosts`` or
``hosts`` as the front end says), raised before anything connects.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import NamedTuple

from twisted_logstash.errors import ConfigurationError

DEFAULT_PORT = 9800

_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
#: `scheme://` as a URL begins (RFC 3986)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class Host(NamedTuple):
    """One receiver: the host as it connects (IPv6 without brackets) and its port."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_hosts(specs: str | Iterable[str], default_port: int = DEFAULT_PORT) -> list[Host]:
    """Parse every entry of every spec (each may be a comma list) into a Host.

    A single string is taken as one spec, so `--hosts a,b` and `["a", "b"]` read alike.
    """
    if isinstance(specs, str):
        specs = [specs]
    hosts = [parse_host(entry, default_port) for spec in specs for entry in spec.split(",")]
    if not hosts:
        raise ConfigurationError.about("{hosts}: at least one host is required")
    return hosts


def parse_host(entry: str, default_port: int = DEFAULT_PORT) -> Host:
    """Parse one entry; raise ConfigurationError naming it when it is not usable."""
    text = entry.strip()
    if not text:
        raise ConfigurationError.about("{hosts}: empty entry (check for a stray comma)")
    scheme = _SCHEME.match(text)
    if scheme:
        address = text[scheme.end() :].split("/", 1)[0] or "host:port"
        raise ConfigurationError.about(
            "{hosts} {text!r}: no scheme: use host or host:port (here {address})",
            text=text,
            address=address,
        )
    if text.startswith("["):
        host, rest = _split_bracketed(text)
    elif text.count(":") > 1:
        raise ConfigurationError.about(
            "{hosts} {text!r}: an IPv6 address must be in brackets, e.g. [{bare}] or [{bare}]:9800",
            text=text,
            bare=text,
        )
    else:
        host, sep, port = text.partition(":")
        rest = sep + port
        if not _HOSTNAME.match(host):
            raise ConfigurationError.about(
                "{hosts} {text!r}: {host!r} is not a valid IPv4 or hostname", text=text, host=host
            )
    return Host(host, _parse_port(text, rest, default_port))


def _split_bracketed(text: str) -> tuple[str, str]:
    """Split `[v6]` or `[v6]:port` into the bare address and the `:port` rest."""
    close = text.find("]")
    if close < 0:
        raise ConfigurationError.about(
            "{hosts} {text!r}: missing ']' after the IPv6 address", text=text
        )
    host = text[1:close]
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise ConfigurationError.about(
            "{hosts} {text!r}: {host!r} is not a valid IPv6 address", text=text, host=host
        ) from None
    return host, text[close + 1 :]


def _parse_port(text: str, rest: str, default_port: int) -> int:
    """`""` gives the default port; `":N"` gives N when 1 <= N <= 65535."""
    if not rest:
        return default_port
    if not rest.startswith(":"):
        raise ConfigurationError.about(
            "{hosts} {text!r}: unexpected {rest!r} after the address", text=text, rest=rest
        )
    port = rest[1:]
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigurationError.about(
            "{hosts} {text!r}: port {port!r} is not a number from 1 to 65535", text=text, port=port
        )
    return int(port)
