"""The one JSON policy (issue 10 item 4): every rule, the same bytes from every entry point,
and never an exception, whatever the event holds."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import itertools
import types
import uuid

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import Logger, formatEvent

from twisted_logstash.codecs import jsonpolicy, ndjson
from twisted_logstash.codecs.jsonpolicy import (
    CIRCULAR,
    MAX_DEPTH,
    dumps,
    dumps_array,
    dumps_lines,
    string_form,
)
from twisted_logstash.pipeline.deadletter import wrap
from twisted_logstash.wires.lumberjack.frames import serialize_event

UTC = datetime.UTC
Point = collections.namedtuple("Point", "x y")


class Color(enum.Enum):
    RED = "red"


class Thing:
    def __str__(self):
        return "a thing"


class Unprintable:
    def __str__(self):
        raise ValueError("no text")


def deep(levels: int) -> list:
    """A list nested ``levels`` deep (``[]`` is 1)."""
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def depth(value) -> int:
    """How deep a plain JSON value is nested (a scalar is 0), without recursion."""
    best, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, list | dict):
            best = max(best, level)
            stack.extend(
                (v, level + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return best


def loads(value):
    """What a reader gets for ``{"v": value}``."""
    return orjson.loads(dumps({"v": value}))["v"]


# -- the rules, value by value --------------------------------------------------------------

RULES = [
    (decimal.Decimal("1.10"), "1.10"),
    (decimal.Decimal("-1E+3"), "-1E+3"),
    (decimal.Decimal("NaN"), "NaN"),
    (
        datetime.datetime(2026, 12, 3, 6, 30, 0, 123000, tzinfo=UTC),
        "2026-12-03T06:30:00.123000+00:00",
    ),
    (datetime.datetime(2026, 12, 3, 6, 30), "2026-12-03T06:30:00"),
    (datetime.date(2026, 12, 3), "2026-12-03"),
    (datetime.time(6, 30), "06:30:00"),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    (Color.RED, "red"),
    ({3, 1, 2}, [1, 2, 3]),
    (frozenset({"b", "a"}), ["a", "b"]),
    ({1, "a"}, None),  # unorderable: a list in iteration order (checked below)
    (types.MappingProxyType({"a": 1}), {"a": 1}),
    (Point(1, 2), [1, 2]),
    (collections.deque([1, 2]), [1, 2]),
    (b"caf\xc3\xa9 \xff", "café \ufffd"),
    (bytearray(b"ok"), "ok"),
    (memoryview(b"ok"), "ok"),
    (float("nan"), None),
    (float("inf"), None),
    (float("-inf"), None),
    (Thing(), "a thing"),
    (Unprintable(), "<unprintable Unprintable>"),
    (2**64 - 1, 2**64 - 1),
    (-(2**63), -(2**63)),
    (2**64, str(2**64)),
    (-(2**63) - 1, str(-(2**63) - 1)),
    ("x\udcff", "x\ufffd"),
    ("\ud83d\ude00", "😀"),  # a surrogate pair is the character it spells
    (True, True),
    (None, None),
]


@pytest.mark.parametrize(("value", "expected"), RULES, ids=[repr(r[0])[:40] for r in RULES])
def test_each_value_becomes_what_the_rule_says(value, expected):
    got = loads(value)
    if expected is None and isinstance(value, set):
        assert sorted(got, key=str) == sorted(value, key=str)
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (7, "7"),
        (-1.5, "-1.5"),
        (True, "true"),
        (None, "null"),
        (datetime.date(2026, 12, 3), "2026-12-03"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (Color.RED, "red"),
        (decimal.Decimal("2.5"), "2.5"),
        ((1, 2), "(1, 2)"),
        (b"k\xff", "k\ufffd"),
        (Thing(), "a thing"),
        (2**70, str(2**70)),
        ("k\udcff", "k\ufffd"),
    ],
)
def test_a_key_that_is_not_a_str_becomes_its_string_form(key, expected):
    assert orjson.loads(dumps({key: 1, "fine": 2})) == {expected: 1, "fine": 2}


def test_string_form():
    assert string_form(decimal.Decimal("0.1")) == "0.1"
    assert string_form(b"\xff") == "\ufffd"
    assert string_form(Thing()) == "a thing"
    assert string_form(Unprintable()) == "<unprintable Unprintable>"


# -- cost and sameness ----------------------------------------------------------------------

GOOD = [{"message": "one", "n": 1, "when": datetime.datetime(2026, 1, 1)}, {"tags": ["a"]}]
ODD = [
    {"d": decimal.Decimal("1.10")},
    {1: "int key"},
    {"big": 2**70},
    {"deep": deep(400)},
    {"s": "\udcff"},
]


def test_what_orjson_writes_alone_is_written_as_orjson_writes_it():
    for event in GOOD:
        assert dumps(event) == orjson.dumps(event)
    assert dumps_lines(GOOD) == b"\n".join(map(orjson.dumps, GOOD)) + b"\n"
    assert dumps_array(GOOD) == orjson.dumps(GOOD)


@pytest.mark.parametrize("odd", ODD, ids=[next(iter(e)) for e in ODD])
def test_every_writer_writes_an_event_the_same_way(odd):
    batch = [GOOD[0], odd, GOOD[1]]
    one = [dumps(event) for event in batch]
    assert dumps_lines(batch) == b"".join(line + b"\n" for line in one)
    assert dumps_lines(iter(batch)) == dumps_lines(batch)
    assert ndjson.encode(batch) == dumps_lines(batch)
    assert dumps_array(batch) == b"[" + b",".join(one) + b"]"
    assert dumps_array(tuple(batch)) == dumps_array(batch)
    assert [serialize_event(event) for event in batch] == one
    assert orjson.loads(dumps_array(batch)) == [orjson.loads(line) for line in one]


def test_nothing_is_empty():
    assert dumps_lines([]) == b""
    assert dumps_array([]) == b"[]"


def test_the_hook_and_the_slow_writer_agree():
    """An event the hook alone could write, made to need the slow writer by a non-str key."""
    event = {
        "d": decimal.Decimal("1.10"),
        "s": {2, 1},
        "b": b"\xff",
        "o": Thing(),
        "m": types.MappingProxyType({"x": {3}}),
        "p": Point(decimal.Decimal(1), 2),
        "when": datetime.datetime(2026, 1, 1, tzinfo=UTC),
        "n": [1.5, float("nan"), True, None, "t"],
    }
    hooked = orjson.loads(dumps(event))
    slow = orjson.loads(dumps({**event, 0: "key"}))
    assert slow.pop("0") == "key"
    assert slow == hooked


# -- what JSON cannot hold as it is ---------------------------------------------------------


def nested_text(levels: int) -> bytes:
    """The JSON text of ``deep(levels)``."""
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize("levels", [254, 255, MAX_DEPTH])
def test_nesting_up_to_the_limit_is_written_as_it_is(levels):
    event = {"v": deep(levels - 1)}  # the event itself is the first level
    text = dumps(event)
    assert text == b'{"v":' + nested_text(levels - 1) + b"}"
    assert depth(orjson.loads(text)) == levels
    # the disk queue's array and the dead-letter record add one level: still readable
    assert depth(orjson.loads(dumps_array([event]))) == levels + 1


def test_nesting_deeper_than_the_limit_becomes_a_string_of_its_json():
    event = {"v": deep(MAX_DEPTH + 500)}  # levels 2 .. MAX_DEPTH + 501
    text = dumps(event)
    inner = orjson.dumps(nested_text(501).decode())  # levels MAX_DEPTH + 1 ..
    assert text == b'{"v":' + b"[" * (MAX_DEPTH - 1) + inner + b"]" * (MAX_DEPTH - 1) + b"}"
    assert depth(orjson.loads(text)) == MAX_DEPTH
    assert dumps_array([event]) == b"[" + text + b"]"
    assert depth(orjson.loads(dumps_array([event]))) == MAX_DEPTH + 1


def test_nesting_far_deeper_raises_nothing():
    assert dumps({"v": deep(100_000)}).startswith(b'{"v":' + b"[" * (MAX_DEPTH - 1) + b'"')


def test_a_cycle_is_cut_where_it_comes_back():
    loop: dict = {"name": "loop", "list": []}
    loop["list"].append(loop)
    loop["self"] = loop
    got = orjson.loads(dumps(loop))
    assert got == {"name": "loop", "list": [CIRCULAR], "self": CIRCULAR}
    cycle: list = [1]
    cycle.append(cycle)
    assert orjson.loads(dumps({"c": cycle})) == {"c": [1, CIRCULAR]}


def test_a_shared_value_is_no_cycle():
    shared = {"x": [1, 2]}
    event = {"a": shared, "b": shared, 0: "forces the slow writer"}
    assert orjson.loads(dumps(event)) == {"a": shared, "b": shared, "0": "forces the slow writer"}


def test_a_dead_letter_record_holds_the_event_as_the_wire_would():
    from twisted_logstash.pipeline.deadletter import _records

    event = {"v": deep(MAX_DEPTH - 1), "d": decimal.Decimal("1")}
    (record,) = _records([event], {"reason": "r"}).splitlines()
    assert record == b'{"event":' + dumps(event) + b',"dead_letter":{"reason":"r"}}'
    assert depth(orjson.loads(record)["event"]) == MAX_DEPTH
    good = {"message": "m"}
    info = wrap(good, "r")["dead_letter"]
    assert _records([good], info) == orjson.dumps(wrap(good, "r")) + b"\n"


# -- never raises ---------------------------------------------------------------------------

odd_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.decimals()
    | st.datetimes()
    | st.builds(Thing)
    | st.builds(Unprintable)
    | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
)
odd_keys = st.text() | st.integers() | st.decimals(allow_nan=False) | st.none() | st.binary()
odd_values = st.recursive(
    odd_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(odd_keys, inner, max_size=4)
        | st.frozensets(st.integers() | st.text(), max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(odd_keys, odd_values, max_size=5), max_size=5))
def test_any_batch_is_written_and_read_back(batch):
    lines = dumps_lines(batch).splitlines()
    assert len(lines) == len(batch)
    for line in lines:
        assert type(orjson.loads(line)) is dict
    assert len(orjson.loads(dumps_array(batch))) == len(batch)


def test_the_module_says_its_rule():
    for word in ("Decimal", "NaN", "bytes", "set", "circular", "MAX_DEPTH", "str(value)"):
        assert word in jsonpolicy.__doc__


def test_the_batch_checked_for_nan_is_picked_by_count_before_looking_at_it(monkeypatch):
    """Batches not picked cost no scan for null: a NaN in one of them says nothing, the next
    picked batch holding one says it (writers share the count)."""
    logged: list[dict] = []
    monkeypatch.setattr(jsonpolicy, "log", Logger(observer=logged.append))
    monkeypatch.setattr(jsonpolicy, "_nonfinite_batches", itertools.count())
    monkeypatch.setattr(jsonpolicy, "NONFINITE_SAMPLE", 4)
    nan = [{"a": float("nan")}]
    assert dumps_lines([{"a": 1}]) == b'{"a":1}\n'  # picked: nothing to say
    assert dumps_lines(nan) == b'{"a":null}\n'
    assert jsonpolicy.dumps_each(nan) == [b'{"a":null}']
    assert dumps_array(nan) == b'[{"a":null}]'
    assert logged == []
    assert jsonpolicy.dumps_each([*nan, {"b": None}]) == [b'{"a":null}', b'{"b":null}']
    assert len(logged) == 1
    assert "1 NaN/Infinity values in 1 of 2 events" in formatEvent(logged[0])
