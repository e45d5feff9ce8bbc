"""The one JSON serialization policy: how every writer turns an event into bytes.

Every writer of events uses it: the native body (:mod:`codecs.ndjson`), the framed wire's ``J``
frames, the disk queue, the dead-letter file and the stdout/file sinks. So an event is written
the same way wherever it goes, and no writer can fail on an event another writer takes.

The policy is *total*: :func:`dumps` writes any Python object and never raises, so a batch
never fails to encode and a refused batch can always be dead-lettered. An event holding a value
JSON has no type for is not refused: that value becomes its string form, the same everywhere.
(Refusing instead would mean encoding every event once more at ``send()``, or splitting batches
that fail; a string form costs nothing on the common path and loses no other event.)

The rule, value by value:

- What orjson writes natively is written as orjson writes it: ``str``, ``int``, ``float``,
  ``dict``, ``list`` and their subclasses, ``bool``, ``None``, ``tuple``, ``datetime``/``date``/
  ``time`` (ISO 8601, ``2026-12-03T06:30:00.123000+00:00``; a naive one without an offset),
  ``uuid.UUID`` (its text), an ``enum.Enum`` (its value), a dataclass (an object).
- NaN and ±Infinity (floats) become ``null``: JSON has no such numbers (orjson's rule). Not
  silently: a batch writer (:func:`dumps_lines`, :func:`dumps_array`, :func:`dumps_each`) logs
  one warning for the batch, naming how many values in how many events, for the first batch
  it writes and one in :data:`NONFINITE_SAMPLE` after it (sampled: see there).
- ``decimal.Decimal``: its decimal text, as a string (``"1.10"``, ``"NaN"``), so that no digit
  is lost to a float on the reading side.
- An integer beyond 64 bits: its decimal text, as a string. Logstash (Jackson) reads it as a
  BigInteger and writes it as a number; we cannot: orjson does not write it, and a receiver
  built on a 64-bit reader (Beats' Go decoder, orjson itself) would turn that number into a
  float and lose digits. As a string every digit arrives; only the JSON type changes.
- ``set``/``frozenset``: a list, sorted when its items can be ordered.
- A mapping that is not a dict: an object; a tuple subclass (a namedtuple), a deque: a list.
- ``bytes``/``bytearray``/``memoryview``: UTF-8 text, each invalid byte replaced by U+FFFD.
- A ``str`` holding a lone surrogate (not UTF-8): each surrogate replaced by U+FFFD.
- A dict key that is not a ``str``: an ``int``, ``float``, ``bool``, ``None``, date/time,
  ``UUID`` or enum key is written as orjson's ``OPT_NON_STR_KEYS`` writes it (``1`` -> ``"1"``,
  ``None`` -> ``"null"``); any other key becomes its string form by the rules above.
- Anything else: ``str(value)`` (``"<unprintable T>"`` if even that raises).

What JSON cannot hold as it is:

- Nesting: written as it is up to :data:`MAX_DEPTH` levels (orjson alone stops at 254), the
  depth Logstash's JSON parser accepts by default. A container nested deeper becomes a string
  holding its JSON text, so that no receiver, nor our own disk queue, meets a document too deep
  to read.
- A circular reference (a container that holds itself): the inner occurrence becomes the string
  ``"<circular reference>"``.

Reading (:func:`loads`, used by the native input's ndjson codec, the framed input's ``J``
frames and the output's sources) is the same policy seen from the other side, so that an input
takes exactly what the project can write again:

- Strict RFC 8259, as msgspec reads it (:data:`read`): ``NaN``, ``Infinity``, a number beyond
  a double's range, invalid UTF-8, a lone surrogate escape are not JSON.
- An event nested deeper than :data:`MAX_DEPTH` is refused (:class:`TooDeepError`), however
  deep the reader could go; the event of a batch, not the batch: for a
  top-level array, each element counts from itself. An input turns such a line into the
  ``_jsonparsefailure`` event holding the raw line that Logstash's json codec makes of any line
  it cannot parse: refused alone, never taking its batch-mates (or its window) with it.
- An integer beyond 64 bits keeps its exact value, a Python ``int`` (orjson would read it as a
  float); it is then written as above.

The reader is msgspec's rather than orjson's because it keeps every integer exact at orjson's
speed (measured: 583 against 547 ns for a 320-byte event), where orjson needed every body
scanned for runs of 19 digits first (a ``translate`` of the whole body: a quarter of the cost
of reading it). The depth is walked only for a text over 2,000 bytes holding more than
MAX_DEPTH brackets.

Cost: the common case is orjson alone. An event orjson writes without help is written without
any hook; only an event it refuses is written again through the hook, and only one the hook
cannot save (a non-str key, deep nesting, a cycle, a huge integer, a surrogate) is written by
the slow pure-Python writer below.
"""

