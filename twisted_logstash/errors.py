"""Errors the project raises, one family per kind of trouble, and the sentences they say.

A configuration message is about settings, and the user reads it under the name they typed:
``--ssl-key`` on a program's command line, ``ssl_key`` in a pipeline file or a library call.
A rule therefore words its message once, as a ``Message`` template whose ``{placeholders}`` are
setting names (``"{ssl_key} is required when {ssl_certificate} is given"``, or
``{ssl_enabled:false}`` for a setting with a value), and the front end renders it: ``FLAG``
style for the programs (``--ssl-key``, ``--ssl-enabled false``), ``SETTING`` style for
pipelines and the library (`` `ssl_key` ``, `` `ssl_enabled => false` ``). Both programs and
both ways in thus say one sentence per rule.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

#: how a message names settings: as a program's flags, or as pipeline/library settings
FLAG = "flag"
SETTING = "setting"

_FLAG_WORD = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")


def named(name: str) -> str:
    """The placeholder for setting ``name`` in a Message template (for names known at run
    time): ``{ssl_key}``."""
    return "{" + name + "}"


def flag_name(name: str) -> str:
    """``ssl_key`` as typed on a command line: ``--ssl-key``."""
    return "--" + name.replace("_", "-")


class _Setting:
    """One placeholder while a template is formatted: renders itself in the chosen style."""

    def __init__(self, name: str, style: str, rename: Mapping[str, str]):
        self.name = rename.get(name, name)
        self.style = style

    def __format__(self, value: str) -> str:
        if self.style == FLAG:
            return flag_name(self.name) + (f" {value}" if value else "")
        if value:
            return f"`{self.name} => {value}`"
        return f"`{self.name}`"


class Message(str):
    """A user-facing sentence about settings, worded once.

    ``template`` names settings as ``{name}`` (or ``{name:value}``: the setting with a value);
    ``values`` fill the other placeholders (user input may hold braces: it is never parsed as
    a template). The string itself is the ``SETTING`` rendering, so a Message is used wherever
    a plain message was (compared, logged, joined); ``render(FLAG)`` gives the programs' words.
    """

    template: str
    values: dict[str, Any]
    settings: tuple[str, ...]

    def __new__(cls, template: str, /, **values: Any) -> Message:
        names: list[str] = []
        for _, field, _, _ in string.Formatter().parse(template):
            if field and field not in values and field not in names:
                names.append(field)
        self = super().__new__(cls, _format(template, names, values, SETTING, {}))
        self.template = template
        self.values = values
        self.settings = tuple(names)
        return self

    def __getnewargs_ex__(self):
        """Copied or pickled, a Message stays a template (not its rendered text)."""
        return (self.template,), self.values

    def render(self, style: str = SETTING, rename: Mapping[str, str] | None = None) -> str:
        """The sentence with its settings named in ``style``; ``rename`` maps a setting to the
        name a front end knows it by (a pipeline plugin calling a CA ``ssl_certificate``)."""
        return _format(self.template, self.settings, self.values, style, rename or {})


def _format(template, names, values, style, rename) -> str:
    fields = {name: _Setting(name, style, rename) for name in names}
    # a value that is itself a Message (a reason given with the rule) speaks the same style
    values = {
        key: value.render(style, rename) if isinstance(value, Message) else value
        for key, value in values.items()
    }
    return template.format(**fields, **values)


def render(message: str, style: str = SETTING, rename: Mapping[str, str] | None = None) -> str:
    """Any message in ``style``: a Message rendered; a plain one as written, but in
    ``SETTING`` style its ``--flag`` words become `` `flag` `` settings."""
    if isinstance(message, Message):
        return message.render(style, rename)
    text = str(message)
    if style == SETTING:
        rename = rename or {}

        def setting(match: re.Match) -> str:
            name = match.group(1).replace("-", "_")
            return f"`{rename.get(name, name)}`"

        text = _FLAG_WORD.sub(setting, text)
    return text


class ConfigurationError(ValueError):
    """A setting, or a combination of settings, that cannot work.

    Raised before anything binds; the message is shown to the user as is. Raised with a
    ``Message`` (``ConfigurationError.about(template, **values)``), it knows the settings it is
    about (``settings``) and renders them as flags or as settings (``render``); ``str()`` is
    the ``style`` it was given (None: the message as written, a Message in setting style).
    """

    #: the style ``str()`` renders in; None: as written
    style: str | None = None

    def __init__(self, message: str = "", /):
        super().__init__(message)
        self.message = message

    @classmethod
    def about(cls, template: str, /, **values: Any) -> ConfigurationError:
        """The error for a message about settings (see ``Message``)."""
        return cls(Message(template, **values))

    @property
    def settings(self) -> tuple[str, ...]:
        """The setting names the message is about, in the order it names them."""
        return getattr(self.message, "settings", ())

    def render(self, style: str = SETTING, rename: Mapping[str, str] | None = None) -> str:
        return render(self.message, style, rename)

    def __str__(self) -> str:
        if self.style is None:
            return str(self.message)
        return self.render(self.style)


class CodecError(ValueError):
    """Bytes that a codec cannot decode."""


class DecompressionError(CodecError):
    """A body or frame that does not decompress."""


class TooLargeError(CodecError):
    """Input (or its inflated form) over a configured limit."""


class SinkUnavailable(Exception):
    """A sink that cannot take events now but may later (a relay whose output is stopping).

    The receiver asks the sender to retry without counting it as a fault: ``503`` on the native
    wire (any other sink failure is a ``500``), no ACK and a close on the framed wire.
    """


class DeliveryError(Exception):
    """One attempt to deliver a batch to one host failed.

    ``reason`` is the whole of it: what went wrong and, when the attempt could tell, what is
    probably wrong, with the flags to change (a hint of ``transport/diagnosis.py``, logged once
    per host and cause). ``short_reason`` is what went wrong alone (the reason without that
    hint): what a line logged at every retry says."""

    def __init__(self, reason: str, host=None, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.short_reason = reason
        self.host = host
        self.status = status


def short_reason(error: BaseException) -> str:
    """Why an attempt failed, in a line said at every retry: a `DeliveryError`'s
    ``short_reason``, else the error's text."""
    if isinstance(error, DeliveryError):
        return error.short_reason
    return str(error)


class RetriableError(DeliveryError):
    """The batch may succeed later or elsewhere (429, 5xx, network)."""


class TerminalError(DeliveryError):
    """The receiver refused the batch for good (400, 401, 413, ...)."""


class DeadLettered(Exception):
    """Events were not delivered: they were written to the dead-letter file."""
