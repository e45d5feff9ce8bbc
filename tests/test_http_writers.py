"""The bytes the codec writes (the input's answers, byte for byte as the input has always sent
them) and the connection decisions behind them; the request encoder is tested with the client
(test_native_client.py)."""

from __future__ import annotations

import pytest

from twisted_logstash.wires.native.http import (
    CONTINUE,
    OK,
    OK_CLOSE,
    OK_KEEP_ALIVE,
    RequestError,
    RequestParser,
    ResponseParser,
    connection_header,
    error_response,
    expects_continue,
    keep_alive,
    ok_response,
    wants_continue,
)

OK_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nAccept: application/x-ndjson\r\n"
    b"Content-Length: 2\r\n"
)


def test_ok_answers():
    assert OK == OK_HEAD + b"\r\nok"
    assert OK_KEEP_ALIVE == OK_HEAD + b"Connection: keep-alive\r\n\r\nok"
    assert OK_CLOSE == OK_HEAD + b"Connection: close\r\n\r\nok"
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize(
    ("close", "http10", "answer"),
    [
        (False, False, OK),
        (False, True, OK_KEEP_ALIVE),
        (True, False, OK_CLOSE),
        (True, True, OK_CLOSE),
    ],
)
def test_ok_response_follows_the_connection(close, http10, answer):
    assert ok_response(close, http10) is answer


def test_error_response_bytes():
    assert error_response(429, "too many requests waiting; retry later", False) == (
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 39\r\n\r\ntoo many requests waiting; retry later\n"
    )
    assert error_response(401, "missing or wrong credentials", True) == (
        b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 29\r\n"
        b'WWW-Authenticate: Basic realm="Logstash HTTP Input"\r\n'
        b"Connection: close\r\n\r\nmissing or wrong credentials\n"
    )
    assert error_response(405, "only POST and PUT are accepted", False, True) == (
        b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 31\r\nAllow: POST, PUT\r\n"
        b"Connection: keep-alive\r\n\r\nonly POST and PUT are accepted\n"
    )
    assert error_response(418, "caf\u00e9", False).startswith(b"HTTP/1.1 418 Error\r\n")
    assert error_response(418, "caf\u00e9", False).endswith(b"\r\n\r\ncaf\xc3\xa9\n")


@pytest.mark.parametrize("status", [400, 401, 405, 413, 415, 417, 429, 431, 500, 501, 503, 505])
@pytest.mark.parametrize(("close", "http10"), [(False, False), (False, True), (True, False)])
def test_every_answer_reads_back_with_the_response_reader(status, close, http10):
    """What the input writes, the transmitter reads under the same rules."""
    response = ResponseParser().feed(error_response(status, "why", close, http10))
    assert response is not None
    assert (response.status, response.body, response.keep_alive) == (status, b"why\n", not close)
    for answer in (OK, OK_KEEP_ALIVE, OK_CLOSE):
        assert ResponseParser().feed(answer).body == b"ok"


@pytest.mark.parametrize(
    ("close", "http10", "line"),
    [
        (False, False, b""),
        (False, True, b"Connection: keep-alive\r\n"),
        (True, False, b"Connection: close\r\n"),
        (True, True, b"Connection: close\r\n"),
    ],
)
def test_connection_header(close, http10, line):
    assert connection_header(close, http10) == line


@pytest.mark.parametrize(
    ("http10", "values", "expected"),
    [
        (False, [], True),
        (True, [], False),
        (False, [b"close"], False),
        (True, [b"Keep-Alive"], True),
        (True, [b"keep-alive", b"close"], False),
        (False, [b"upgrade, CLOSE"], False),
        (True, [b"upgrade,  keep-alive"], True),
    ],
)
def test_keep_alive(http10, values, expected):
    assert keep_alive(http10, values) is expected


def test_expects_continue():
    assert expects_continue(False, b"100-Continue") is True
    assert expects_continue(True, b"100-continue") is False  # RFC 9110 10.1.1
    with pytest.raises(RequestError) as info:
        parser = RequestParser()
        parser.feed(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n")
        parser.next_event()
    assert info.value.status == 417


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (b"Expect: 100-continue\r\nContent-Length: 5\r\n", True),
        (b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n", True),
        (b"Expect: 100-continue\r\nContent-Length: 0\r\n", False),
        (b"Expect: 100-continue\r\n", False),
        (b"Content-Length: 5\r\n", False),
    ],
)
def test_wants_continue_only_when_a_body_is_waited_for(fields, expected):
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert wants_continue(parser.next_event()) is expected
