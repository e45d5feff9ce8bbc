"""The classifier of transport/diagnosis.py, without I/O: every answer prefix, the close, each
OpenSSL reason and each certificate refusal, for both wires with TLS on and off."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from OpenSSL import SSL
from support_transmitter import StringEndpoint
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure

from twisted_logstash.security.failures import NOT_TLS_REASONS, TLSVerificationError
from twisted_logstash.transport import diagnosis
from twisted_logstash.transport.diagnosis import HTTP, LUMBERJACK, diagnose
from twisted_logstash.transport.hosts import Host
from twisted_logstash.wires.native.client import HttpTransmitter
from twisted_logstash.wires.native.http import (
    RequestError,
    RequestParser,
    ResponseError,
    ResponseParser,
)

HOST = Host("10.0.0.1", 9800)
AT = "the receiver at 10.0.0.1:9800"
WIRES = (HTTP, LUMBERJACK)


def cause(protocol: str, tls: bool, **seen) -> str | None:
    hint = diagnose(HOST, protocol, tls, **seen)
    if hint is not None:
        assert hint.text.startswith(AT + " ")
    return None if hint is None else hint.cause


# -- the first bytes answered -------------------------------------------------------------------

ALERT = bytes.fromhex("150303000202 28")  # a TLS 1.2 fatal alert: handshake_failure
SERVER_HELLO = bytes.fromhex("160303007a02")
HTTP_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
ACK = b"2A\x00\x00\x00\x01"


@pytest.mark.parametrize(
    ("answer", "protocol", "tls", "expected"),
    [
        # a. a plain sender at a TLS port answered by a TLS record
        (ALERT, HTTP, False, diagnosis.SPEAKS_TLS),
        (ALERT, LUMBERJACK, False, diagnosis.SPEAKS_TLS),
        (SERVER_HELLO, HTTP, False, diagnosis.SPEAKS_TLS),
        (ALERT[:1], LUMBERJACK, False, diagnosis.SPEAKS_TLS),
        # c. a native sender answered bytes that are not HTTP
        (ACK, HTTP, False, diagnosis.NOT_HTTP),
        (ACK, HTTP, True, diagnosis.NOT_HTTP),
        (b"\x00", HTTP, False, diagnosis.NOT_HTTP),
        (b"<html>", HTTP, False, diagnosis.NOT_HTTP),
        (b"HTTX", HTTP, False, diagnosis.NOT_HTTP),
        (b"\x15\x01", HTTP, False, diagnosis.NOT_HTTP),  # 0x15 without version 3: not TLS
        # under TLS, decrypted bytes that look like a record are just not HTTP
        (ALERT, HTTP, True, diagnosis.NOT_HTTP),
        # d. a framed sender answered HTTP
        (HTTP_400, LUMBERJACK, False, diagnosis.SPEAKS_HTTP),
        (HTTP_400, LUMBERJACK, True, diagnosis.SPEAKS_HTTP),
        (b"H", LUMBERJACK, False, diagnosis.SPEAKS_HTTP),
        (b"HTTP", LUMBERJACK, False, diagnosis.SPEAKS_HTTP),
        # nothing to say: the right wire's bytes, or bytes of no known kind
        (HTTP_400, HTTP, False, None),
        (b"HT", HTTP, False, None),
        (ACK, LUMBERJACK, False, None),
        (b"\x00\x01", LUMBERJACK, False, None),
        (b"HX", LUMBERJACK, False, None),
        (ALERT, LUMBERJACK, True, None),
    ],
)
def test_first_bytes(answer, protocol, tls, expected):
    assert cause(protocol, tls, answer=answer) == expected


@given(answer=st.binary(min_size=1, max_size=16), tls=st.booleans())
def test_any_answer_is_classified_without_failing(answer, tls):
    for protocol in WIRES:
        got = cause(protocol, tls, answer=answer)
        http = b"HTTP/".startswith(answer[:5])
        if protocol == HTTP:
            assert got in (None, diagnosis.SPEAKS_TLS, diagnosis.NOT_HTTP)
            assert (got is None) == http
        else:
            assert got in (None, diagnosis.SPEAKS_TLS, diagnosis.SPEAKS_HTTP)
            assert (got == diagnosis.SPEAKS_HTTP) == http
        if tls:
            assert got != diagnosis.SPEAKS_TLS


def test_the_texts_name_the_flags():
    assert diagnose(HOST, HTTP, False, answer=ALERT).text == (
        f"{AT} speaks TLS: use --ssl-enabled true (and --ssl-certificate-authorities)"
    )
    assert diagnose(HOST, HTTP, False, answer=ACK).text == (
        f"{AT} does not speak HTTP: is it a beats/lumberjack input? use --protocol lumberjack"
    )
    assert diagnose(HOST, LUMBERJACK, False, answer=HTTP_400).text == (
        f"{AT} speaks HTTP: is it a logstash/http input? use --protocol http"
    )
    assert diagnose(HOST, HTTP, True, error=_ssl("wrong version number")).text == (
        f"{AT} does not speak TLS: use --ssl-enabled false, or check the port"
    )


# -- a close before any answer ------------------------------------------------------------------


def test_a_plain_close_names_both_likely_mistakes():
    native = diagnose(HOST, HTTP, False, closed=True)
    assert native.cause == diagnosis.CLOSED
    assert native.text == (
        f"{AT} closed the connection without answering: if it speaks TLS, use --ssl-enabled true"
        " (and --ssl-certificate-authorities); if it is a beats/lumberjack input, use"
        " --protocol lumberjack"
    )
    framed = diagnose(HOST, LUMBERJACK, False, closed=True, error=ConnectionDone())
    assert framed.text.endswith("if it is a logstash/http input, use --protocol http")


def test_a_close_after_the_handshake_is_the_other_wire():
    assert diagnose(HOST, HTTP, True, closed=True).text == (
        f"{AT} closed the connection without answering: is it a beats/lumberjack input?"
        " use --protocol lumberjack"
    )
    assert diagnose(HOST, LUMBERJACK, True, closed=True).text.endswith("use --protocol http")


@pytest.mark.parametrize("protocol", WIRES)
def test_a_close_during_the_handshake_is_a_plain_port(protocol):
    hint = diagnose(HOST, protocol, True, closed=True, handshaken=False)
    assert hint.cause == diagnosis.NOT_TLS
    assert hint.text == (
        f"{AT} closed the connection during the TLS handshake: it probably does not speak TLS:"
        " use --ssl-enabled false, or check the port"
    )


@pytest.mark.parametrize("protocol", WIRES)
def test_no_close_no_answer_no_hint(protocol):
    assert diagnose(HOST, protocol, False) is None
    assert diagnose(HOST, protocol, True, error=ConnectionDone()) is None


def test_silence_on_the_framed_wire_is_probably_an_http_input():
    hint = diagnose(HOST, LUMBERJACK, False, silent=True)
    assert hint.cause == diagnosis.SILENT
    assert hint.text == (
        f"{AT} answered nothing, not even a keep-alive: is it a logstash/http input?"
        " use --protocol http"
    )
    assert diagnose(HOST, HTTP, False, silent=True) is None  # a busy HTTP input says nothing


# -- OpenSSL's reasons --------------------------------------------------------------------------


def _ssl(reason: str) -> SSL.Error:
    return SSL.Error([("SSL routines", "", reason)])


@pytest.mark.parametrize("reason", NOT_TLS_REASONS)
@pytest.mark.parametrize("protocol", WIRES)
def test_plain_bytes_in_the_handshake(reason, protocol):
    assert cause(protocol, True, error=_ssl(reason)) == diagnosis.NOT_TLS


@pytest.mark.parametrize("protocol", WIRES)
def test_an_eof_in_the_handshake_is_a_close(protocol):
    error = _ssl("unexpected eof while reading")
    assert cause(protocol, True, error=error, handshaken=False) == diagnosis.NOT_TLS
    assert cause(protocol, True, error=error) == diagnosis.CLOSED


@pytest.mark.parametrize(
    "reason",
    [
        "no shared cipher",
        "tlsv1 alert unknown ca",
        "sslv3 alert bad certificate",
        "tlsv13 alert certificate required",
        "unsupported protocol",
        "something new",
    ],
)
def test_other_tls_failures_have_their_own_words_and_no_hint(reason):
    for protocol in WIRES:
        assert diagnose(HOST, protocol, True, error=_ssl(reason)) is None


# -- the certificate checks ---------------------------------------------------------------------

CA = "CN=Corp CA,O=Corp"


@pytest.mark.parametrize("code", [2, 18, 19, 20, 21])
def test_an_unknown_ca_names_the_flag_and_the_ca(code):
    error = TLSVerificationError("certificate verify failed: x", code=code, issuer=CA)
    hint = diagnose(HOST, HTTP, True, error=error)
    assert hint.cause == diagnosis.UNKNOWN_CA
    assert hint.text == (
        f"{AT} presented a certificate from a CA we do not trust ({CA}): give that CA's"
        " certificate to --ssl-certificate-authorities (or --ssl-verification-mode none, which"
        " checks nothing)"
    )


def test_an_unknown_ca_without_its_name():
    error = TLSVerificationError("certificate verify failed: x", code=20)
    assert "from a CA we do not trust: give" in diagnose(HOST, HTTP, True, error=error).text


@pytest.mark.parametrize("code", [9, 10, 24, 26])
def test_other_verification_failures_say_it_in_their_own_words(code):
    error = TLSVerificationError("certificate verify failed: x", code=code, issuer=CA)
    assert diagnose(HOST, LUMBERJACK, True, error=error) is None


@pytest.mark.parametrize(
    ("names", "text"),
    [
        (
            ["DNS:wrong.example"],
            "for DNS:wrong.example, not for logs.example: --hosts must use"
            " that name (or the certificate must hold logs.example)",
        ),
        (
            ["DNS:a.example", "IP:10.0.0.2"],
            "for DNS:a.example, IP:10.0.0.2, not for"
            " logs.example: --hosts must use one of those names (or the certificate must hold"
            " logs.example)",
        ),
        (
            [],
            "for no names (no subjectAltName), not for logs.example: --hosts must use a name"
            " the certificate holds (or the certificate must hold logs.example)",
        ),
    ],
)
def test_a_name_mismatch_names_both_sides(names, text):
    error = TLSVerificationError("no match", hostname="logs.example", names=names)
    hint = diagnose(Host("logs.example", 9800), HTTP, True, error=error)
    assert hint.cause == diagnosis.NAME_MISMATCH
    assert hint.text == f"the receiver at logs.example:9800 presented a certificate {text}"


# -- the native input refuses what cannot be a request at once ----------------------------------

LUMBERJACK_WINDOW = b"2W\x00\x00\x00\x7d2C\x00\x00\x01\x00"


@given(cut=st.integers(min_value=1, max_value=len(LUMBERJACK_WINDOW)))
def test_a_lumberjack_window_is_refused_by_its_third_byte(cut):
    parser = RequestParser()
    parser.feed(LUMBERJACK_WINDOW[:cut])
    if cut < 3:
        assert parser.next_event() is not None  # NEED_DATA: "2W" may start a method
        parser.feed(LUMBERJACK_WINDOW[cut:])
    with pytest.raises(RequestError) as raised:
        parser.next_event()
    assert raised.value.status == 400
    assert raised.value.reason.startswith("not an HTTP request (it starts with b'2W\\x00")


@pytest.mark.parametrize("start", [b"2", b"2A\x00\x00", b"\x15\x03\x03", b"HTTX", b"SSH-2.0"])
def test_an_answer_that_cannot_be_a_status_line_is_refused_at_once(start):
    parser = ResponseParser()
    with pytest.raises(ResponseError, match="not an HTTP response"):
        parser.feed(start)


@given(cut=st.integers(min_value=1, max_value=39))
def test_a_status_line_cut_anywhere_is_not_refused_early(cut):
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    parser = ResponseParser()
    assert parser.feed(answer[:cut]) is None
    assert parser.feed(answer[cut:]).status == 200


@pytest.mark.parametrize(
    "start", [b"\x00", b" POST", b"PO\x00", b"POST\t/", b"GET\r", b'{"a":1}', b"\x16\x03\x01"]
)
def test_bytes_that_cannot_start_a_method_are_refused(start):
    parser = RequestParser()
    parser.feed(start)
    with pytest.raises(RequestError):
        parser.next_event()


@given(
    head=st.sampled_from(
        [
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            b"\r\nPUT /x HTTP/1.0\r\n\r\n",
            b"X-CUSTOM-METHOD! / HTTP/1.1\r\nHost: a\r\n\r\n",
        ]
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=60), max_size=8),
)
def test_a_request_head_cut_anywhere_is_not_refused_early(head, cuts):
    parser = RequestParser()
    rest = head
    events = []
    for size in cuts:
        piece, rest = rest[:size], rest[size:]
        parser.feed(piece)
        events.append(parser.next_event())  # NEED_DATA, the head or END: never an error
    parser.feed(rest)
    events.append(parser.next_event())
    heads = [event for event in events if hasattr(event, "method")]
    assert [h.method for h in heads] == [head.lstrip(b"\r\n").split(b" ")[0]]


# -- the attempt: the hint in the reason, logged once per host and cause ------------------------


def _reason(d: defer.Deferred) -> str:
    failures = []
    d.addErrback(failures.append)
    assert failures, "the attempt has not failed"
    return failures[0].value.reason


def _errors(events) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_level") == LogLevel.error]


def test_a_hint_is_in_every_reason_and_logged_once_per_host_and_cause():
    endpoint = StringEndpoint()
    transmitter = HttpTransmitter(Clock(), lambda host: endpoint)
    payload = transmitter.encode([{"a": 1}])
    other = Host("10.0.0.2", 9800)
    with capturedLogs() as events:
        reasons = []
        for host in (HOST, HOST, other):
            attempt = transmitter.transmit(host, payload)
            endpoint.connections[-1].dataReceived(ACK)
            reasons.append(_reason(attempt))
    hint = f"{AT} does not speak HTTP: is it a beats/lumberjack input? use --protocol lumberjack"
    assert (
        reasons[0]
        == reasons[1]
        == f"bad response: not an HTTP response (it starts with {ACK!r}); {hint}"
    )
    assert reasons[2].endswith(
        "; the receiver at 10.0.0.2:9800 does not speak HTTP: is it a"
        " beats/lumberjack input? use --protocol lumberjack"
    )
    assert _errors(events) == [hint, hint.replace(str(HOST), str(other))]


def test_a_bare_close_is_said_the_second_time_in_a_row():
    endpoint = StringEndpoint()
    transmitter = HttpTransmitter(Clock(), lambda host: endpoint)
    payload = transmitter.encode([{"a": 1}])

    def closed() -> str:
        attempt = transmitter.transmit(HOST, payload)
        endpoint.connections[-1].connectionLost(Failure(ConnectionDone()))
        return _reason(attempt)

    plain = "connection closed before any response byte: closed by the server"
    with capturedLogs() as events:
        assert closed() == plain  # a receiver stopping closes once this way
        assert closed().startswith(plain + f"; {AT} closed the connection without answering")
        # a success starts the count again
        attempt = transmitter.transmit(HOST, payload)
        endpoint.connections[-1].dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        assert attempt.called
        endpoint.connections[-1].connectionLost(Failure(ConnectionDone()))  # the idle one
        assert closed() == plain
        assert closed().startswith(plain + "; ")
    assert len(_errors(events)) == 1


def test_a_reused_connection_gets_no_hint():
    endpoint = StringEndpoint()
    transmitter = HttpTransmitter(Clock(), lambda host: endpoint)
    payload = transmitter.encode([{"a": 1}])
    attempt = transmitter.transmit(HOST, payload)
    endpoint.connections[-1].dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert attempt.called
    attempt = transmitter.transmit(HOST, payload)  # on the same connection
    assert len(endpoint.connections) == 1
    endpoint.connections[0].dataReceived(ACK)
    assert _reason(attempt) == f"bad response: not an HTTP response (it starts with {ACK!r})"