from __future__ import annotations

import datetime
import enum
import itertools
import math
import sys
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import msgspec
import orjson
from twisted.logger import Logger

__all__ = [
    "CIRCULAR",
    "MAX_DEPTH",
    "TooDeepError",
    "dumps",
    "dumps_array",
    "dumps_each",
    "dumps_lines",
    "loads",
    "read_object_lines",
    "read_objects",
    "string_form",
    "too_deep",
    "warn_nonfinite",
]

log = Logger()

MAX_DEPTH = 1000
"""Levels of nesting written as they are (an event itself is level 1): Logstash's (Jackson's)
default limit, and under orjson's reading limit (1024) with room for the one level the disk
queue and the dead-letter file wrap around an event."""

CIRCULAR = "<circular reference>"

_dumps = orjson.dumps
_loads = orjson.loads
_decoder = msgspec.json.Decoder()
read = _decoder.decode
"""One JSON text, as it reads: msgspec's reader (strict RFC 8259, as fast as orjson's), which
keeps an integer of any size exact, so that no body needs scanning for long runs of digits.
It recurses: a text nested deep enough to reach Python's recursion limit raises RecursionError
(:func:`loads` then reads it again with room for :data:`MAX_DEPTH` levels)."""
_read_values = _decoder.decode_lines  # every JSON text of a buffer, whitespace between them
_DEEP_TEXT = 2 * MAX_DEPTH  # the fewest bytes of a text nested deeper than MAX_DEPTH
_EncodeError = orjson.JSONEncodeError
_DecodeError = orjson.JSONDecodeError
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_HOOKED = (AbstractSet, Mapping, deque)  # what the hook turns into a container
_KEY_TYPES = (int, float, type(None), datetime.date, datetime.time, enum.Enum, uuid.UUID)


def dumps(obj: Any) -> bytes:
    """One value (an event) as compact JSON, by the policy; never raises."""
    try:
        return _dumps(obj)
    except _EncodeError:
        pass
    try:
        return _dumps(obj, default=_default)
    except _EncodeError:
        return _write(obj, MAX_DEPTH)


def dumps_lines(events: Iterable[Any]) -> bytes:
    """ndjson: each event as :func:`dumps` writes it, followed by ``\\n``; ``b""`` for none.

    A batch: a NaN or an Infinity written as ``null`` is logged, once for the batch, on the
    batches :data:`NONFINITE_SAMPLE` picks."""
    if not isinstance(events, list | tuple):
        events = list(events)
    try:
        parts = list(map(_dumps, events))
    except _EncodeError:
        parts = [dumps(event) for event in events]
    if not next(_nonfinite_batches) % NONFINITE_SAMPLE:
        _check_nonfinite(events, parts)
    parts.append(b"")  # the last line's \n, without copying the body once more
    return b"\n".join(parts)


def dumps_array(events: Iterable[Any]) -> bytes:
    """A JSON array of events, each as :func:`dumps` writes it (its depth counted from the
    event, not from the array). A batch: NaN/Infinity logged once, as by :func:`dumps_lines`."""
    if not isinstance(events, list):
        events = list(events)
    sampled = not next(_nonfinite_batches) % NONFINITE_SAMPLE
    try:
        body = _dumps(events)
    except _EncodeError:
        parts = [dumps(event) for event in events]
        if sampled:
            _check_nonfinite(events, parts)
        return b"[" + b",".join(parts) + b"]"
    if sampled and b"null" in body and not _same(body, events):
        _check_nonfinite(events, list(map(_dumps, events)))
    return body


