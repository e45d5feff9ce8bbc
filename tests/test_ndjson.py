"""ndjson codec: Logstash's json_lines input behaviour, round trips, incremental decoding."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_logstash.codecs import ndjson
from twisted_logstash.errors import TooLargeError

FAIL = ["_jsonparsefailure"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
json_events = st.dictionaries(st.text(), json_values, max_size=6)


def test_encode_one_object_per_line():
    assert ndjson.encode([{"a": 1}, {"b": "x\ny"}]) == b'{"a":1}\n{"b":"x\\ny"}\n'


def test_encode_nothing_is_empty():
    assert ndjson.encode([]) == b""


def test_encode_empty_event():
    assert ndjson.encode([{}]) == b"{}\n"


class _Thing:
    def __str__(self):
        return "thing"


@pytest.mark.parametrize(
    ("odd", "line"),
    [
        ({"a": _Thing()}, b'{"a":"thing"}'),
        ({1: "non-str key"}, b'{"1":"non-str key"}'),
        ({"s": {2, 1}}, b'{"s":[1,2]}'),
    ],
)
def test_encode_writes_what_json_lacks_in_its_string_form(odd, line):
    """Issue 10 item 4: the one JSON policy, never a refusal of the whole body."""
    assert ndjson.encode([{"fine": 1}, odd]) == b'{"fine":1}\n' + line + b"\n"


def test_decode_objects_and_missing_last_newline():
    assert ndjson.decode(b'{"a":1}\n{"b":2}') == [{"a": 1}, {"b": 2}]


def test_decode_empty_and_blank_lines_yield_nothing():
    assert ndjson.decode(b'\n\n{"a":1}\n  \n\r\n\n') == [{"a": 1}]
    assert ndjson.decode(b"") == []


def test_decode_array_of_objects_is_one_event_each():
    assert ndjson.decode(b'[{"a":1},{"b":2}]\n{"c":3}\n') == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_decode_empty_array_yields_nothing():
    assert ndjson.decode(b"[]\n") == []


@pytest.mark.parametrize(
    "line",
    [b"not json", b"42", b'"a string"', b"null", b"true", b'{"a":1', b'[{"a":1}, 2]', b"[1,2]"],
)
def test_decode_anything_else_is_a_parse_failure_event(line):
    assert ndjson.decode(line + b"\n") == [{"message": line.decode(), "tags": FAIL}]


def test_decode_failure_keeps_neighbours():
    assert ndjson.decode(b'{"a":1}\nxx\n{"b":2}\n') == [
        {"a": 1},
        {"message": "xx", "tags": FAIL},
        {"b": 2},
    ]


def test_decode_non_utf8_is_a_failure_with_replacement_characters():
    events = ndjson.decode(b'{"m":"\xff\xfe"}\n')
    assert events == [{"message": '{"m":"\ufffd\ufffd"}', "tags": FAIL}]
    # and the failure event can be encoded again
    assert ndjson.decode(ndjson.encode(events)) == events


def test_decode_crlf_lines():
    assert ndjson.decode(b'{"a":1}\r\n{"b":2}\r\n') == [{"a": 1}, {"b": 2}]
    assert ndjson.decode(b"oops\r\n") == [{"message": "oops\r", "tags": FAIL}]


def test_decode_line():
    assert ndjson.decode_line(b'{"a":1}') == [{"a": 1}]
    assert ndjson.decode_line(b"") == []
    assert ndjson.decode_line(b"[{}, {}]") == [{}, {}]
    assert ndjson.decode_line(b"1") == [{"message": "1", "tags": FAIL}]


def test_decode_accepts_bytearray_and_memoryview():
    assert ndjson.decode(bytearray(b'{"a":1}\n')) == [{"a": 1}]
    assert ndjson.decode(memoryview(b'{"a":1}\n')) == [{"a": 1}]


@given(st.lists(json_events, max_size=8))
def test_round_trip(events):
    assert ndjson.decode(ndjson.encode(events)) == events


@given(st.binary(max_size=300))
def test_decode_arbitrary_bytes_never_raises_and_only_makes_dicts(data):
    events = ndjson.decode(data)
    assert all(type(e) is dict for e in events)
    # every failure event can go on the wire again
    ndjson.encode(events)


SAMPLE_LINES = [b'{"a":1}', b"[{}]", b"x\xff", b"", b"7", b' {"\xc3\xa9":[1]} ', b"\r"]


@given(
    st.lists(st.sampled_from(SAMPLE_LINES), max_size=8),
    st.lists(st.integers(min_value=0, max_value=200), max_size=10),
    st.booleans(),
)
def test_line_decoder_split_anywhere_equals_whole(lines, cuts, trailing):
    body = b"\n".join(lines) + (b"\n" if trailing else b"")
    decoder = ndjson.LineDecoder()
    got = []
    start = 0
    for cut in sorted(c % (len(body) + 1) for c in cuts):
        got += decoder.feed(body[start:cut])
        start = cut
    got += decoder.feed(body[start:])
    got += decoder.finish()
    assert got == ndjson.decode(body)
    assert decoder.buffered == 0


@settings(max_examples=50)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=50))
def test_line_decoder_bytewise_arbitrary_bytes(data, step):
    decoder = ndjson.LineDecoder()
    got = []
    for i in range(0, len(data), step):
        got += decoder.feed(data[i : i + step])
    got += decoder.finish()
    assert got == ndjson.decode(data)


def test_line_decoder_holds_partial_line():
    decoder = ndjson.LineDecoder()
    assert decoder.feed(b'{"a":') == []
    assert decoder.buffered == 5
    assert decoder.feed(b'1}\n{"b"') == [{"a": 1}]
    assert decoder.finish() == [{"message": '{"b"', "tags": FAIL}]
    assert decoder.finish() == []


def test_line_decoder_refuses_long_partial_line_before_newline():
    decoder = ndjson.LineDecoder(max_line_length=10)
    decoder.feed(b"0123456")
    with pytest.raises(TooLargeError):
        decoder.feed(b"7890")
    assert decoder.buffered == 0


def test_line_decoder_refuses_long_line_inside_one_chunk():
    decoder = ndjson.LineDecoder(max_line_length=10)
    with pytest.raises(TooLargeError):
        decoder.feed(b'{"a":1}\n{"long":"xxxxxxxx"}\n{"b":2}\n')


def test_line_decoder_accepts_line_at_the_limit():
    decoder = ndjson.LineDecoder(max_line_length=7)
    assert decoder.feed(b'{"a":1}\n{"b":2}\n') == [{"a": 1}, {"b": 2}]
    assert decoder.feed(b'{"c":3}') == []
    assert decoder.finish() == [{"c": 3}]
