"""Cutting an encoded batch by bytes: the rule, and both transmitters' `encode_within`."""

from __future__ import annotations

import orjson
import pytest
from twisted.internet.task import Clock

from twisted_logstash.codecs import compression, ndjson
from twisted_logstash.codecs.bytebound import DEFAULT_BATCH_MAX_BYTES, cut
from twisted_logstash.wires.lumberjack.client import LumberjackTransmitter
from twisted_logstash.wires.native.client import HttpTransmitter


@pytest.mark.parametrize(
    ("lengths", "max_bytes", "counts"),
    [
        ([], 10, []),
        ([3, 3, 3], 10, [3]),
        ([3, 3, 3, 3], 10, [3, 1]),
        ([5, 5, 5], 10, [2, 1]),
        ([20], 10, [1]),  # over the bound alone: a part of its own
        ([1, 20, 1], 10, [1, 1, 1]),
        ([1, 1, 20, 1, 1], 10, [2, 1, 2]),
    ],
)
def test_cut(lengths, max_bytes, counts):
    assert cut(lengths, max_bytes) == counts


def test_the_default_is_well_under_a_receivers_100_mib():
    assert DEFAULT_BATCH_MAX_BYTES == 20 * 1024 * 1024


EVENTS = [{"n": n, "text": "x" * size} for n, size in enumerate([10, 10, 10, 100, 10])]
LIMIT = 60  # {"n":0,"text":"xxxxxxxxxx"} is 27 bytes: two fit; the 100-byte one goes alone


def test_native_encode_within_cuts_the_body_and_keeps_one_part_when_all_fit():
    t = HttpTransmitter(Clock(), lambda host: None)
    parts = t.encode_within(EVENTS, LIMIT)
    assert [count for count, _ in parts] == [2, 1, 1, 1]
    bodies = [ndjson.decode(compression.decompress(p, "gzip", 1 << 20)) for _, p in parts]
    assert [e for body in bodies for e in body] == EVENTS
    [(count, payload)] = t.encode_within(EVENTS, 10_000)
    assert count == 5 and payload == t.encode(EVENTS)


def test_framed_encode_within_cuts_the_windows_and_keeps_one_part_when_all_fit():
    t = LumberjackTransmitter(Clock(), lambda host: None)
    parts = t.encode_within(EVENTS, LIMIT)
    assert [count for count, _ in parts] == [2, 1, 1, 1]
    assert [orjson.loads(d) for _, p in parts for d in p.documents] == EVENTS
    [(count, payload)] = t.encode_within(EVENTS, 10_000)
    assert count == 5 and payload.documents == t.encode(EVENTS).documents


@pytest.mark.parametrize("level", [3, None])
def test_framed_windows_from_encode_within_are_the_windows_of_encode(level):
    t = LumberjackTransmitter(Clock(), lambda host: None)
    [(_, within)] = t.encode_within(EVENTS, 10_000)
    plain = t.encode(EVENTS)
    assert within.window(level) == plain.window(level)
    within.acked = plain.acked = 2  # a partial ACK: the next window holds only the rest
    assert within.window(level) == plain.window(level)
    assert within.window(level) != t.encode(EVENTS).window(level)
