"""The sans-IO request parser: framings, pipelining, limits, smuggling, split anywhere."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_logstash.wires.native.http import (
    END,
    MAX_CHUNK_LINE,
    NEED_DATA,
    RequestError,
    RequestHead,
    RequestParser,
)

MANTICORE = (
    b"POST / HTTP/1.1\r\n"
    b"Content-Type: application/x-ndjson\r\n"
    b"Content-Encoding: gzip\r\n"
    b"Content-Length: 5\r\n"
    b"Host: 127.0.0.1:9800\r\n"
    b"Connection: Keep-Alive\r\n"
    b"User-Agent: Manticore 0.9.1\r\n"
    b"Accept-Encoding: gzip,deflate\r\n"
    b"\r\n"
    b"hello"
)


def drain(parser: RequestParser) -> list:
    """Every event available now, body pieces merged, as comparable tuples."""
    out: list = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA:
            return out
        if type(event) is bytes:
            assert event, "empty body piece"
            if out and type(out[-1]) is bytes:
                out[-1] += event
            else:
                out.append(event)
        elif event is END:
            out.append("END")
        else:
            assert isinstance(event, RequestHead)
            out.append(
                (
                    event.method,
                    event.target,
                    event.version,
                    tuple(event.headers),
                    event.keep_alive,
                    event.expect_continue,
                    event.content_length,
                    event.chunked,
                )
            )


def parse(data: bytes, **kwargs) -> list:
    parser = RequestParser(**kwargs)
    parser.feed(data)
    return drain(parser)


def status_of(data: bytes, **kwargs) -> int:
    with pytest.raises(RequestError) as info:
        parse(data, **kwargs)
    return info.value.status


def test_manticore_request():
    parser = RequestParser()
    parser.feed(MANTICORE)
    head = parser.next_event()
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.version) == (b"POST", b"/", b"HTTP/1.1")
    assert head.get(b"content-encoding") == b"gzip"
    assert head.get(b"content-type") == b"application/x-ndjson"
    assert head.get(b"x-missing") is None
    assert head.headers[0] == (b"content-type", b"application/x-ndjson")
    assert head.keep_alive and not head.chunked and not head.expect_continue
    assert head.content_length == 5
    assert parser.next_event() == b"hello"
    assert parser.next_event() is END
    assert parser.next_event() is NEED_DATA
    assert not parser.in_message


def test_body_arriving_whole_is_passed_on_without_copy():
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    parser.next_event()
    piece = b"0123456789"
    parser.feed(piece)
    assert parser.next_event() is piece


def test_body_in_pieces():
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab")
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.next_event() == b"ab"
    assert parser.next_event() is NEED_DATA
    assert parser.in_message
    parser.feed(b"cdefPOST")
    assert parser.next_event() == b"cdef"
    assert parser.next_event() is END
    assert parser.next_event() is NEED_DATA
    assert parser.buffered == 4


def test_no_body():
    assert parse(b"POST /x HTTP/1.1\r\nHost: x\r\n\r\n")[1:] == ["END"]
    assert parse(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")[1:] == ["END"]


def test_chunked_with_extensions_and_trailers():
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"6 ; other\r\n world\r\n"
        b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
    )
    events = parse(data)
    assert events[0][6:] == (None, True)
    assert events[1:] == [b"hello world", "END"]


def test_chunk_sizes_in_hex_any_case():
    data = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n" + b"x" * 10
    data += b"\r\n0\r\n\r\n"
    assert parse(data)[1:] == [b"x" * 10, "END"]


def test_pipelined_requests_in_order():
    one = b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
    two = b"PUT /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n"
    three = b"POST /3 HTTP/1.1\r\nHost: x\r\n\r\n"
    events = parse(one + two + three)
    assert [e[1] for e in events if type(e) is tuple] == [b"/1", b"/2", b"/3"]
    assert [e for e in events if type(e) is not tuple] == [b"a", "END", b"b", "END", "END"]


def test_empty_lines_before_a_request_are_ignored():
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na\r\n"
    data += b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"
    events = parse(data)
    assert [e for e in events if type(e) is not tuple] == [b"a", "END", "END"]
    assert len(events) == 5


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"HTTP/1.1", None, True),
        (b"HTTP/1.1", b"close", False),
        (b"HTTP/1.1", b"Keep-Alive, Close", False),
        (b"HTTP/1.0", None, False),
        (b"HTTP/1.0", b"keep-alive", True),
        (b"HTTP/1.0", b"Keep-Alive", True),
    ],
)
def test_keep_alive(version, connection, keep_alive):
    head = b"POST / " + version + b"\r\nHost: x\r\n"
    if connection:
        head += b"Connection: " + connection + b"\r\n"
    assert parse(head + b"\r\n")[0][4] is keep_alive


def test_http10_needs_no_host():
    assert parse(b"POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nz")[1:] == [b"z", "END"]


def test_expect_continue():
    head = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"
    assert parse(head)[0][5] is True
    head10 = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    assert parse(head10)[0][5] is False


def test_header_values_trimmed_and_names_lowered():
    events = parse(b"POST / HTTP/1.1\r\nHOST:\t x \t\r\nX-Empty:\r\n\r\n")
    assert events[0][3] == ((b"host", b"x"), (b"x-empty", b""))


def test_obs_text_in_values_is_kept():
    events = parse(b"POST / HTTP/1.1\r\nHost: x\r\nX-Name: caf\xe9\r\n\r\n")
    assert events[0][3][1] == (b"x-name", b"caf\xe9")


# -- refusals -------------------------------------------------------------------------------------

HOST = b"Host: x\r\n"


@pytest.mark.parametrize(
    "data",
    [
        # smuggling: both framings, conflicting lengths, odd spellings
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\n Content-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        # bare line ends
        b"POST / HTTP/1.1\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\n\n",
        # request line
        b"POST  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /\r\nHost: x\r\n\r\n",
        b"PO(ST / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1x\r\nHost: x\r\n\r\n",
        b"POST / http/1.1\r\nHost: x\r\n\r\n",
        # host
        b"POST / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        # control characters, missing colon
        b"POST / HTTP/1.1\r\nHost: x\x00\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",
    ],
)
def test_malformed_heads_are_400(data):
    assert status_of(data) == 400


CHUNKED = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "body",
    [
        b"z\r\n",  # not hex
        b"-1\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b";ext\r\n",  # no size
        b"3\r\nabcd\r\n",  # data longer than declared
        b"3\nabc\r\n",  # bare LF
        b"3\r\nabc\n0\r\n\r\n",
        b"11111111111111111\r\n",  # more than 64 bits
        b"0\r\nbad trailer\r\n\r\n",
        b"0\r\nX: y\n\r\n",
        b"1" * 5000,  # chunk size line without end
    ],
)
def test_bad_chunk_framing_is_400(body):
    assert status_of(CHUNKED + body) == 400


def test_unknown_transfer_coding_is_501():
    assert status_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n") == (
        501
    )
    assert status_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n") == 501


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2"])
def test_other_versions_are_505(version):
    assert status_of(b"POST / " + version + b"\r\nHost: x\r\n\r\n") == 505


def test_http2_preface_is_505():
    assert status_of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == 505


def test_unknown_expectation_is_417():
    assert status_of(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n") == 417


def test_declared_length_over_limit_is_413_before_the_body():
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n"
    assert status_of(data, max_body=100) == 413
    assert parse(data[:-4].replace(b"101", b"100") + b"\r\n\r\n", max_body=100)[0][6] == 100
    huge = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 30 + b"\r\n\r\n"
    assert status_of(huge, max_body=100) == 413
    assert status_of(huge) == 400


def test_chunked_body_over_limit_is_413_before_its_data():
    parser = RequestParser(max_body=10)
    parser.feed(CHUNKED + b"6\r\nabcdef\r\n")
    drain(parser)
    parser.feed(b"5\r\n")
    with pytest.raises(RequestError) as info:
        parser.next_event()
    assert info.value.status == 413
    with pytest.raises(RequestError):  # the parser stays dead
        parser.next_event()


def test_head_over_limit_is_431():
    parser = RequestParser(max_head=100)
    parser.feed(b"POST / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 60)
    assert parser.next_event() is NEED_DATA
    parser.feed(b"a" * 60)
    with pytest.raises(RequestError) as info:
        parser.next_event()
    assert info.value.status == 431
    long_head = b"POST / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 200 + b"\r\n\r\n"
    assert status_of(long_head, max_head=100) == 431


def test_trailers_over_limit_are_431():
    data = CHUNKED + b"0\r\n" + b"X: " + b"a" * 90 + b"\r\nY: " + b"b" * 90 + b"\r\n\r\n"
    assert status_of(data, max_head=150) == 431


def test_error_carries_reason():
    with pytest.raises(RequestError) as info:
        parse(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert "Content-Length" in info.value.reason


# -- split anywhere ------------------------------------------------------------------------------

tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
values = st.binary(max_size=20).map(
    lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip(b" \t")
)


@st.composite
def requests(draw):
    method = draw(st.sampled_from([b"POST", b"PUT", b"GET"]))
    target = b"/" + draw(tokens).encode()
    headers = [(b"Host", b"127.0.0.1:9800")]
    for name, value in draw(st.lists(st.tuples(tokens, values), max_size=4)):
        if name.lower() not in ("content-length", "transfer-encoding", "host", "expect"):
            headers.append((name.encode(), value))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked", "none"]))
    if framing == "none":
        body = b""
    elif framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    else:
        headers.append((b"Transfer-Encoding", b"chunked"))
    head = b"%s %s HTTP/1.1\r\n" % (method, target)
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    if framing != "chunked":
        return head + body
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return head + chunks + b"0\r\n\r\n"


@settings(max_examples=300, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=4), st.data())
def test_split_anywhere_parses_the_same(stream, data):
    whole = b"".join(stream)
    expected = parse(whole)
    assert expected.count("END") == len(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=12)))
    parser = RequestParser()
    got: list = []
    for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True):
        parser.feed(whole[a:b])
        for event in drain(parser):
            if type(event) is bytes and got and type(got[-1]) is bytes:
                got[-1] += event
            else:
                got.append(event)
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_arbitrary_bytes_raise_only_request_error(junk, cuts):
    parser = RequestParser(max_head=200, max_body=1000)
    try:
        for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(junk)], strict=False):
            parser.feed(junk[a:b])
            drain(parser)
    except RequestError as error:
        assert error.status in {400, 413, 417, 431, 501, 505}


@settings(max_examples=200, deadline=None)
@given(requests(), st.binary(max_size=200))
def test_valid_request_then_junk(request, junk):
    parser = RequestParser(max_head=300, max_body=1000)
    parser.feed(request + junk)
    try:
        events = drain(parser)
    except RequestError as error:
        assert error.status in {400, 413, 417, 431, 501, 505}
    else:
        assert "END" in events


def _fed_byte_by_byte(data: bytes, **kwargs) -> list:
    parser = RequestParser(**kwargs)
    got: list = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        for event in drain(parser):
            if type(event) is bytes and got and type(got[-1]) is bytes:
                got[-1] += event
            else:
                got.append(event)
    return got


@pytest.mark.parametrize("size", [197, 198, 199, 200])
def test_head_within_the_limit_is_taken_however_its_end_arrives(size):
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nX: "
    head += b"a" * (size - len(head))
    data = head + b"\r\n\r\nb"
    expected = parse(data, max_head=200)
    assert expected[-1] == "END"
    assert _fed_byte_by_byte(data, max_head=200) == expected
    assert status_of(b"a" + data, max_head=size) == 431
    with pytest.raises(RequestError) as info:
        _fed_byte_by_byte(b"a" + data, max_head=size)
    assert info.value.status == 431


def test_chunk_size_line_of_exactly_the_limit_is_taken_however_its_end_arrives():
    line = b"1;" + b"e" * (MAX_CHUNK_LINE - 2)
    data = CHUNKED + line + b"\r\nx\r\n0\r\n\r\n"
    expected = parse(data)
    assert expected[-2:] == [b"x", "END"]
    cut = len(CHUNKED) + len(line) + 1  # between the CR and the LF ending the line
    parser = RequestParser()
    parser.feed(data[:cut])
    got = drain(parser)
    parser.feed(data[cut:])
    got += drain(parser)
    assert got == expected