def dumps_each(events: Iterable[Any]) -> list[bytes]:
    """Each event as :func:`dumps` writes it, one ``bytes`` each (the framed wire's frames,
    the dead-letter records); NaN/Infinity logged once for them all, as by
    :func:`dumps_lines`."""
    if not isinstance(events, list | tuple):
        events = list(events)
    try:
        parts = list(map(_dumps, events))
    except _EncodeError:
        parts = [dumps(event) for event in events]
    if not next(_nonfinite_batches) % NONFINITE_SAMPLE:
        _check_nonfinite(events, parts)
    return parts


def _same(text: bytes, value: Any) -> bool:
    """Whether ``text`` reads back equal to ``value``: then no NaN/Infinity became ``null``
    (``None == nan`` is false). One loads and one comparison in C: far cheaper than walking
    every value of an event that merely holds a ``None``."""
    try:
        return _loads(text) == value
    except (ValueError, RecursionError):
        return False


NONFINITE_SAMPLE = 64
"""One batch in this many (the first one always) is checked for NaN/Infinity written as
``null``. Telling a NaN from a ``None`` costs finding ``null`` in the text (a scan of the whole
batch, about half as much again as writing it with orjson) and reading back what holds one, and
events hold ``None`` all the time while NaN comes only from Python code. So the batch to check
is picked first, by a counter, and the other batches cost nothing: a program that keeps
producing NaN is told on its first batch or within its next 64, at about 1/64 of that cost."""

_nonfinite_batches = itertools.count()


def _check_nonfinite(events: Sequence[Any], parts: Sequence[bytes]) -> None:
    """Warn once about the NaN/Infinity of ``events`` (``parts``: their written text), for a
    batch :data:`NONFINITE_SAMPLE` picked; only an event whose text holds ``null`` and does not
    read back equal is walked."""
    suspects = [
        event
        for event, part in zip(events, parts, strict=True)
        if b"null" in part and not _same(part, event)
    ]
    if suspects:
        warn_nonfinite(suspects, total=len(events))


def warn_nonfinite(events: Iterable[Any], total: int | None = None) -> int:
    """Log (a warning) how many NaN/Infinity floats ``events`` hold, which the policy writes
    as ``null``; the count (0: nothing logged). Walks every value: the writers above call it
    only for events whose text does not read back equal. ``total``: the size of the batch
    (default: the events given)."""
    values = holding = count = 0
    for event in events:
        count += 1
        found = _count_nonfinite(event)
        if found:
            values += found
            holding += 1
    if values:
        log.warn(
            "{values} NaN/Infinity values in {holding} of {total} events written as null "
            "(JSON has no such numbers)",
            values=values,
            holding=holding,
            total=count if total is None else total,
        )
    return values


def _count_nonfinite(value: Any) -> int:
    """The NaN/Infinity floats in ``value`` (no recursion, cycles cut)."""
    found = 0
    seen: set[int] = set()
    work = [value]
    while work:
        item = work.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                found += 1
        elif isinstance(item, dict | list | tuple | AbstractSet | deque):
            if id(item) in seen:
                continue
            seen.add(id(item))
            work.extend(item.values() if isinstance(item, dict) else item)
    return found


# -- reading --------------------------------------------------------------------------------------


class TooDeepError(ValueError):
    """A JSON text nested deeper than :data:`MAX_DEPTH`: what the policy cannot write as it is."""


