"""The plugins a pipeline may name, and each one's settings with Logstash's names, types and
defaults: the registry ``check`` validates a parsed plugin against.

Types follow Logstash's ``config :name, :validate => ...`` rules (logstash-core
``LogStash::Config::Mixin``), with its messages: a ``number`` is a number or a string that reads
as one (so ``port => "${PORT:9800}"`` works), a ``boolean`` is ``true``/``false`` bare or quoted,
an ``array`` takes a single value as a list of one, a ``hash`` must be a hash, a ``string`` takes
a number as its text. ``${VAR}`` and ``${VAR:default}`` are replaced from the environment in
every string of a value (in arrays and hashes too), as Logstash does, before the type is checked.

This module checks what a setting is on its own (type, choice, required). What settings mean
together (TLS identity and trust, credentials, queue kinds) is checked once, by the programs'
own code (``config.py``, ``tap/``) which ``build.py`` hands the values to: one rule, one place.

Settings marked ``project=True`` are this project's (the programs' flags of the same name),
not Logstash's; Logstash has no queue or dead-letter settings on its outputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted_logstash.pipelines.syntax import PipelineError, Plugin, Value

__all__ = ["INPUTS", "OUTPUTS", "Checked", "PluginSpec", "SettingSpec", "check", "substitute"]

_REFERENCE = re.compile(r"\$\{(?P<name>[a-zA-Z_.][a-zA-Z0-9_.]*)(?::(?P<default>[^}]*))?\}")


@dataclass(frozen=True)
class SettingSpec:
    """One setting: its Logstash name and type, its default (None: none), the choices of a
    ``choice`` or ``codec``, and the program flag it stands for (for the docs)."""

    name: str
    type: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    project: bool = False
    doc: str = ""


@dataclass(frozen=True)
class PluginSpec:
    name: str
    section: str
    settings: Mapping[str, SettingSpec]
    #: settings Logstash's plugin has that are not supported here, and why
    unsupported: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Checked:
    """A plugin whose settings passed their own checks: ``values`` holds every setting, given
    or defaulted, by Logstash name; ``given`` names those the pipeline wrote."""

    plugin: Plugin
    spec: PluginSpec
    values: dict[str, Any]
    given: frozenset[str]
    source: str

    def error(self, message: str, setting: str | None = None) -> PipelineError:
        """A PipelineError at ``setting`` (when written) or at the plugin."""
        node = self.plugin.setting(setting) if setting else None
        where = node if node is not None else self.plugin
        return PipelineError(self.source, where.line, where.column, message)

    def where(self) -> str:
        return f"{self.plugin.name} {self.spec.section}"


def _s(name, type_, default=None, **kw) -> SettingSpec:
    return SettingSpec(name, type_, default, **kw)


def _table(*specs: SettingSpec) -> dict[str, SettingSpec]:
    return {spec.name: spec for spec in specs}


_COMMON = (
    _s("id", "string", doc="the plugin's id (kept for Logstash's syntax; unused here)"),
    _s("enable_metric", "boolean", True, doc="accepted for Logstash's syntax; unused here"),
)
_DECORATIONS = (
    _s("type", "string", doc="set `type` on events that lack one"),
    _s("tags", "array", [], doc="tags added to every event"),
    _s("add_field", "hash", {}, doc="fields added to every event"),
)
_SERVER_TLS = (
    _s("ssl_certificate", "path"),
    _s("ssl_key", "path"),
    _s("ssl_key_passphrase", "password"),
    _s("ssl_certificate_authorities", "array", []),
    _s("ssl_client_authentication", "choice", "none", choices=("none", "optional", "required")),
    _s("ssl_handshake_timeout", "integer", 10000),
    _s("ssl_supported_protocols", "array", []),
    _s("ssl_cipher_suites", "array", []),
)
_KEYSTORE = (
    _s("ssl_keystore_path", "path"),
    _s("ssl_keystore_password", "password"),
)
_CLIENT_TLS = (
    _s("ssl_certificate", "path"),
    _s("ssl_key", "path"),
    _s("ssl_key_passphrase", "password"),
    *_KEYSTORE,
    _s("ssl_certificate_authorities", "array", []),
    _s("ssl_truststore_path", "path"),
    _s("ssl_truststore_password", "password"),
    _s("ssl_verification_mode", "choice", "full", choices=("full", "none")),
    _s("ssl_supported_protocols", "array", []),
    _s("ssl_cipher_suites", "array", []),
)
_INPUT_LIMITS = (
    _s("max_connections", "integer", 1000, project=True),
    _s("max_held_bytes", "integer", 268435456, project=True),
)
_HTTP_LIMITS = (
    _s("max_pending_requests", "integer", 200, project=True),
    _s("max_content_length", "integer", 104857600, project=True),
    _s("sink_timeout", "integer", 10, project=True),
    _s("header_timeout", "integer", 30, project=True),
    _s("body_timeout", "integer", 60, project=True),
    _s("idle_timeout", "integer", 60, project=True),
)
#: this project's settings of the network outputs (the program's flags)
_OUTPUT_PROJECT = (
    _s("batch_size", "integer", 125, project=True),
    _s("batch_max_bytes", "integer", None, project=True),
    _s("batch_delay", "integer", 50, project=True, doc="milliseconds"),
    _s("max_in_flight", "integer", 4, project=True),
    _s("compression_level", "integer", None, project=True),
    _s("queue", "string", "memory", project=True, doc="memory or disk:DIR"),
    _s("queue_max_events", "integer", None, project=True),
    _s("queue_max_bytes", "string", None, project=True),
    _s("queue_retry_timeout", "integer", 300, project=True),
    _s("queue_sync", "choice", "normal", choices=("normal", "full"), project=True),
    _s("dead_letter", "path", "dead-letter.ndjson", project=True),
    _s("cooloff", "integer", 60, project=True),
    _s("timeout", "integer", 60, project=True),
)
#: what an input records about its sender in [@metadata] (codecs/events.py ``Enrichment``):
#: the beats input's own settings; the native wire's Logstash input has none (it records
#: nothing), so there they are this project's, with the beats input's names and values
_ENRICH_CHOICES = ("source_metadata", "codec_metadata", "ssl_peer_metadata", "all", "none")


def _enrich(project: bool, default: str) -> tuple[SettingSpec, ...]:
    return (
        _s(
            "enrich",
            "array",
            None,
            choices=_ENRICH_CHOICES,
            project=project,
            doc=f"what events get in [@metadata] about their sender [{default}]",
        ),
        _s(
            "ecs_compatibility",
            "choice",
            "v8",
            choices=("disabled", "v1", "v8"),
            project=project,
            doc="the names of those [@metadata] fields",
        ),
    )


INPUTS: dict[str, PluginSpec] = {
    "logstash": PluginSpec(
        "logstash",
        "input",
        _table(
            *_COMMON,
            *_DECORATIONS,
            _s("host", "string", "0.0.0.0"),
            _s("port", "integer", 9800),
            _s("ssl_enabled", "boolean", True),
            *_SERVER_TLS,
            *_KEYSTORE,
            _s("username", "string"),
            _s("password", "password"),
            *_enrich(True, "none"),
            *_INPUT_LIMITS,
            *_HTTP_LIMITS,
        ),
    ),
    "beats": PluginSpec(
        "beats",
        "input",
        _table(
            *_COMMON,
            *_DECORATIONS,
            _s("host", "string", "0.0.0.0"),
            _s("port", "integer", required=True),
            _s("ssl_enabled", "boolean", False),
            *_SERVER_TLS,
            _s("client_inactivity_timeout", "integer", 60),
            *_enrich(False, "codec_metadata, source_metadata"),
            _s(
                "ssl_peer_metadata",
                "boolean",
                False,
                doc="deprecated in Logstash (obsolete since beats input 7.0): enrich instead",
            ),
            *_INPUT_LIMITS,
        ),
        unsupported={
            "codec": "the framed wire carries JSON events; codec cannot be changed here",
            "include_codec_tag": "codecs are not supported on the framed wire here",
            "add_hostname": "deprecated in Logstash and not supported here",
            "ssl_verify_mode": "use ssl_client_authentication",
            "executor_threads": "one reactor thread serves every connection here",
            "event_loop_threads": "one reactor thread serves every connection here",
        },
    ),
    "stdin": PluginSpec(
        "stdin",
        "input",
        _table(
            *_COMMON, *_DECORATIONS, _s("codec", "codec", "line", choices=("line", "json_lines"))
        ),
    ),
    "generator": PluginSpec(
        "generator",
        "input",
        _table(
            *_COMMON,
            *_DECORATIONS,
            _s("count", "integer", 0),
            _s("message", "string", "Hello world!"),
            _s("lines", "array"),
            _s("codec", "codec", "plain", choices=("plain", "line", "json_lines", "json")),
        ),
        unsupported={"threads": "the generator runs in the reactor thread here"},
    ),
}

OUTPUTS: dict[str, PluginSpec] = {
    "logstash": PluginSpec(
        "logstash",
        "output",
        _table(
            *_COMMON,
            _s("hosts", "array", required=True),
            _s("ssl_enabled", "boolean", True),
            *_CLIENT_TLS,
            _s("username", "string"),
            _s("password", "password"),
            _s(
                "compression",
                "choice",
                "gzip",
                choices=("gzip", "snappy", "deflate", "none"),
                project=True,
            ),
            *_OUTPUT_PROJECT,
        ),
    ),
    "lumberjack": PluginSpec(
        "lumberjack",
        "output",
        _table(
            *_COMMON,
            _s("hosts", "array", required=True),
            _s("port", "integer", required=True),
            _s("ssl_certificate", "path", required=True, doc="the certificate to trust"),
            _s("flush_size", "integer", 1024),
            _s("idle_flush_time", "integer", 1, doc="seconds"),
            *(spec for spec in _OUTPUT_PROJECT if spec.name not in ("batch_size", "batch_delay")),
        ),
        unsupported={"codec": "events go as JSON on the framed wire; codec cannot be changed here"},
    ),
    "stdout": PluginSpec(
        "stdout",
        "output",
        _table(*_COMMON, _s("codec", "codec", "json_lines", choices=("json_lines",))),
    ),
    "file": PluginSpec(
        "file",
        "output",
        _table(
            *_COMMON,
            _s("path", "string", required=True),
            _s("codec", "codec", "json_lines", choices=("json_lines",)),
        ),
    ),
}


def check(plugin: Plugin, section: str, source: str, environ: Mapping[str, str]) -> Checked:
    """The plugin's values, each of the right type; PipelineError at the first that is not."""
    registry = INPUTS if section == "input" else OUTPUTS
    spec = registry.get(plugin.name)
    if spec is None:
        known = ", ".join(sorted(registry))
        raise PipelineError(
            source,
            plugin.line,
            plugin.column,
            f"Couldn't find any {section} plugin named '{plugin.name}'. Are you sure this is "
            f"correct? (supported here: {known})",
        )
    values: dict[str, Any] = {}
    for setting in plugin.settings:
        setting_spec = spec.settings.get(setting.name)
        if setting_spec is None:
            why = spec.unsupported.get(setting.name)
            message = f"Unknown setting '{setting.name}' for {plugin.name}"
            if why:
                message = f"Setting '{setting.name}' of {plugin.name} is not supported here: {why}"
            raise PipelineError(source, setting.line, setting.column, message)
        value = substitute(setting.value, environ, source)
        try:
            values[setting.name] = convert(setting_spec, value)
        except ValueError as error:
            reason = str(error)
            if setting_spec.type == "password":  # the value is a secret: say what it is, only
                reason = f"Expected string, got {value.kind}"
            raise PipelineError(
                source,
                setting.value.line,
                setting.value.column,
                f"Invalid setting for {plugin.name} {section} plugin: {setting.name}: {reason}",
            ) from None
    for name, setting_spec in spec.settings.items():
        if name in values:
            continue
        if setting_spec.required:
            raise PipelineError(
                source,
                plugin.line,
                plugin.column,
                f"Missing a required setting for the {plugin.name} {section} plugin: {name}",
            )
        default = setting_spec.default
        values[name] = (
            list(default)
            if isinstance(default, list)
            else (dict(default) if isinstance(default, dict) else default)
        )
    given = frozenset(setting.name for setting in plugin.settings)
    return Checked(plugin, spec, values, given, source)


