"""What a Logstash input does to every event it receives, before it reaches the pipeline.

:func:`prepare` stamps an event that lacks ``@timestamp`` with the time of receipt and gives
one that lacks ``@version`` the value ``"1"``, as Logstash's ``Event`` constructor does (a
``null`` ``@timestamp`` counts as missing there too; a present one is kept as it is). Then the
input's decorations are applied in the order of ``LogStash::Inputs::Base#decorate``:

1. ``type`` is set only if the event has no ``type`` key at all.
2. ``add_field`` pairs, in order (``LogStash::Util::Decorators.add_fields``): an absent field
   is set to the value; a present one becomes a list of what it held followed by the value
   (``Array(old) << value``: a list is extended, ``null`` gives ``[value]``, an object gives
   its ``[key, value]`` pairs, as Ruby's ``Array()`` does). Two pairs with one name thus give
   that field both values, as a Logstash hash value that is an array does.
3. ``tags`` are appended (``Decorators.add_tags``: ``tags << tag``), keeping duplicates as
   Logstash does; it does not use ``event.tag``. Where Logstash would concatenate a string
   ``tags`` value (Ruby's ``String#<<``), we make it a one-element list first.

Field names may be Logstash field references (``[host][name]``) to reach nested objects.
Names, values and tags are ``sprintf`` templates as in Logstash: ``%{field}`` or
``%{[a][b]}`` is replaced by the field's value (a list joined with ``,``, an object as JSON,
a missing or ``null`` field left as written), ``%{+%s}`` by ``@timestamp`` in epoch seconds.
Date patterns (``%{+YYYY.MM.dd}``, ``%{{yyyy}}``) are not supported and stay as written.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import repeat
from operator import is_
from typing import Any

from twisted.internet.interfaces import IReactorTime

from twisted_logstash.codecs import jsonpolicy
from twisted_logstash.pipeline.deadletter import iso_time

__all__ = [
    "METADATA",
    "Decorations",
    "field_path",
    "prepare",
    "sprintf",
    "timestamp_now",
    "without_metadata",
]

#: the field Logstash keeps with an event inside a pipeline and never writes or sends
METADATA = "@metadata"

_REFERENCE = re.compile(r"(?:\[[^\[\]]+\])+")
_TEMPLATE = re.compile(r"%\{([^}]*)\}")


def timestamp_now(reactor: IReactorTime) -> str:
    """The reactor's time as Logstash writes ``@timestamp``: ``2026-11-23T10:00:00.123Z``."""
    return iso_time(reactor.seconds())


@dataclass(frozen=True)
class Decorations:
    """An input's ``type``, ``tags`` and ``add_field`` settings, applied to every event.

    Lists and a mapping are accepted too and stored as tuples, so that the settings can come
    straight from a configuration file; a lone string ``tags`` is one tag.
    """

    type: str | None = None
    tags: tuple[str, ...] = ()
    add_field: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        tags = (self.tags,) if isinstance(self.tags, str) else tuple(self.tags)
        fields = self.add_field
        pairs = tuple(fields.items()) if isinstance(fields, Mapping) else tuple(fields)
        pairs = tuple((name, value) for name, value in pairs)
        if self.type is not None and not isinstance(self.type, str):
            raise TypeError(f"type must be a string, not {self.type!r}")
        for text in (*tags, *(part for pair in pairs for part in pair)):
            if not isinstance(text, str):
                raise TypeError(f"tags and add_field must hold strings, not {text!r}")
        object.__setattr__(self, "tags", tags)
        object.__setattr__(self, "add_field", pairs)

    def __bool__(self) -> bool:
        return self.type is not None or bool(self.tags) or bool(self.add_field)


