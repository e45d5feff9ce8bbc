"""One HTTP/1.1 codec, one strictness: every framing rule run on the request reader (the input)
and on the response reader (the transmitter), whole and byte by byte.

Each rule is one row: the header lines and body bytes of a message, and the status a server
answers for it. The same row must fail the same way on both sides, with the same words but for
the side's name; the accepted spellings must give the same body on both sides.
"""

from __future__ import annotations

import pytest

from twisted_logstash.wires.native.http import (
    END,
    MAX_CHUNK_LINE,
    NEED_DATA,
    ProtocolError,
    RequestError,
    RequestHead,
    RequestParser,
    ResponseError,
    ResponseHead,
    ResponseParser,
    ResponseReader,
)

SIDES = ("request", "response")
CHUNKED = b"Transfer-Encoding: chunked\r\n"


def message(side: str, fields: bytes, body: bytes, version: bytes = b"1.1") -> bytes:
    """A request or a response with these header lines and bytes after the blank line."""
    if side == "request":
        start = b"POST / HTTP/" + version + b"\r\nHost: x\r\n"
    else:
        start = b"HTTP/" + version + b" 200 OK\r\n"
    return start + fields + b"\r\n" + body


def pieces(data: bytes, feeding: str) -> list[bytes]:
    if feeding == "whole":
        return [data]
    return [data[i : i + 1] for i in range(len(data))]


def read_request(chunks: list[bytes], max_head: int) -> bytes:
    """The body of the one request in ``chunks``."""
    parser = RequestParser(max_head=max_head)
    body, ended = b"", False
    for chunk in chunks:
        parser.feed(chunk)
        while (event := parser.next_event()) is not NEED_DATA:
            if event is END:
                ended = True
            elif type(event) is bytes:
                body += event
            else:
                assert isinstance(event, RequestHead)
    assert ended
    return body


def read_response(chunks: list[bytes], max_head: int) -> bytes:
    """The body of the one response in ``chunks``."""
    parser = ResponseParser(max_head=max_head)
    response = None
    for chunk in chunks:
        response = parser.feed(chunk) or response
    assert response is not None
    return response.body


def read(side: str, data: bytes, feeding: str = "whole", max_head: int = 200) -> bytes:
    reader = read_request if side == "request" else read_response
    return reader(pieces(data, feeding), max_head)


def refusal(side: str, data: bytes, feeding: str, max_head: int) -> ProtocolError:
    error = RequestError if side == "request" else ResponseError
    with pytest.raises(error) as info:
        read(side, data, feeding, max_head)
    return info.value


def _rule(row):
    name, fields, body, status, *rest = row
    version = rest[0] if rest else b"1.1"
    max_head = rest[1] if len(rest) > 1 else 200
    return pytest.param(fields, body, status, version, max_head, id=name)