def loads(
    data: bytes | bytearray, maybe_big: bool | None = None, *, check_depth: bool = True
) -> Any:
    """One JSON text, read by the policy; raises ValueError when it is not JSON (RFC 8259)
    and :class:`TooDeepError` (a ValueError) when an event is nested deeper than
    :data:`MAX_DEPTH` (the text itself, or for an array, each of its elements: the events of
    a batch). An integer of any size keeps its exact value. ``maybe_big`` is not needed any
    more (the reader keeps every integer exact) and is ignored. ``check_depth=False``: the
    caller checks the depth itself (:func:`too_deep`), from where its events begin.
    """
    try:
        value = read(data)
    except RecursionError:
        value = _read_deep(data)
    if check_depth and too_deep(value, data):
        raise TooDeepError(f"nested deeper than {MAX_DEPTH} levels")
    return value


_SEPARATOR = b"\n0 0\n"
"""Put between two texts read in one call (:func:`read_objects`): two numbers in a row are valid
only between top-level values, never inside an array or an object, so a text that does not end
where its line (or chunk) ends makes the call fail instead of swallowing the separator."""
_GROWTH = len(_SEPARATOR) - 1
_dict = dict


def read_objects(chunks: list[bytes]) -> list[dict] | None:
    """The JSON objects ``chunks`` hold, one each, read in one call; None unless every chunk is
    exactly one JSON object (one that :data:`read` reads alone) and none may nest deeper than
    :data:`MAX_DEPTH`: then read them one by one (the careful way), for the events of the bad
    ones. (Tried for the framed input's ``J`` frames, one call per window: slower than one
    :data:`read` per frame there, docs/benchmarks.md; :func:`read_object_lines` uses the same
    proof for the native body.)

    Much cheaper than one :data:`read` per chunk for a batch (one call, no Python per event);
    equal to it whenever it answers (see :func:`_objects`)."""
    if not chunks:
        return []
    return _objects(_SEPARATOR.join(chunks), len(chunks), len(chunks) - 1)


def read_object_lines(data: bytes) -> list[dict] | None:
    """The JSON objects of the ``\\n``-separated lines of ``data``, one per line (a last
    ``\\n`` ends the last line), read in one call; None unless every line is one JSON object
    (no blank line, no array, nothing :data:`read` refuses, nothing too deep): then read the
    lines one by one (the careful way), as :func:`read_objects` says."""
    joined = data.replace(b"\n", _SEPARATOR)
    separators = (len(joined) - len(data)) // _GROWTH
    lines = separators if data[-1:] == b"\n" else separators + 1  # an empty last line: none
    return _objects(joined, lines, separators)


def _objects(joined: bytes, objects: int, separators: int) -> list[dict] | None:
    """The ``objects`` objects of texts joined by ``separators`` :data:`_SEPARATOR` (one more
    text than separators, or as many when the last text is empty), or None.

    Why an answer is exact: no text can reach across a separator (``0 0`` is invalid inside a
    container, and a string cannot hold the raw ``\\n``), so each text gives whole values of its
    own, and each separator exactly its two zeros. The values therefore run text, 0, 0, text,
    0, 0 ...: with an object at every position ``3 * i``, a text of no value would put a zero
    there, so each text holds one value or (to end where a separator's zeros fit) four, seven
    ...; the count of values, ``objects + 2 * separators``, then leaves one for each.
    While Python's recursion limit is not above MAX_DEPTH, a text read at all is within it (as
    for :func:`loads`); above it, None (too deep a text must be found one by one)."""
    if sys.getrecursionlimit() > MAX_DEPTH:
        return None
    try:
        values = _read_values(joined)
    except (ValueError, RecursionError):  # msgspec's DecodeError is a ValueError
        return None
    if len(values) != objects + 2 * separators or not objects:
        return None
    events = values[::3]
    if len(events) != objects or set(map(type, events)) != {_dict}:
        return None
    return events


