"""The TLS settings of an input (server) and of an output (client), parsed once.

``ServerTLSSettings`` and ``ClientTLSSettings`` are frozen records whose fields are Logstash's
setting names. ``from_settings`` is the one way from a mapping of those names (flags, an
endpoint string, a library call) to a record: it applies every default, here and nowhere else
(the field defaults), and runs Logstash's rules (``config.check_input_tls`` /
``check_output_tls``), raising ConfigurationError worded once for both sides. Contexts
(``contexts.py``) and endpoints (``endpoints.py``) are then built from the record alone.
Passphrases and passwords stay out of a record's repr.

Files are checked to be readable here; what they hold (a key that does not match its
certificate, a wrong passphrase) is found when the context is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted_logstash import config

DEFAULT_PROTOCOLS = ("TLSv1.2", "TLSv1.3")
DEFAULT_HANDSHAKE_TIMEOUT_MS = 10000

#: settings holding a list (a single string is taken as a list of one, as Logstash does)
LISTS = ("ssl_certificate_authorities", "ssl_supported_protocols", "ssl_cipher_suites")
#: settings naming one of a few choices: empty text means "not given", like None
CHOICES = ("ssl_client_authentication", "ssl_verification_mode")

_Settings = TypeVar("_Settings", bound="_FromSettings")


class _FromSettings:
    """``from_settings`` and ``to_settings``, shared by both sides.

    Building a record directly (``ServerTLSSettings(ssl_certificate=...)``) checks nothing;
    that is for tests of what the contexts themselves refuse.
    """

    @staticmethod
    def _rules(values: Mapping[str, Any], explicit: Set[str]) -> list[str]:
        raise NotImplementedError

    @classmethod
    def from_settings(
        cls: type[_Settings],
        settings: Mapping[str, Any],
        explicit: Set[str] | None = None,
        *,
        ssl_enabled_default: bool = config.SSL_ENABLED,
    ) -> _Settings:
        """The record for a mapping of Logstash names, defaults applied and rules checked.

        ``explicit`` names the settings the user gave (None: every name the mapping holds a
        value for); ``ssl_enabled_default`` is what an absent ``ssl_enabled`` means (Logstash's
        true; the framed wire's programs say false). Names of the other side or of other
        settings (``username``, ``port``) are ignored.
        """
        if explicit is None:
            explicit = {name for name in settings if config.is_given(settings, name)}
        values = {
            spec.name: _value(spec, settings.get(spec.name))
            for spec in dataclasses.fields(cls)
            if spec.name != "warnings"
        }
        values["ssl_enabled"] = config.ssl_on(settings, ssl_enabled_default)
        warnings = cls._rules(values, explicit)
        for name in LISTS:
            if name in values:
                values[name] = tuple(values[name])
        if "ssl_handshake_timeout" in values:
            values["ssl_handshake_timeout"] = _milliseconds(values["ssl_handshake_timeout"])
        return cls(**values, warnings=tuple(warnings))

    def to_settings(self) -> dict[str, Any]:
        """The record as a dict of Logstash names (lists as lists), for ``from_settings``."""
        return {
            spec.name: list(value) if isinstance(value, tuple) else value
            for spec in dataclasses.fields(self)
            if spec.name != "warnings"
            for value in [getattr(self, spec.name)]
        }


def _value(spec: dataclasses.Field, given: Any) -> Any:
    """``given``, or the field's default when nothing was given."""
    if spec.name in LISTS and isinstance(given, str):
        given = [given]
    if given is None or given == [] or given == () or (given == "" and spec.name in CHOICES):
        return spec.default
    return given


def _milliseconds(value: Any) -> int:
    """A checked ``ssl_handshake_timeout``; with TLS off it was not checked, and is unused."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return DEFAULT_HANDSHAKE_TIMEOUT_MS


@dataclass(frozen=True)
class ServerTLSSettings(_FromSettings):
    """An input's TLS: its identity, whether and how it verifies clients, the handshake
    deadline and the protocol versions and cipher suites it accepts."""

    ssl_enabled: bool = config.SSL_ENABLED
    ssl_certificate: str | None = None
    ssl_key: str | None = None
    ssl_key_passphrase: str | None = field(default=None, repr=False)
    ssl_keystore_path: str | None = None
    ssl_keystore_password: str | None = field(default=None, repr=False)
    ssl_client_authentication: str = "none"
    ssl_certificate_authorities: tuple[str, ...] = ()
    #: milliseconds, as Logstash counts them
    ssl_handshake_timeout: int = DEFAULT_HANDSHAKE_TIMEOUT_MS
    ssl_supported_protocols: tuple[str, ...] = DEFAULT_PROTOCOLS
    ssl_cipher_suites: tuple[str, ...] = ()
    #: settings that work but are unsafe (not part of the settings' identity)
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    _rules = staticmethod(config.check_input_tls)

    @property
    def handshake_timeout(self) -> float:
        """``ssl_handshake_timeout`` in seconds."""
        return self.ssl_handshake_timeout / 1000.0


@dataclass(frozen=True)
class ClientTLSSettings(_FromSettings):
    """An output's TLS: whom it trusts, whether it verifies the server, its own identity for
    mutual TLS, and the protocol versions and cipher suites it offers."""

    ssl_enabled: bool = config.SSL_ENABLED
    ssl_certificate: str | None = None
    ssl_key: str | None = None
    ssl_key_passphrase: str | None = field(default=None, repr=False)
    ssl_keystore_path: str | None = None
    ssl_keystore_password: str | None = field(default=None, repr=False)
    ssl_certificate_authorities: tuple[str, ...] = ()
    ssl_truststore_path: str | None = None
    ssl_truststore_password: str | None = field(default=None, repr=False)
    ssl_verification_mode: str = "full"
    ssl_supported_protocols: tuple[str, ...] = DEFAULT_PROTOCOLS
    ssl_cipher_suites: tuple[str, ...] = ()
    #: settings that work but are unsafe (not part of the settings' identity)
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    _rules = staticmethod(config.check_output_tls)

    @property
    def verify(self) -> bool:
        """Whether the server's certificate is verified (chain and name)."""
        return self.ssl_verification_mode == "full"
