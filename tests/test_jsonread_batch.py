"""Issue 12: a batch of JSON texts read in one call gives the events read one by one would.

``jsonpolicy.read_object_lines`` (the native body) and ``jsonpolicy.read_objects`` (a batch of
texts, the framed input's ``J`` frames) answer only when every text is exactly one object; else
None, and the caller reads text by text (the careful path, which makes ``_jsonparsefailure``
events, extends arrays, skips blank lines, refuses what is too deep). These tests hold the one
call to that: same events or None, never other events.
"""

from __future__ import annotations

import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_logstash.codecs import jsonpolicy, ndjson
from twisted_logstash.codecs.jsonpolicy import MAX_DEPTH, read_object_lines, read_objects

TAG = ndjson.PARSE_FAILURE_TAG


def careful(data: bytes) -> list[dict]:
    """The events of an ndjson body read line by line (the path the one call stands in for)."""
    out: list[dict] = []
    ndjson._decode_lines(data.split(b"\n"), out)
    return out


def one_by_one(chunks: list[bytes]) -> list | None:
    """What ``read_objects`` must answer: each chunk read alone, when each is one object."""
    values = []
    for chunk in chunks:
        try:
            value = jsonpolicy.loads(chunk)
        except (ValueError, RecursionError):
            return None
        if type(value) is not dict:
            return None
        values.append(value)
    return values


GOOD = [b'{"a":1}', b'{"message":"x","n":-2.5e3,"l":[1,{"b":null}]}', b"{}", b' {"s":"\\n"} ']

# Lines that are not one object each, alone or glued to their neighbours.
ADVERSARIAL = [
    # a text reaching across lines, made up for by a line holding two texts
    [b'{"a":[[1', b"2]]}", b"{}],[{}"],
    [b'{"a":', b'{"b":1}}{}'],
    [b'{"a":', b"1}", b"{} {}"],
    # a line shaped like the separator's values, made up for by a blank line
    [b"{} 0 0 {}", b"", b"{}"],
    [b'{"x":1} 0 0 {"y":2}', b"   ", b"{}"],
    [b"{} 0 0 {}", b"\r"],
    [b"{}", b"0 0", b"{}"],
    [b"{}{}", b"\t"],
    [b"{},{}", b"{}"],
    [b"{} 1 2 {}", b"", b"{}"],
    # a string left open, an escape left hanging
    [b'{"a":"x', b'y"}', b"{}"],
    [b'{"a":"x\\', b'"}'],
    # not objects
    [b"[]", b"{}"],
    [b'[{"a":1},{"b":2}]', b"{}"],
    [b'[{"a":1},2]', b"{}"],
    [b"1", b"{}"],
    [b"null"],
    [b'"text"', b"{}"],
    [b"{", b"}"],
    # blank and whitespace lines, CRLF
    [b"", b"{}"],
    [b"{}", b"", b""],
    [b"{}\r", b"{}\r", b""],
    [b"\r", b"{}"],
    # not UTF-8, not JSON
    [b'{"a":"\xff"}', b"{}"],
    [b"\xff\xfe", b"{}"],
    [b"{'a':1}", b"{}"],
    [b'{"a":NaN}', b"{}"],
    [b'{"a":1e999}', b"{}"],
]

# Bodies the one call reads: the same events as line by line.
FAST = [
    [b'{"big":123456789012345678901234567890}', b'{"neg":-98765432109876543210}'],
    [b"{}\r", b'{"a":"\\n0 0\\n"}\r'],
    [b'{"a":"}{ ] [ 0 0"}', b' {"b":[[],{}]} \t'],
]


def bodies():
    for lines in [[line] for line in GOOD] + [GOOD] + ADVERSARIAL + FAST:
        body = b"\n".join(lines)
        yield body
        yield body + b"\n"


@pytest.mark.parametrize("body", list(bodies()))
def test_same_events_as_line_by_line(body):
    """``ndjson.decode`` (one call when it can) gives the careful path's events, and the one
    call answers only when every line is one object."""
    expected = careful(body)
    assert ndjson.decode(body) == expected
    fast = read_object_lines(body)
    if fast is not None:
        assert fast == expected
        lines = body.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        assert len(fast) == len(lines)