def _read_deep(data: bytes | bytearray) -> Any:
    """``data`` read again with room for :data:`MAX_DEPTH` levels beyond the caller's stack;
    deeper than that is :class:`TooDeepError`."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + MAX_DEPTH + 100)
    try:
        return read(data)
    except RecursionError:
        raise TooDeepError(f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        sys.setrecursionlimit(limit)


def too_deep(value: Any, data: bytes | bytearray) -> bool:
    """True when ``value`` (read from the text ``data``), or for a list each of its elements,
    nests deeper than :data:`MAX_DEPTH`. Cheap unless ``data`` is long and holds more than
    MAX_DEPTH brackets."""
    if len(data) <= _DEEP_TEXT or data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False
    events = value if type(value) is list else (value,)
    return any(_deeper(event, MAX_DEPTH) for event in events)


def _deeper(value: Any, limit: int) -> bool:
    """True when ``value`` nests containers deeper than ``limit`` levels (itself is level 1)."""
    if type(value) is not dict and type(value) is not list:
        return False
    work = [(value, 1)]
    while work:
        node, depth = work.pop()
        if depth > limit:
            return True
        depth += 1
        members = node.values() if type(node) is dict else node
        work.extend((m, depth) for m in members if type(m) is dict or type(m) is list)
    return False


def string_form(value: Any) -> str:
    """The string a value JSON has no type for becomes (see the module docstring)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    try:
        return str(value)  # Decimal: its decimal text
    except Exception:
        return f"<unprintable {type(value).__qualname__}>"


def _default(value: Any) -> Any:
    """orjson's hook: called only for a value orjson has no type for; never raises."""
    if isinstance(value, AbstractSet):
        try:
            return sorted(value)
        except Exception:
            return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | deque):
        return list(value)
    return string_form(value)


def _clean(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (a pair becomes its character)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _leaf(value: Any) -> bytes:
    """A value that is not a dict, list or tuple (nor becomes one through the hook)."""
    if isinstance(value, str):
        return _dumps(_clean(value))
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        return _dumps(str(int(value)))
    try:
        return _dumps(value, default=_default)
    except _EncodeError:
        return _dumps(_clean(string_form(value)))


def _key(key: Any) -> bytes:
    """A dict key, as JSON text (a string), by the policy."""
    if isinstance(key, str):
        try:
            return _dumps(key)
        except _EncodeError:
            return _dumps(_clean(key))
    if isinstance(key, _KEY_TYPES):
        try:
            # b'{"KEY":null}': orjson's own text for this key
            return _dumps({key: None}, option=orjson.OPT_NON_STR_KEYS)[1:-6]
        except _EncodeError:
            pass
    return _dumps(_clean(string_form(key)))


class _Raw(bytes):
    """Text already written, on the work stack of :func:`_write`."""


class _Leave(int):
    """Marks where the container with this id() is finished, on the work stack."""


def _write(obj: Any, limit: int | None) -> bytes:
    """The slow writer, for what orjson refuses even with the hook: no recursion (any depth),
    a container deeper than ``limit`` written as a string of its JSON text, cycles cut."""
    out: list[bytes] = []
    path: set[int] = set()  # id() of the containers being written (a cycle comes back to one)
    work: list[Any] = [(obj, 1)]
    while work:
        item = work.pop()
        kind = type(item)
        if kind is _Raw:
            out.append(item)
            continue
        if kind is _Leave:
            path.discard(item)
            continue
        value, depth = item
        if not isinstance(value, dict | list | tuple):
            converted = _default(value) if isinstance(value, _HOOKED) else value
            if not isinstance(converted, dict | list):
                out.append(_leaf(converted))
                continue
            value = converted
        if id(value) in path:
            out.append(_dumps(CIRCULAR))
            continue
        if limit is not None and depth > limit:
            out.append(_dumps(_write(value, None).decode()))
            continue
        path.add(id(value))
        todo: list[Any] = []
        if isinstance(value, dict):
            todo.append(_Raw(b"{"))
            for n, (key, member) in enumerate(value.items()):
                todo.append(_Raw((b"," if n else b"") + _key(key) + b":"))
                todo.append((member, depth + 1))
            todo.append(_Raw(b"}"))
        else:
            todo.append(_Raw(b"["))
            for n, member in enumerate(value):
                if n:
                    todo.append(_Raw(b","))
                todo.append((member, depth + 1))
            todo.append(_Raw(b"]"))
        todo.append(_Leave(id(value)))
        work.extend(reversed(todo))
    return b"".join(out)
