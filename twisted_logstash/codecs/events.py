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

:class:`Enrichment` is what an input records about the sender of each event in ``@metadata``,
as Logstash's beats input does (``enrich``, ``ecs_compatibility``; logstash-input-beats
``beats.rb`` and ``message_listener.rb``): the peer's IP address (``source_metadata``) and
what TLS says about the peer (``ssl_peer_metadata``), under these names
(``ecs_compatibility => disabled``, then the ECS ones):

- the peer's IP address: ``[@metadata][ip_address]``; ECS ``v1``/``v8``:
  ``[@metadata][input][beats][host][ip]``;
- ``verified`` or ``unverified``: ``[@metadata][tls_peer][status]`` (both);
- the TLS version: ``[@metadata][tls_peer][protocol]``; ECS:
  ``[@metadata][input][beats][tls][version_protocol]``;
- the client certificate's subject: ``[@metadata][tls_peer][subject]``; ECS:
  ``[@metadata][input][beats][tls][client][subject]``;
- the cipher suite: ``[@metadata][tls_peer][cipher_suite]``; ECS:
  ``[@metadata][input][beats][tls][cipher]``.

The status is ``verified`` or ``unverified``; the three after it only when ``verified``. On the
native wire (whose Logstash input records nothing) the same names are used with ``logstash`` in
place of ``beats``. The values are the connection's, worked out once per connection
(:meth:`Enrichment.applier`); each event gets its own ``@metadata`` dicts, built from one
template by a function made for it, so that an event may be changed downstream alone. An event
that arrives with ``@metadata`` (Beats send ``beat``, ``type``, ``version`` in it) keeps it,
and the fields are set into it, as Logstash's ``set_nested`` does (``tls_peer`` replaced).
"""

from __future__ import annotations

import datetime
import functools
import gc
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
    "ECS_MODES",
    "ENRICHMENTS",
    "METADATA",
    "Decorations",
    "Enrichment",
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


#: the categories of ``enrich`` (logstash-input-beats ``ENRICH_DEFAULTS``), and its aliases
ENRICHMENTS = ("source_metadata", "codec_metadata", "ssl_peer_metadata")
ENRICH_ALIASES = ("none", "all")
#: what ``enrich`` is when not given, per wire: the beats input's ``[codec_metadata,
#: source_metadata]``; Logstash's ``logstash`` input records nothing about its sender
DEFAULT_ENRICH = {
    "lumberjack": ("codec_metadata", "source_metadata"),
    "http": (),
}
#: ``ecs_compatibility`` values (the beats input takes ``v8`` as ``v1``); Logstash 8 runs every
#: plugin in ``v8`` unless told otherwise (``pipeline.ecs_compatibility``)
ECS_MODES = ("disabled", "v1", "v8")
DEFAULT_ECS = "v8"


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


def resolve_enrich(values: list[str] | tuple[str, ...] | None, protocol: str) -> frozenset[str]:
    """``enrich`` as the categories it turns on, as the beats input's ``resolve_enriches``
    (None: not given, the wire's default); ValueError in Logstash's words."""
    if values is None:
        return frozenset(DEFAULT_ENRICH[protocol])
    values = list(values)
    for value in values:
        if value not in ENRICHMENTS and value not in ENRICH_ALIASES:
            raise ValueError(
                f"`enrich`: {value!r} is not one of {', '.join((*ENRICHMENTS, *ENRICH_ALIASES))}"
            )
    aliases = [value for value in ENRICH_ALIASES if value in values]
    if aliases and len(values) > 1:
        shown = ", ".join(f'"{value}"' for value in values)  # as Ruby's Array#inspect
        raise ValueError(
            "when an alias is provided to `enrich`, it must be the only value given (got: "
            f"[{shown}], including {'aliases' if len(aliases) > 1 else 'alias'} "
            f"{','.join(aliases)})"
        )
    if "all" in aliases:
        return frozenset(ENRICHMENTS)
    if "none" in aliases:
        return frozenset()
    return frozenset(values)


@dataclass(frozen=True)
class Enrichment:
    """What an input records about each event's sender in ``@metadata`` (see the module's
    table): ``source_metadata`` the peer's IP address, ``ssl_peer_metadata`` its TLS status
    and identity (an input sets it only where Logstash records it: TLS on, and client
    certificates asked for, ``ssl_client_authentication`` optional or required), named as
    ``ecs_compatibility`` says, under ``[@metadata][input][<plugin>]`` for the ECS names."""

    source_metadata: bool = False
    ssl_peer_metadata: bool = False
    ecs_compatibility: str = DEFAULT_ECS
    plugin: str = "beats"

    def __post_init__(self) -> None:
        if self.ecs_compatibility not in ECS_MODES:
            raise ValueError(
                f"`ecs_compatibility` must be one of {', '.join(ECS_MODES)}, "
                f"not {self.ecs_compatibility!r}"
            )

    def __bool__(self) -> bool:
        return self.source_metadata or self.ssl_peer_metadata

    def template(self, ip: str | None, tls) -> dict:
        """The ``@metadata`` one connection's events get, from its peer's IP address and its
        ``security.failures.TLSPeer`` (None: not TLS), in the order Logstash sets them."""
        metadata: dict = {}
        ecs = self.ecs_compatibility != "disabled"
        mine = ("input", self.plugin)
        if self.source_metadata and ip is not None:
            _set(metadata, (*mine, "host", "ip") if ecs else ("ip_address",), ip)
        if self.ssl_peer_metadata and tls is not None:
            if not tls.verified:
                metadata["tls_peer"] = {"status": "unverified"}
            else:
                metadata["tls_peer"] = {"status": "verified"}
                for path, value in (
                    (
                        (*mine, "tls", "version_protocol") if ecs else ("tls_peer", "protocol"),
                        tls.protocol,
                    ),
                    (
                        (*mine, "tls", "client", "subject") if ecs else ("tls_peer", "subject"),
                        tls.subject,
                    ),
                    ((*mine, "tls", "cipher") if ecs else ("tls_peer", "cipher_suite"), tls.cipher),
                ):
                    if value is not None:
                        _set(metadata, path, value)
        return metadata

    def applier(self, ip: str | None, tls) -> Callable[[list[dict]], None] | None:
        """What adds one connection's ``@metadata`` to each event of a batch (in place); None
        when there is nothing to add (no IP address, no TLS peer to describe)."""
        template = self.template(ip, tls)
        if not template:
            return None
        return _compiled(template)


def _set(into: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        into = into.setdefault(key, {})
    into[path[-1]] = value


def _merge(into: dict, fresh: dict, top: bool = False) -> None:
    """``fresh`` set into an event's own ``@metadata``: objects merged (Logstash's
    ``set_nested``), ``tls_peer`` replaced as a whole (``meta_data['tls_peer'] = {...}``)."""
    for key, value in fresh.items():
        have = into.get(key)
        if type(value) is dict and type(have) is dict and not (top and key == "tls_peer"):
            _merge(have, value)
        else:
            into[key] = value


@functools.lru_cache(maxsize=64)
def _outer(source: str) -> Callable[..., Callable[[list[dict]], None]]:
    """The compiled maker of appliers of one shape of template: the shapes are few (the names
    are fixed, the values are arguments), so each is compiled once per process, not once per
    connection (about 90 µs)."""
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    return namespace["outer"]


def _compiled(template: dict) -> Callable[[list[dict]], None]:
    """The applier of one connection's ``template`` (nested dicts of strings), compiled once per
    connection: each event's ``@metadata`` is written as dict displays in the loop itself, so
    that each event owns its dicts at the cost of building them (a generic deep copy, or even a
    function call per event, costs several times more). An event's own ``@metadata`` gets each
    top-level field set into it (an object merged, ``tls_peer`` replaced).

    The keys are this module's names (``repr`` of a str), the values closure variables: nothing
    of the peer's (a certificate subject) is ever part of the compiled source."""
    values: list[Any] = []

    def display(node: Any) -> str:
        if type(node) is not dict:
            values.append(node)
            return f"_{len(values) - 1}"
        return "{" + ", ".join(f"{key!r}: {display(value)}" for key, value in node.items()) + "}"

    fresh = display(template)
    into = []  # the statements that set the template into an event's own @metadata
    for key, value in template.items():
        if type(value) is dict and key != "tls_peer":
            into += [
                f"                have = metadata.get({key!r})",
                "                if type(have) is dict:",
                f"                    _merge(have, {display(value)})",
                "                else:",
                f"                    metadata[{key!r}] = {display(value)}",
            ]
        else:
            into.append(f"                metadata[{key!r}] = {display(value)}")
    names = "".join(f"_{index}, " for index in range(len(values)))
    source = "\n".join(
        [
            f"def outer({names}_merge):",
            "    def enrich(events):",
            "        for event in events:",
            "            metadata = event.get('@metadata')",
            "            if metadata is None:",
            f"                event['@metadata'] = {fresh}",
            "            elif type(metadata) is dict:",
            *into,
            "            else:  # not an object: Logstash's @metadata always is one",
            f"                event['@metadata'] = {fresh}",
            "    return enrich",
        ]
    )
    inner = _outer(source)(*values, _merge)

    def enrich(events: list[dict], _inner=inner) -> None:
        # the collector is held off while a batch gets its dicts: otherwise it walks them again
        # and again as they pile up (every 700 allocations), for dicts that all live as long
        # as their batch; it runs once, after, if it is due
        if gc.isenabled():
            gc.disable()
            try:
                _inner(events)
            finally:
                gc.enable()
        else:
            _inner(events)

    return enrich