def substitute(value: Value, environ: Mapping[str, str], source: str) -> Value:
    """``value`` with ``${VAR}`` / ``${VAR:default}`` replaced in every string it holds."""
    if value.kind == "string":
        if "${" not in value.value:
            return value

        def replace(match: re.Match) -> str:
            name, default = match.group("name"), match.group("default")
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise PipelineError(
                source,
                value.line,
                value.column,
                f"Cannot evaluate `{match.group(0)}`. Replacement variable `{name}` is not "
                "defined in a Logstash secret store or an environment entry and there is no "
                "default value given.",
            )

        return Value("string", _REFERENCE.sub(replace, value.value), value.line, value.column)
    if value.kind == "array":
        items = [substitute(item, environ, source) for item in value.value]
        return Value("array", items, value.line, value.column)
    if value.kind == "hash":
        entries = [(key, substitute(item, environ, source)) for key, item in value.value]
        return Value("hash", entries, value.line, value.column)
    return value


def convert(spec: SettingSpec, value: Value) -> Any:
    """``value`` as ``spec``'s type; ValueError saying what was expected and what was got."""
    kind = spec.type
    if kind == "array":
        items = value.value if value.kind == "array" else [value]
        texts = [_scalar_text(item) for item in items]
        for item, text in zip(items, texts, strict=True):
            if spec.choices and text not in spec.choices:
                raise ValueError(f"Expected one of {', '.join(spec.choices)}, got {_shown(item)}")
        return texts
    if kind == "hash":
        if value.kind != "hash":
            raise ValueError(f"Expected hash, got {_shown(value)}")
        return {_scalar_text(key): _scalar_text(item) for key, item in value.value}
    if kind == "codec":
        name = value.value.name if value.kind == "plugin" else _text(value, "codec")
        if value.kind == "plugin" and value.value.settings:
            first = value.value.settings[0]
            raise ValueError(f"codec {name} takes no settings here, not {first.name!r}")
        if name not in spec.choices:
            raise ValueError(
                f"codec {name!r} is not supported here; use {' or '.join(spec.choices)}"
            )
        return name
    if value.kind in ("array", "hash", "plugin"):
        if value.kind == "array" and len(value.value) == 1:
            value = value.value[0]  # Logstash takes a one-element list as its element
        else:
            raise ValueError(f"Expected {_expected(kind)}, got {_shown(value)}")
    if kind in ("string", "password", "path"):
        return _text(value, kind)
    if kind == "boolean":
        if value.kind == "boolean":
            return value.value
        if value.kind in ("string", "bareword") and value.value in ("true", "false"):
            return value.value == "true"
        raise ValueError(f"Expected boolean, got {_shown(value)}")
    if kind in ("number", "integer"):
        number = value.value
        if value.kind in ("string", "bareword"):
            try:
                number = float(number) if "." in number else int(number)
            except ValueError:
                raise ValueError(f"Expected number, got {_shown(value)}") from None
        elif value.kind != "number":
            raise ValueError(f"Expected number, got {_shown(value)}")
        if kind == "integer":
            if number != int(number):
                raise ValueError(f"Expected a whole number, got {_shown(value)}")
            number = int(number)
        return number
    if kind == "choice":
        text = _text(value, kind)
        if text not in spec.choices:
            raise ValueError(f"Expected one of {', '.join(spec.choices)}, got {_shown(value)}")
        return text
    raise AssertionError(f"unknown setting type {kind!r}")  # pragma: no cover


def _text(value: Value, kind: str) -> str:
    if value.kind in ("string", "bareword"):
        return value.value
    if value.kind == "boolean":
        return "true" if value.value else "false"
    if value.kind == "number":
        return str(value.value)
    raise ValueError(f"Expected {_expected(kind)}, got {_shown(value)}")


def _scalar_text(value: Value) -> str:
    if value.kind in ("array", "hash", "plugin"):
        raise ValueError(f"Expected a list of strings, got {_shown(value)} in it")
    return _text(value, "string")


def _expected(kind: str) -> str:
    return {"password": "string", "path": "path", "choice": "string", "integer": "number"}.get(
        kind, kind
    )


def _shown(value: Value) -> str:
    if value.kind == "string":
        return f'"{value.value}"'
    if value.kind in ("array", "hash"):
        return f"{value.kind} {_plain(value)}"
    if value.kind == "plugin":
        return f"plugin {value.value.name}"
    if value.kind == "boolean":
        return "true" if value.value else "false"
    return str(value.value)


def _plain(value: Value) -> str:
    import json

    return json.dumps(value.plain(), default=str)