@pytest.mark.parametrize("lines", ADVERSARIAL)
def test_adversarial_bodies_take_the_careful_path(lines):
    assert read_object_lines(b"\n".join(lines) + b"\n") is None
    assert read_objects(lines) is None


@pytest.mark.parametrize("lines", [GOOD, *FAST])
def test_common_bodies_are_read_in_one_call(lines):
    for body in (b"\n".join(lines), b"\n".join(lines) + b"\n"):
        assert read_object_lines(body) == careful(body)
    assert read_objects(lines) == [jsonpolicy.read(line) for line in lines]


def test_big_integers_stay_exact():
    body = b'{"big":123456789012345678901234567890}\n{"n":18446744073709551616}\n'
    events = read_object_lines(body)
    assert events == [{"big": 123456789012345678901234567890}, {"n": 2**64}]
    assert type(events[1]["n"]) is int


def test_failures_keep_their_line_and_their_neighbours():
    body = b'{"a":1}\nnot json\n[{"b":2},{"c":3}]\n\n{"d":4}\r\n'
    assert ndjson.decode(body) == [
        {"a": 1},
        {"message": "not json", "tags": [TAG]},
        {"b": 2},
        {"c": 3},
        {"d": 4},
    ]


def same(got, expected) -> bool:
    """Equality for values nested deeper than Python's own comparison can recurse."""
    return jsonpolicy.dumps(got) == jsonpolicy.dumps(expected)


def deep_line(levels: int) -> bytes:
    return b'{"deep":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


@pytest.mark.parametrize("levels", [50, 400, MAX_DEPTH, MAX_DEPTH + 1, 3 * MAX_DEPTH])
def test_deep_lines(levels):
    body = b'{"a":1}\n' + deep_line(levels) + b'\n{"b":2}\n'
    expected = careful(body)
    assert same(ndjson.decode(body), expected)
    fast = read_object_lines(body)
    assert fast is None or same(fast, expected)
    if levels > MAX_DEPTH:
        assert fast is None
        assert expected[1]["tags"] == [TAG]


def test_a_raised_recursion_limit_reads_line_by_line():
    """Above MAX_DEPTH only the careful path can tell a line too deep: the one call declines."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(MAX_DEPTH + 500)
    try:
        assert read_object_lines(b"{}\n") is None
        assert read_objects([b"{}"]) is None
        body = b"{}\n" + deep_line(MAX_DEPTH + 2) + b"\n"
        assert ndjson.decode(body)[1]["tags"] == [TAG]
    finally:
        sys.setrecursionlimit(limit)


def test_empty():
    assert read_objects([]) == []
    assert read_object_lines(b"") is None
    assert ndjson.decode(b"") == []
    assert ndjson.decode(b"\n") == []


FRAGMENTS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b'"k"',
    b'"k":',
    b"0",
    b"1",
    b" ",
    b"\r",
    b"\n",
    b"0 0",
    b"{}",
    b'{"a":1}',
    b"[{}]",
    b'"\\',
    b"null",
    b"\xff",
]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=14))
def test_fragments_glued_at_random(parts):
    """Any body glued from JSON fragments: the one call gives the careful events or None."""
    body = b"".join(parts)
    expected = careful(body)
    assert ndjson.decode(body) == expected
    fast = read_object_lines(body)
    if fast is not None:
        assert fast == expected
    chunks = body.split(b"\n")
    fast = read_objects(chunks)
    assert fast is None or fast == one_by_one(chunks)


def test_random_event_bodies():
    """Real-looking events, some lines damaged: the same events on both paths."""
    rng = random.Random(12)
    for _ in range(200):
        lines = []
        for n in range(rng.randint(1, 30)):
            line = b'{"n":%d,"message":"m %d","l":[1,{"x":"y"}]}' % (n, rng.randrange(10**30))
            if rng.random() < 0.1:
                cut = rng.randrange(len(line))
                line = line[:cut] + rng.choice([b"\n", b"", b"}", b"\n0 0\n", b" "]) + line[cut:]
            lines.append(line)
        body = b"\n".join(lines) + rng.choice([b"", b"\n", b"\r\n"])
        assert ndjson.decode(body) == careful(body)
