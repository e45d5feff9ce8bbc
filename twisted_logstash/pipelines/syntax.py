"""Logstash's pipeline syntax, parsed by Lark (``grammar.lark``) into a plain tree with positions.

``parse(text, source)`` returns a :class:`Config`: its sections (``input``, ``output``), each
a list of :class:`Plugin`; a plugin holds its :class:`Setting` s, and each setting a
:class:`Value`. Every node keeps the line and column (from 1) where it starts, so that a
message about any of them can name ``FILE:LINE:COLUMN``. Nothing here knows plugins or
settings (``plugins.py`` does), only the syntax:

- ``#`` comments to the end of the line, whitespace anywhere between tokens;
- strings in double or single quotes, over several lines if need be, with the escapes
  Logstash reads when ``config.support_escapes`` is on (``\\\\``, ``\\"``, ``\\'``, ``\\n``,
  ``\\r``, ``\\t``, ``\\0``; any other backslash stays as written, as Logstash keeps it);
- numbers (``9800``, ``-1.5``), bare words (``required``, ``json_lines``), ``true`` and
  ``false`` (booleans), arrays (``[a, "b", 1]``), hashes (``{ "k" => "v" k2 => 1 }``) and a
  plugin as a value (``codec => json_lines { }``).

A syntax error, a duplicate setting, a ``filter`` section (filters are out of scope) or a
section that is neither ``input`` nor ``output`` is a :class:`PipelineError` naming the place.
``${VAR}`` references are left in the strings: ``plugins.py`` substitutes them, in values only,
as Logstash does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import lark

from twisted_logstash.errors import ConfigurationError

__all__ = ["Config", "PipelineError", "Plugin", "Section", "Setting", "Value", "parse"]

SECTIONS = ("input", "output")
FILTERS_OUT_OF_SCOPE = (
    "filters are out of scope: a pipeline here has an input section and an output section only "
    "(run filters in a Logstash between the two)"
)

_BAREWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t", "0": "\0"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
#: how a terminal is shown in "expected ..." (Lark's own names mean nothing to a user)
_SHOWN = {
    "LBRACE": '"{"',
    "RBRACE": '"}"',
    "LSQB": '"["',
    "RSQB": '"]"',
    "COMMA": '","',
    "__ANON_0": '"=>"',
    "NAME": "a name",
    "NUMBER": "a number",
    "DOUBLE_QUOTED": "a string",
    "SINGLE_QUOTED": "a string",
    "$END": "the end",
}


class PipelineError(ConfigurationError):
    """A mistake in a pipeline, as one line: ``FILE:LINE:COLUMN: what is wrong``."""

    def __init__(self, source: str, line: int, column: int, message: str):
        super().__init__(f"{source}:{line}:{column}: {message}")
        self.source = source
        self.line = line
        self.column = column
        self.reason = message


@dataclass(frozen=True)
class Value:
    """A value as written: ``kind`` is string, number, bareword, boolean, array, hash or plugin;
    ``value`` the Python value (a list of Values, a list of (key Value, Value) pairs for a hash,
    a :class:`Plugin` for a plugin)."""

    kind: str
    value: Any
    line: int
    column: int

    def plain(self) -> Any:
        """The value without positions: lists, dicts, str, int, float, bool (a plugin: its
        name)."""
        if self.kind == "array":
            return [item.plain() for item in self.value]
        if self.kind == "hash":
            return {key.plain(): item.plain() for key, item in self.value}
        if self.kind == "plugin":
            return self.value.name
        return self.value


@dataclass(frozen=True)
class Setting:
    name: str
    value: Value
    line: int
    column: int


@dataclass(frozen=True)
class Plugin:
    name: str
    settings: tuple[Setting, ...]
    line: int
    column: int

    def setting(self, name: str) -> Setting | None:
        for setting in self.settings:
            if setting.name == name:
                return setting
        return None


@dataclass(frozen=True)
class Section:
    kind: str
    plugins: tuple[Plugin, ...]
    line: int
    column: int


@dataclass(frozen=True)
class Config:
    """A parsed pipeline: ``source`` names it in messages (the file, or ``config string``)."""

    source: str
    sections: tuple[Section, ...] = field(default=())

    def plugins(self, kind: str) -> list[Plugin]:
        return [
            plugin
            for section in self.sections
            if section.kind == kind
            for plugin in section.plugins
        ]


@cache
def _parser() -> lark.Lark:
    grammar = resources.files(__package__).joinpath("grammar.lark").read_text(encoding="utf-8")
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse(text: str, source: str = "config string") -> Config:
    """The pipeline ``text`` as a :class:`Config`; PipelineError (a ConfigurationError) for
    anything that is not Logstash's syntax or not supported here."""
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as error:
        raise _syntax_error(error, text, source) from None
    return _Builder(source).config(tree)


