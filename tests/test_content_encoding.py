"""Issue 11: a request naming more than one content coding is refused, never read last-wins.

Two ``Content-Encoding`` lines mean, by RFC 9110 (8.4), a list: codings applied one after the
other. The input decodes one coding: reading only the last line would hand the sink bytes still
compressed (or fail on the wrong decoder), so a request with more than one line, or one line
listing more than one coding, is answered ``400`` with the reason, whatever the values (even
twice the same: that means compressed twice). The body is read and dropped; the connection
stays usable.
"""

from __future__ import annotations

import gzip

import pytest
from test_native_server import Harness, fire_all, ndjson, parse, request

from twisted_logstash.wires.native.server import MULTIPLE_CODINGS

BODY = gzip.compress(ndjson({"message": "a"}))


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Encoding: gzip\r\nContent-Encoding: gzip\r\n",
        b"Content-Encoding: identity\r\nContent-Encoding: gzip\r\n",
        b"Content-Encoding: gzip\r\nContent-Encoding: identity\r\n",
        b"Content-Encoding: gzip\r\ncontent-encoding: GZIP\r\n",
        b"Content-Encoding: gzip, gzip\r\n",
        b"Content-Encoding: gzip,identity\r\n",
        b"Content-Encoding: br, gzip\r\n",
    ],
)
def test_more_than_one_content_coding_is_400_and_the_body_is_dropped(headers):
    h = Harness()
    h.send(request(BODY, headers=headers))
    response = parse(h.take())
    assert response.status == 400
    assert response.body == MULTIPLE_CODINGS.encode() + b"\n"
    assert h.sink.batches == []
    # the connection stays usable: the next request is read as usual
    h.send(request(BODY, encoding=b"gzip"))
    assert [e["message"] for e in h.sink.events()] == ["a"]
    fire_all(h.sink)
    assert parse(h.take()).status == 200


def test_one_content_coding_line_is_still_read():
    h = Harness()
    h.send(request(BODY, headers=b"Content-Encoding:  GZIP \r\n"))
    fire_all(h.sink)
    assert parse(h.take()).status == 200
    assert [e["message"] for e in h.sink.events()] == ["a"]