# (name, header lines, body, status, HTTP version, head limit)
RULES = [
    # Content-Length
    ("duplicate Content-Length", b"Content-Length: 3\r\nContent-Length: 4\r\n", b"abc", 400),
    ("Content-Length list that disagrees", b"Content-Length: 3, 4\r\n", b"abc", 400),
    ("Content-Length with a sign", b"Content-Length: +3\r\n", b"abc", 400),
    ("Content-Length in hex", b"Content-Length: 0x3\r\n", b"abc", 400),
    ("empty Content-Length", b"Content-Length: \r\n", b"", 400),
    ("Content-Length not credible", b"Content-Length: " + b"9" * 30 + b"\r\n", b"", 400),
    # Transfer-Encoding
    ("Content-Length then Transfer-Encoding", b"Content-Length: 3\r\n" + CHUNKED, b"", 400),
    ("Transfer-Encoding then Content-Length", CHUNKED + b"Content-Length: 3\r\n", b"", 400),
    ("unknown transfer coding", b"Transfer-Encoding: gzip, chunked\r\n", b"", 501),
    ("identity transfer coding", b"Transfer-Encoding: identity\r\n", b"", 501),
    ("chunked twice in one field", b"Transfer-Encoding: chunked, chunked\r\n", b"", 400),
    ("chunked in two fields", CHUNKED + CHUNKED, b"0\r\n\r\n", 400),
    ("empty Transfer-Encoding", b"Transfer-Encoding:\r\n", b"", 400),
    ("Transfer-Encoding in HTTP/1.0", CHUNKED, b"0\r\n\r\n", 400, b"1.0"),
    # field lines
    ("obsolete line folding", b"X: a\r\n folded\r\n", b"", 400),
    ("a folded first field", b" X: a\r\n", b"", 400),
    ("whitespace before the colon", b"Content-Length : 3\r\n", b"abc", 400),
    ("space in a header name", b"Bad Name: x\r\n", b"", 400),
    ("separator in a header name", b"X(y): z\r\n", b"", 400),
    ("field line without a colon", b"NoColon\r\n", b"", 400),
    ("empty header name", b": empty-name\r\n", b"", 400),
    ("NUL in a value", b"X: a\x00b\r\n", b"", 400),
    ("DEL in a value", b"X: a\x7fb\r\n", b"", 400),
    ("bare LF in the head", b"X: y\nZ: w\r\n", b"", 400),
    ("bare CR in the head", b"X: y\rZ: w\r\n", b"", 400),
    ("bare LFs ending the head", b"X: y\n\n", b"", 400),
    ("head over the limit", b"X: " + b"a" * 200 + b"\r\n", b"", 431),
    # chunk-size lines
    ("chunk size not hex", CHUNKED, b"z\r\n", 400),
    ("negative chunk size", CHUNKED, b"-1\r\n", 400),
    ("chunk size with 0x", CHUNKED, b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size missing", CHUNKED, b";ext\r\n", 400),
    ("chunk size after whitespace", CHUNKED, b" 5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size over 64 bits", CHUNKED, b"1" * 17 + b"\r\n", 400),
    ("chunk size line over the limit", CHUNKED, b"1;" + b"e" * MAX_CHUNK_LINE + b"\r\n", 400),
    ("chunk size line without end", CHUNKED, b"1" * (MAX_CHUNK_LINE + 10), 400),
    ("bare LF after a chunk size", CHUNKED, b"3\nabc\r\n0\r\n\r\n", 400),
    ("bare CR in a chunk size line", CHUNKED, b"3;a\rb\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk data longer than declared", CHUNKED, b"3\r\nabcd\r\n0\r\n\r\n", 400),
    ("bare LF after chunk data", CHUNKED, b"3\r\nabc\n0\r\n\r\n", 400),
    # trailers
    ("trailer without a colon", CHUNKED, b"0\r\nbad trailer\r\n\r\n", 400),
    ("trailer name with a space", CHUNKED, b"0\r\nBad Name: x\r\n\r\n", 400),
    ("folded trailer", CHUNKED, b"0\r\nX: a\r\n b\r\n\r\n", 400),
    ("control character in a trailer", CHUNKED, b"0\r\nX: \x01\r\n\r\n", 400),
    ("bare LF in trailers", CHUNKED, b"0\r\nX: y\n\r\n", 400),
    (
        "trailer line over the limit",
        CHUNKED,
        b"0\r\nX: " + b"a" * 120 + b"\r\n\r\n",
        400,
        b"1.1",
        100,
    ),
    (
        "trailers over the limit",
        CHUNKED,
        b"0\r\nX: " + b"a" * 60 + b"\r\nY: " + b"b" * 60 + b"\r\n\r\n",
        431,
        b"1.1",
        100,
    ),
]
RULES = [_rule(row) for row in RULES]


@pytest.mark.parametrize("feeding", ["whole", "byte by byte"])
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(("fields", "body", "status", "version", "max_head"), RULES)
def test_every_rule_refuses_on_both_sides(side, feeding, fields, body, status, version, max_head):
    data = message(side, fields, body, version)
    assert refusal(side, data, feeding, max_head).status == status


@pytest.mark.parametrize(("fields", "body", "status", "version", "max_head"), RULES)
def test_every_rule_has_the_same_words_on_both_sides(fields, body, status, version, max_head):
    request = refusal("request", message("request", fields, body, version), "whole", max_head)
    response = refusal("response", message("response", fields, body, version), "whole", max_head)
    assert request.reason.replace("request", "response") == response.reason


ACCEPTED = [
    ("Content-Length", b"Content-Length: 5\r\n", b"hello", b"hello"),
    (
        "repeated equal Content-Length",
        b"Content-Length: 2\r\nContent-Length: 2, 2\r\n",
        b"ok",
        b"ok",
    ),
    ("Content-Length with leading zeros", b"Content-Length: 002\r\n", b"ok", b"ok"),
    ("Content-Length 0", b"Content-Length: 0\r\n", b"", b""),
    ("chunked in any case", b"Transfer-Encoding: Chunked\r\n", b"2\r\nok\r\n0\r\n\r\n", b"ok"),
    (
        "chunk extensions",
        CHUNKED,
        b"5;name=value\r\nhello\r\n6 ; other\r\n world\r\n0\r\n\r\n",
        b"hello world",
    ),
    (
        "chunk sizes in either case",
        CHUNKED,
        b"a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n",
        b"0123456789" * 2,
    ),
    ("trailers", CHUNKED, b"2\r\nok\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n", b"ok"),
    (
        "obs-text and empty values",
        b"X-Name: caf\xe9\r\nX-Empty:\r\nContent-Length: 2\r\n",
        b"ok",
        b"ok",
    ),
    ("values trimmed", b"X:\t a \t\r\nContent-Length:  2 \r\n", b"ok", b"ok"),
]


@pytest.mark.parametrize("feeding", ["whole", "byte by byte"])
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(
    ("fields", "body", "expected"), [pytest.param(*row[1:], id=row[0]) for row in ACCEPTED]
)
def test_accepted_spellings_read_the_same_on_both_sides(side, feeding, fields, body, expected):
    assert read(side, message(side, fields, body), feeding) == expected


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("extra", [0, 1, 2, 3])
def test_a_head_of_exactly_the_limit_is_taken_however_its_end_arrives(side, extra):
    data = message(side, b"Content-Length: 1\r\nX: ", b"")[:-2]  # up to the value
    limit = len(data) + extra
    data += b"a" * extra + b"\r\n\r\nb"
    assert read(side, data, "whole", limit) == b"b"
    assert read(side, data, "byte by byte", limit) == b"b"
    too_long = data.replace(b"X: ", b"X: a")
    for feeding in ("whole", "byte by byte"):
        assert refusal(side, too_long, feeding, limit).status == 431


@pytest.mark.parametrize("side", SIDES)
def test_a_chunk_size_line_of_exactly_the_limit_is_taken_however_its_crlf_is_cut(side):
    line = b"1;" + b"e" * (MAX_CHUNK_LINE - 2)
    data = message(side, CHUNKED, line + b"\r\nx\r\n0\r\n\r\n")
    cut = data.index(line) + len(line) + 1  # between the CR and the LF ending the line
    reader = read_request if side == "request" else read_response
    assert reader([data], 200) == reader([data[:cut], data[cut:]], 200) == b"x"


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"Keep-Alive, Close", False),
        (b"1.1", b"upgrade, close", False),
        (b"1.1", b"keep-alive", True),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"Keep-Alive", True),
        (b"1.0", b"keep-alive, close", False),
    ],
)
def test_keep_alive_is_decided_the_same_on_both_sides(version, connection, keep_alive):
    fields = b"Content-Length: 0\r\n"
    if connection is not None:
        fields += b"Connection: " + connection + b"\r\n"
    parser = RequestParser()
    parser.feed(message("request", fields, b"", version))
    assert parser.next_event().keep_alive is keep_alive
    response = ResponseParser().feed(message("response", fields, b"", version))
    assert response.keep_alive is keep_alive


def test_the_response_reader_speaks_in_the_request_readers_events():
    reader = ResponseReader()
    reader.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nsome")
    interim = reader.next_event()
    assert isinstance(interim, ResponseHead) and interim.interim
    assert reader.next_event() is END
    final = reader.next_event()
    assert (final.status, final.content_length, final.chunked, final.keep_alive) == (
        200,
        None,
        False,
        False,
    )
    assert reader.next_event() == b"some"
    assert reader.next_event() is NEED_DATA
    reader.feed(b" body")
    assert reader.next_event() == b" body"
    reader.end_of_stream()
    assert reader.next_event() is END


def test_bytes_after_a_message_stay_for_the_caller():
    reader = ResponseReader()
    reader.feed(b"HTTP/1.1 204 No Content\r\n\r\nextra")
    assert reader.next_event().status == 204
    assert reader.next_event() is END
    assert reader.buffered == 5
    assert reader.take_buffered() == b"extra"
    assert reader.buffered == 0