def _syntax_error(error: lark.exceptions.UnexpectedInput, text: str, source: str) -> PipelineError:
    line, column = error.line, error.column
    if line is None or line < 1:  # the end of the text
        line = text.count("\n") + 1
        column = len(text) - (text.rfind("\n") + 1) + 1
    filter_section = _filter_before(text, line, column)
    if filter_section is not None:
        return PipelineError(source, *filter_section, FILTERS_OUT_OF_SCOPE)
    expected = sorted({_SHOWN.get(name, name) for name in getattr(error, "expected", ()) or ()})
    wanted = f" (expected {' or '.join(expected)})" if expected else ""
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        found = repr(text[error.pos_in_stream]) if error.pos_in_stream < len(text) else "the end"
        return PipelineError(source, line, column, f"syntax error: unexpected {found}{wanted}")
    token = getattr(error, "token", None)
    if token is None or token.type == "$END":
        return PipelineError(source, line, column, f"syntax error: unexpected end{wanted}")
    return PipelineError(source, line, column, f"syntax error: unexpected {str(token)!r}{wanted}")


def _filter_before(text: str, line: int, column: int) -> tuple[int, int] | None:
    """Where a ``filter`` section starts before the error (its conditionals and regular
    expressions are beyond this grammar): the error is then that filters are out of scope."""
    lines = text.split("\n")
    offset = sum(len(text) + 1 for text in lines[: line - 1]) + column - 1
    upto = text[:offset]
    uncommented = re.sub(r"#[^\n]*", lambda m: " " * len(m.group(0)), upto)
    for match in re.finditer(r"(?:^|(?<=[\s}]))filter\s*\{", uncommented):
        before = uncommented[: match.start()]
        return before.count("\n") + 1, match.start() - (before.rfind("\n") + 1) + 1
    return None


class _Builder:
    """Lark's tree -> the plain tree, checking what the grammar cannot say."""

    def __init__(self, source: str):
        self.source = source

    def error(self, node, message: str) -> PipelineError:
        line, column = _position(node)
        return PipelineError(self.source, line, column, message)

    def config(self, tree: lark.Tree) -> Config:
        sections = []
        for node in tree.children:
            name_token = node.children[0]
            kind = str(name_token)
            if kind == "filter":
                raise self.error(name_token, FILTERS_OUT_OF_SCOPE)
            if kind not in SECTIONS:
                raise self.error(
                    name_token,
                    f"unknown section {kind!r}: a pipeline has input and output sections",
                )
            plugins = tuple(self.plugin(child) for child in node.children[1:])
            sections.append(Section(kind, plugins, *_position(name_token)))
        return Config(self.source, tuple(sections))

    def plugin(self, node: lark.Tree) -> Plugin:
        head, *settings = node.children
        name = self.name(head)
        seen: dict[str, Setting] = {}
        for child in settings:
            setting = self.setting(child)
            first = seen.get(setting.name)
            if first is not None:
                raise self.error(
                    child,
                    f"duplicate setting {setting.name!r} for {name} "
                    f"(first given at line {first.line}, column {first.column})",
                )
            seen[setting.name] = setting
        return Plugin(name, tuple(seen.values()), *_position(head))

    def name(self, node) -> str:
        if isinstance(node, lark.Token):
            return str(node)
        return self.value(node).value  # a quoted name

    def setting(self, node: lark.Tree) -> Setting:
        head, value = node.children
        return Setting(self.name(head), self.value(value), *_position(head))

    def value(self, node) -> Value:
        line, column = _position(node)
        kind = node.data
        if kind == "string":
            return Value("string", _unquote(str(node.children[0])), line, column)
        if kind == "number":
            text = str(node.children[0])
            number = float(text) if "." in text else int(text)
            return Value("number", number, line, column)
        if kind == "bareword":
            word = str(node.children[0])
            if word in ("true", "false"):
                return Value("boolean", word == "true", line, column)
            if not _BAREWORD.fullmatch(word):
                raise self.error(
                    node, f'syntax error: {word!r} is not a value (quote it: "{word}")'
                )
            return Value("bareword", word, line, column)
        if kind == "array":
            return Value("array", [self.value(child) for child in node.children], line, column)
        if kind == "hash":
            entries = []
            seen: dict[Any, Value] = {}
            for entry in node.children:
                key, item = (self.value(child) for child in entry.children)
                if key.value in seen:
                    raise self.error(entry, f"duplicate key {key.value!r} in hash")
                seen[key.value] = key
                entries.append((key, item))
            return Value("hash", entries, line, column)
        if kind == "plugin_value":
            head, *settings = node.children
            plugin = self.plugin(lark.Tree("plugin", [head, *settings], node.meta))
            return Value("plugin", plugin, line, column)
        raise self.error(node, f"syntax error: unexpected {kind}")  # pragma: no cover


def _position(node) -> tuple[int, int]:
    if isinstance(node, lark.Token):
        return node.line, node.column
    return node.meta.line, node.meta.column


def _unquote(token: str) -> str:
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), token[1:-1])
