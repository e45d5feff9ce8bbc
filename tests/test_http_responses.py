"""The transmitter's response parser: every framing, interim responses, byte-boundary
independence, and malformed input raising ResponseError. The rules it shares with the request
reader are run on both sides in test_http_codec.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_logstash.errors import CodecError
from twisted_logstash.wires.native.http import (
    MAX_CHUNK_LINE,
    IncompleteResponse,
    Response,
    ResponseError,
    ResponseParser,
)


def parse_whole(data: bytes, **kwargs) -> Response:
    parser = ResponseParser(**kwargs)
    response = parser.feed(data)
    assert response is not None, "response should be complete"
    return response


def parse_in_pieces(pieces: list[bytes], *, close: bool = False) -> tuple[Response, bytes]:
    """Feed pieces one by one; the response must appear exactly once, at the end."""
    parser = ResponseParser()
    found = None
    for piece in pieces:
        got = parser.feed(piece)
        if got is not None:
            assert found is None, "response returned twice"
            found = got
    if close and found is None:
        found = parser.connection_lost()
    assert found is not None
    return found, parser.leftover


# -- Content-Length -------------------------------------------------------------------------------


def test_content_length_body():
    response = parse_whole(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
    )
    assert response.status == 200
    assert response.reason == "OK"
    assert response.body == b"ok"
    assert response.body_length == 2
    assert response.keep_alive is True
    assert response.header("Content-Type") == "text/plain"
    assert response.header("x-missing") is None


def test_content_length_zero_completes_on_head():
    parser = ResponseParser()
    response = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert response is not None
    assert response.body == b""
    assert parser.done


def test_incomplete_body_returns_none_then_completes():
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab") is None
    assert not parser.done
    response = parser.feed(b"cde")
    assert response is not None
    assert response.body == b"abcde"


def test_repeated_equal_content_length_is_accepted():
    response = parse_whole(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok"
    )
    assert response.body == b"ok"


def test_bytes_after_the_response_are_leftover():
    parser = ResponseParser()
    response = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
    assert response is not None
    assert response.body == b"ok"
    assert parser.leftover == b"EXTRA"
    assert parser.feed(b"MORE") is None
    assert parser.leftover == b"EXTRAMORE"


def test_body_is_kept_only_up_to_keep_body():
    body = b"x" * 100
    data = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 100\r\n\r\n" + body
    response = parse_whole(data, keep_body=10)
    assert response.body == b"x" * 10
    assert response.body_length == 100


def test_bare_lf_line_ends_are_refused_as_in_requests():
    # this parser used to take bare LF line ends while the request reader refused them
    with pytest.raises(ResponseError, match="bare CR or LF"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")


def test_header_names_are_lowercased_and_values_stripped():
    response = parse_whole(b"HTTP/1.1 200 OK\r\nX-Thing:   value  \r\nContent-Length: 0\r\n\r\n")
    assert ("x-thing", "value") in response.headers


def test_reason_phrase_may_be_missing():
    response = parse_whole(b"HTTP/1.1 204\r\n\r\n")
    assert response.status == 204
    assert response.reason == ""


# -- keep-alive -----------------------------------------------------------------------------------


def test_connection_close_disables_keep_alive():
    response = parse_whole(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert response.keep_alive is False


def test_connection_close_among_tokens():
    response = parse_whole(
        b"HTTP/1.1 200 OK\r\nConnection: upgrade, Close\r\nContent-Length: 0\r\n\r\n"
    )
    assert response.keep_alive is False


def test_http10_closes_unless_keep_alive():
    plain = parse_whole(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert plain.keep_alive is False
    kept = parse_whole(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
    assert kept.keep_alive is True


# -- statuses without a body ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_ignore_content_length(status):
    parser = ResponseParser()
    data = b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status
    response = parser.feed(data)
    assert response is not None
    assert response.body == b""
    assert response.keep_alive is True


def test_101_ends_the_response_and_the_connection():
    parser = ResponseParser()
    response = parser.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n\x00other")
    assert response.status == 101
    assert response.keep_alive is False
    assert parser.leftover == b"\x00other"


def test_interim_heads_are_read_under_the_same_rules():
    with pytest.raises(ResponseError, match="bad header name"):
        ResponseParser().feed(b"HTTP/1.1 100 Continue\r\nBad Name: x\r\n\r\n")


# -- chunked --------------------------------------------------------------------------------------

CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nok\r\n"
    b"5;ext=1\r\n, yes\r\n"
    b"0\r\nX-Trailer: t\r\n\r\n"
)


def test_chunked_body_is_dechunked():
    parser = ResponseParser()
    response = parser.feed(CHUNKED)
    assert response is not None
    assert response.body == b"ok, yes"
    assert response.body_length == 7
    assert response.keep_alive is True
    assert parser.leftover == b""


def test_chunked_with_uppercase_hex_size():
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n"
    assert parse_whole(data).body == b"0123456789"


def test_chunked_not_complete_before_last_chunk_and_trailers():
    parser = ResponseParser()
    assert parser.feed(CHUNKED[:-2]) is None
    assert parser.feed(CHUNKED[-2:]) is not None


def test_unknown_transfer_coding_is_refused_as_in_requests():
    # this parser used to read a body in an unknown coding until the close
    with pytest.raises(ResponseError, match="not supported") as info:
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc")
    assert info.value.status == 501


# -- until close ----------------------------------------------------------------------------------


def test_until_close_body():
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\n\r\nsome ") is None
    assert parser.feed(b"body") is None
    response = parser.connection_lost()
    assert response.status == 200
    assert response.body == b"some body"
    assert response.keep_alive is False


def test_until_close_empty_body():
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.0 200 OK\r\n\r\n") is None
    assert parser.connection_lost().body == b""


# -- interim 1xx ----------------------------------------------------------------------------------


def test_interim_100_is_skipped():
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    response = parse_whole(data)
    assert response.status == 200
    assert response.body == b"ok"


def test_interim_alone_is_not_a_response():
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 100 Continue\r\n\r\n") is None
    with pytest.raises(IncompleteResponse):
        parser.connection_lost()


# -- incomplete -----------------------------------------------------------------------------------


def test_close_before_any_byte_is_incomplete():
    parser = ResponseParser()
    with pytest.raises(IncompleteResponse, match="before any response byte"):
        parser.connection_lost()
    assert parser.received == 0


def test_close_inside_head_is_incomplete():
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 O")
    with pytest.raises(IncompleteResponse, match="inside the response head"):
        parser.connection_lost()


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
    ],
)
def test_close_inside_body_is_incomplete(data):
    parser = ResponseParser()
    assert parser.feed(data) is None
    with pytest.raises(IncompleteResponse, match="inside the response body"):
        parser.connection_lost()


def test_incomplete_is_a_response_error_and_a_codec_error():
    assert issubclass(IncompleteResponse, ResponseError)
    assert issubclass(ResponseError, CodecError)


# -- malformed ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nName : x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    ],
)
def test_malformed_raises_response_error(data):
    with pytest.raises(ResponseError):
        ResponseParser().feed(data)


def test_head_too_large_without_end():
    parser = ResponseParser(max_head=100)
    with pytest.raises(ResponseError, match="larger than 100"):
        parser.feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200)


def test_head_too_large_with_end():
    parser = ResponseParser(max_head=100)
    with pytest.raises(ResponseError, match="larger than 100"):
        parser.feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200 + b"\r\n\r\n")


def test_chunk_size_line_too_long():
    parser = ResponseParser()
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    with pytest.raises(ResponseError, match="longer than"):
        parser.feed(head + b"1" + b";" * MAX_CHUNK_LINE)


# -- byte boundaries ------------------------------------------------------------------------------

SAMPLES = [
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
    CHUNKED,
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 204 No Content\r\n\r\n",
]


@pytest.mark.parametrize("data", SAMPLES)
def test_every_single_split_equals_whole(data):
    whole = parse_whole(data)
    for cut in range(len(data) + 1):
        response, leftover = parse_in_pieces([data[:cut], data[cut:]])
        assert response == whole
        assert leftover == b""


@pytest.mark.parametrize("data", SAMPLES)
def test_one_byte_at_a_time_equals_whole(data):
    response, leftover = parse_in_pieces([data[i : i + 1] for i in range(len(data))])
    assert response == parse_whole(data)
    assert leftover == b""


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


@st.composite
def responses(draw):
    """A response with random status, framing, body and trailing bytes."""
    status = draw(st.sampled_from([200, 201, 400, 429, 500, 503]))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    interim = draw(st.booleans())
    head = b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b""
    head += b"HTTP/1.1 %d Whatever\r\nServer: test\r\n" % status
    if framing == "length":
        data = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        sizes = draw(st.lists(st.integers(1, 50), max_size=10))
        chunks, rest = [], body
        for size in sizes:
            if not rest:
                break
            chunks.append(rest[:size])
            rest = rest[size:]
        if rest:
            chunks.append(rest)
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
        data = head + b"Transfer-Encoding: chunked\r\n\r\n" + encoded + b"0\r\n\r\n"
    else:
        data = head + b"\r\n" + body
    return status, body, framing, data


@settings(max_examples=200, deadline=None)
@given(sample=responses(), cuts=st.lists(st.integers(0, 2000), max_size=12))
def test_any_split_parses_like_whole(sample, cuts):
    status, body, framing, data = sample
    close = framing == "close"
    whole, _ = parse_in_pieces([data], close=close)
    assert whole.status == status
    assert whole.body == body[:4096]
    assert whole.body_length == len(body)
    assert whole.keep_alive is (not close)
    split, leftover = parse_in_pieces(_split(data, cuts), close=close)
    assert split == whole
    assert leftover == b""