def prepare(
    events: list[dict],
    timestamp: str | Callable[[], str],
    decorations: Decorations | None = None,
) -> list[dict]:
    """Stamp and decorate ``events`` in place, Logstash's way; return the same list.

    ``timestamp`` is the time of receipt, or a function that gives it: called only when an
    event lacks ``@timestamp``. Events that all carry both fields (the usual batch from another
    Logstash) are checked by two passes in C and not touched."""
    if not _stamped(events):
        for event in events:
            if event.get("@timestamp") is None:
                if not isinstance(timestamp, str):
                    timestamp = timestamp()
                event["@timestamp"] = timestamp
            if "@version" not in event:
                event["@version"] = "1"
    if decorations:
        for event in events:
            _decorate(event, decorations)
    return events


def _stamped(events: list[dict], _get=dict.get, _has=dict.__contains__) -> bool:
    """Whether every event holds a ``@timestamp`` that is not None and a ``@version`` (what
    they store: a subclass's own ``get`` is not asked)."""
    try:
        stamps = map(_get, events, repeat("@timestamp"))
        return not any(map(is_, stamps, repeat(None))) and all(
            map(_has, events, repeat("@version"))
        )
    except TypeError:  # a mapping that is not a dict: the loop asks it
        return False


def _decorate(event: dict, decorations: Decorations) -> None:
    if decorations.type is not None and "type" not in event:
        event["type"] = decorations.type
    for name, value in decorations.add_field:
        _add_field(event, sprintf(event, name), sprintf(event, value))
    for tag in decorations.tags:
        tag = sprintf(event, tag)
        tags = event.get("tags")
        if tags is None:
            event["tags"] = [tag]
        elif isinstance(tags, list):
            event["tags"] = [*tags, tag]  # a new list: the old one may be shared
        else:
            event["tags"] = [tags, tag]


def _add_field(event: dict, name: str, value: str) -> None:
    path = field_path(name)
    parent = event
    for key in path[:-1]:
        child = parent.get(key)
        if child is None:
            child = parent[key] = {}
        elif not isinstance(child, dict):
            # Logstash cannot set a field inside a scalar either; the event stays as it was.
            return
        parent = child
    key = path[-1]
    if key not in parent:
        parent[key] = value
    else:
        parent[key] = [*_ruby_array(parent[key]), value]


def _ruby_array(value: Any) -> list:
    """Ruby's ``Array(value)``."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [[key, item] for key, item in value.items()]
    return [value]


def field_path(name: str) -> tuple[str, ...]:
    """The keys a field name leads through: ``[a][b]`` -> ``("a", "b")``, ``a`` -> ``("a",)``."""
    if name.startswith("[") and _REFERENCE.fullmatch(name):
        return tuple(name[1:-1].split("]["))
    return (name,)


def _get(event: dict, name: str) -> Any:
    value: Any = event
    for key in field_path(name):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def sprintf(event: dict, template: str) -> str:
    """``template`` with ``%{field}`` references replaced from ``event``, as Logstash does."""
    if "%{" not in template:
        return template
    return _TEMPLATE.sub(lambda match: _reference(event, match), template)


def _reference(event: dict, match: re.Match) -> str:
    name = match.group(1)
    if name == "+%s":
        return _epoch_seconds(event.get("@timestamp"))
    if name.startswith(("+", "{")):
        return match.group(0)
    value = _get(event, name)
    if value is None:
        return match.group(0)
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return jsonpolicy.dumps(value).decode()
    return str(value)


def _epoch_seconds(stamp: Any) -> str:
    if not isinstance(stamp, str):
        return ""
    try:
        moment = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return str(int(moment.timestamp()))


def without_metadata(events: list[dict]) -> list[dict]:
    """``events`` as they leave the process: without ``@metadata``, which Logstash never writes
    (its codecs skip it) nor sends on either wire. ``events`` itself when no event has it (the
    common case: one look per event); else a new list, with a shallow copy of each event that
    has it, so that the caller's events keep theirs."""
    for event in events:
        if METADATA in event:
            break
    else:
        return events
    return [
        {key: value for key, value in event.items() if key != METADATA}
        if METADATA in event
        else event
        for event in events
    ]
