"""Stamping and decorating events the way a Logstash input does."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from twisted_logstash.codecs.events import Decorations, field_path, prepare, sprintf, timestamp_now

NOW = "2026-11-23T10:00:00.123Z"


def test_timestamp_now_reads_the_reactor_clock():
    clock = Clock()
    clock.advance(1_795_428_000.1234)
    assert timestamp_now(clock) == "2026-11-23T10:00:00.123Z"
    clock.advance(0.9)
    assert timestamp_now(clock) == "2026-11-23T10:00:01.023Z"


def test_prepare_stamps_missing_timestamp_and_version_only():
    events = [
        {"message": "a"},
        {"message": "b", "@timestamp": "2020-01-01T00:00:00.000Z", "@version": "2"},
        {"message": "c", "@timestamp": None, "@version": None},
    ]
    same = prepare(events, NOW)
    assert same is events
    assert events == [
        {"message": "a", "@timestamp": NOW, "@version": "1"},
        {"message": "b", "@timestamp": "2020-01-01T00:00:00.000Z", "@version": "2"},
        # Logstash: a null @timestamp is replaced, a present @version (even null) is kept.
        {"message": "c", "@timestamp": NOW, "@version": None},
    ]


def test_no_decorations_change_nothing_else():
    event = {"message": "x", "tags": ["a"], "type": "t"}
    prepare([event], NOW, None)
    prepare([event], NOW, Decorations())
    assert event == {"message": "x", "tags": ["a"], "type": "t", "@timestamp": NOW, "@version": "1"}


def test_type_is_set_only_when_absent():
    decorations = Decorations(type="web")
    events = prepare([{}, {"type": "db"}, {"type": None}], NOW, decorations)
    assert [e["type"] for e in events] == ["web", "db", None]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, ["x", "y"]),
        (["a"], ["a", "x", "y"]),
        (["x"], ["x", "x", "y"]),  # Logstash's add_tags keeps duplicates
        ("solo", ["solo", "x", "y"]),  # a string becomes a list, not "soloxy"
        (3, [3, "x", "y"]),
    ],
)
def test_tags_are_appended(before, after):
    event = {} if before is None else {"tags": before}
    prepare([event], NOW, Decorations(tags=("x", "y")))
    assert event["tags"] == after


def test_tags_are_appended_to_a_new_list_so_shared_lists_stay_intact():
    shared = ["a"]
    events = [{"tags": shared}, {"tags": shared}]
    prepare(events, NOW, Decorations(tags=("x",)))
    assert shared == ["a"]
    assert events[0]["tags"] == events[1]["tags"] == ["a", "x"]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({}, "v"),
        ({"f": "old"}, ["old", "v"]),
        ({"f": ["a", "b"]}, ["a", "b", "v"]),
        ({"f": None}, ["v"]),
        ({"f": 5}, [5, "v"]),
        ({"f": {"k": 1}}, [["k", 1], "v"]),  # Ruby's Array(hash)
    ],
)
def test_add_field_sets_an_absent_field_and_appends_to_a_present_one(before, after):
    event = dict(before)
    prepare([event], NOW, Decorations(add_field=(("f", "v"),)))
    assert event["f"] == after


def test_add_field_with_two_values_for_one_name_gives_a_list():
    event = {}
    prepare([event], NOW, Decorations(add_field=(("f", "1"), ("f", "2"))))
    assert event["f"] == ["1", "2"]


def test_add_field_reaches_nested_fields_by_reference():
    event = {"host": {"name": "web-1"}}
    prepare([event], NOW, Decorations(add_field={"[host][role]": "front", "[a][b][c]": "d"}))
    assert event["host"] == {"name": "web-1", "role": "front"}
    assert event["a"] == {"b": {"c": "d"}}


def test_add_field_cannot_reach_into_a_scalar_and_leaves_it():
    event = {"host": "web-1"}
    prepare([event], NOW, Decorations(add_field={"[host][role]": "front"}))
    assert event["host"] == "web-1"


def test_decorations_run_in_logstash_order_type_fields_then_tags():
    decorations = Decorations(
        type="web",
        tags=("from-%{[meta][src]}",),
        add_field=(("[meta][src]", "%{type}"), ("tags", "added")),
    )
    event = prepare([{"message": "m"}], NOW, decorations)[0]
    assert event["meta"] == {"src": "web"}
    assert event["tags"] == ["added", "from-web"]


def test_sprintf():
    event = {
        "a": "x",
        "n": 3,
        "b": True,
        "l": ["p", 1],
        "d": {"k": "v"},
        "z": None,
        "nest": {"in": "deep"},
        "@timestamp": "2026-11-23T10:00:00.123Z",
    }
    assert sprintf(event, "plain") == "plain"
    assert sprintf(event, "%{a}-%{n}-%{b}") == "x-3-true"
    assert sprintf(event, "%{l}|%{d}") == 'p,1|{"k":"v"}'
    assert sprintf(event, "%{[nest][in]} %{nest}") == 'deep {"in":"deep"}'
    assert sprintf(event, "%{missing} %{z} %{[nest][no]}") == "%{missing} %{z} %{[nest][no]}"
    assert sprintf(event, "%{+%s}") == "1795428000"
    assert sprintf(event, "%{+YYYY.MM.dd}") == "%{+YYYY.MM.dd}"
    assert sprintf(event, "100%{ and %{a}") == "100%{ and %{a}"  # as Logstash: "%{ and %{a"
    assert sprintf(event, "%{a") == "%{a"


def test_field_path():
    assert field_path("a") == ("a",)
    assert field_path("[a]") == ("a",)
    assert field_path("[a][b]") == ("a", "b")
    assert field_path("[a][") == ("[a][",)
    assert field_path("@timestamp") == ("@timestamp",)


def test_decorations_accept_configuration_shapes_and_are_hashable():
    decorations = Decorations(type="t", tags=["a", "b"], add_field={"f": "v"})
    assert decorations.tags == ("a", "b")
    assert decorations.add_field == (("f", "v"),)
    assert Decorations(tags="one").tags == ("one",)
    assert hash(decorations) == hash(Decorations("t", ("a", "b"), (("f", "v"),)))
    assert not Decorations()
    with pytest.raises(TypeError):
        Decorations(tags=(1,))
    with pytest.raises(TypeError):
        Decorations(type=5)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


@settings(max_examples=50, deadline=None)
@given(
    events=st.lists(st.dictionaries(st.sampled_from(["tags", "type", "f", "m"]), json_values)),
    tags=st.lists(st.text(max_size=4), max_size=3),
    fields=st.lists(st.tuples(st.sampled_from(["f", "g", "[f][x]"]), st.text(max_size=4))),
    kind=st.none() | st.text(max_size=4),
)
def test_decorating_never_loses_what_the_event_held(events, tags, fields, kind):
    originals = copy.deepcopy(events)
    prepare(events, NOW, Decorations(kind, tuple(tags), tuple(fields)))
    for before, after in zip(originals, events, strict=True):
        assert after["@version"] == before.get("@version", "1")
        assert after["@timestamp"] == (before.get("@timestamp") or NOW)
        if tags:
            old = before.get("tags")
            prefix = [] if old is None else old if isinstance(old, list) else [old]
            assert after["tags"][: len(prefix)] == prefix
            assert len(after["tags"]) == len(prefix) + len(tags)
        if kind is not None:
            assert after["type"] == before.get("type", kind)
        for key in ("m",):
            assert after.get(key) == before.get(key)


def test_prepare_calls_a_timestamp_function_only_when_an_event_lacks_one():
    calls = []

    def now() -> str:
        calls.append(1)
        return NOW

    full = [{"@timestamp": "t", "@version": "1", "n": n} for n in range(3)]
    assert prepare(full, now) == [{"@timestamp": "t", "@version": "1", "n": n} for n in range(3)]
    assert calls == []
    assert prepare([*full, {"@version": "2"}], now)[-1] == {"@version": "2", "@timestamp": NOW}
    assert prepare([{"@timestamp": "t"}], now) == [{"@timestamp": "t", "@version": "1"}]
    assert calls == [1]


def test_prepare_takes_other_mappings():
    from collections import UserDict

    event = UserDict({"message": "m"})
    prepare([event], NOW)
    assert dict(event) == {"message": "m", "@timestamp": NOW, "@version": "1"}


def test_prepare_compares_a_timestamp_with_none_by_identity():
    class Odd:
        def __eq__(self, other):
            raise ValueError("ambiguous")

        __hash__ = object.__hash__

    odd = Odd()
    events = prepare([{"@timestamp": odd, "@version": "1"}], NOW)
    assert events[0]["@timestamp"] is odd
