"""Basic-auth credentials of the native wire, checked once with Logstash's rules.

A ``Credentials`` record is what an input's factory checks requests against and what an
output's transmitter sends. Its password never shows in a repr (a log line, a traceback).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from twisted_logstash import config


@dataclass(frozen=True)
class Credentials:
    """A username and its password, or neither (no authentication)."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: how they would travel, if unsafely (not part of the credentials' identity)
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def for_input(cls, settings: Mapping) -> Credentials:
        """The input's ``username``/``password``; ``ssl_enabled`` must be resolved already."""
        return cls._checked(settings, config.WARN_INPUT_CREDENTIALS)

    @classmethod
    def for_output(cls, settings: Mapping) -> Credentials:
        """The output's ``username``/``password``; ``ssl_enabled`` must be resolved already."""
        return cls._checked(settings, config.WARN_OUTPUT_CREDENTIALS)

    @classmethod
    def _checked(cls, settings: Mapping, warning: str) -> Credentials:
        warnings = config.check_credentials(settings, warning)
        return cls(settings.get("username"), settings.get("password"), tuple(warnings))
