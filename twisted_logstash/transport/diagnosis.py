"""What is probably wrong when a receiver answers the sending side with the wrong thing.

A sender set up for the wrong receiver learns it from the first bytes answered, or from a close
before any: a plain sender at a TLS port gets a TLS alert or a close, a TLS sender at a plain
port gets plain bytes back in its handshake, a native (HTTP) sender at a framed (beats,
lumberjack) port gets a close or bytes that are not HTTP, a framed sender at a native port gets
``HTTP/1.1 400``. A certificate that is refused says whether its CA is unknown or its names do not
match. Each of these is known within a round trip; without a word the user would only see a
retried failure, or a timeout 30 s later.

`diagnose` is the one place that turns what was sent (the wire, TLS on or off) and what came
back (the first bytes, the close, the TLS error) into a `Hint`: a cause, logged once per host
and cause (`transport/attempt.py`), and a sentence naming the flags to change, which the
attempt's failure carries. Without I/O: the transmitters' exchanges and the attempt call it with
what they saw.
"""

from __future__ import annotations

from typing import NamedTuple

from OpenSSL import SSL

from twisted_logstash.security.failures import (
    NOT_TLS_REASONS,
    TLSVerificationError,
    ssl_reasons,
)

__all__ = [
    "CLOSED",
    "HTTP",
    "LUMBERJACK",
    "NAME_MISMATCH",
    "NOT_HTTP",
    "NOT_TLS",
    "SILENT",
    "SPEAKS_HTTP",
    "SPEAKS_TLS",
    "UNKNOWN_CA",
    "Hint",
    "diagnose",
]

HTTP = "http"
"""The native wire, as ``--protocol`` names it."""
LUMBERJACK = "lumberjack"
"""The framed wire, as ``--protocol`` names it."""

# causes: what a hint is about; the attempt logs one line per host and cause
SPEAKS_TLS = "speaks-tls"
NOT_TLS = "not-tls"
NOT_HTTP = "not-http"
SPEAKS_HTTP = "speaks-http"
CLOSED = "closed"
SILENT = "silent"
UNKNOWN_CA = "unknown-ca"
NAME_MISMATCH = "name-mismatch"


class Hint(NamedTuple):
    """What is probably wrong: ``cause`` (one of the constants above) and ``text``, one
    sentence naming the receiver and the flags that fix it. ``bare`` when it is drawn from a
    close alone: a receiver that is stopping closes new connections the same way, so the
    attempt says it only when it happens twice in a row."""

    cause: str
    text: str
    bare: bool = False


_TLS_ON = "use --ssl-enabled true (and --ssl-certificate-authorities)"
_OTHER = {
    HTTP: "is it a beats/lumberjack input? use --protocol lumberjack",
    LUMBERJACK: "is it a logstash/http input? use --protocol http",
}
_IF_OTHER = {
    HTTP: "if it is a beats/lumberjack input, use --protocol lumberjack",
    LUMBERJACK: "if it is a logstash/http input, use --protocol http",
}
_HTTP_START = b"HTTP/"
#: first bytes of a TLS record a server sends a client that did not start TLS: an alert (0x15)
#: or a handshake (0x16), then the major version 3
_TLS_RECORDS = (0x15, 0x16)
#: X509_V_ERR_* codes that mean the chain ends at a CA we do not trust (or at none): unable to
#: get the issuer (2, 20), self-signed (18, 19), unable to verify the first certificate (21)
_UNKNOWN_CA_CODES = frozenset({2, 18, 19, 20, 21})


def diagnose(
    host,
    protocol: str,
    tls: bool,
    *,
    answer: bytes | None = None,
    closed: bool = False,
    handshaken: bool = True,
    silent: bool = False,
    error: BaseException | None = None,
) -> Hint | None:
    """The hint for a fresh connection to ``host`` (a `Host` or its text) that failed, or None.

    ``protocol`` is the wire we spoke (`HTTP`, `LUMBERJACK`), ``tls`` whether we spoke TLS.
    What came back: ``answer``, the first bytes the receiver answered (after the handshake);
    ``closed``, the receiver closed before answering a byte (``handshaken``: after the TLS
    handshake, when ``tls``); ``silent``, nothing came back before the wait for an answer ended;
    ``error``, the exception the connection failed with (a TLS failure: OpenSSL's, or our
    certificate check's `TLSVerificationError`).
    """
    at = f"the receiver at {host}"
    if isinstance(error, TLSVerificationError):
        return _certificate(at, host, error)
    if isinstance(error, SSL.Error):
        reasons = ssl_reasons(error)
        if any(needle in reason for reason in reasons for needle in NOT_TLS_REASONS):
            return _not_tls(at)
        if any("unexpected eof" in reason for reason in reasons):
            closed = True
        else:
            return None
    if answer:
        return _answered(at, protocol, tls, answer)
    if closed:
        if tls and not handshaken:
            return Hint(
                NOT_TLS,
                f"{at} closed the connection during the TLS handshake: it probably does not"
                " speak TLS: use --ssl-enabled false, or check the port",
                True,
            )
        if tls:
            text = f"{at} closed the connection without answering: {_OTHER[protocol]}"
            return Hint(CLOSED, text, True)
        return Hint(
            CLOSED,
            f"{at} closed the connection without answering: if it speaks TLS, {_TLS_ON};"
            f" {_IF_OTHER[protocol]}",
            True,
        )
    if silent and protocol == LUMBERJACK:
        return Hint(
            SILENT,
            f"{at} answered nothing, not even a keep-alive: {_OTHER[protocol]}",
        )
    return None


def _answered(at: str, protocol: str, tls: bool, answer: bytes) -> Hint | None:
    if not tls and answer[0] in _TLS_RECORDS and answer[1:2] in (b"", b"\x03"):
        return Hint(SPEAKS_TLS, f"{at} speaks TLS: {_TLS_ON}")
    http = answer[:5] == _HTTP_START[: len(answer[:5])]
    if protocol == HTTP and not http:
        return Hint(NOT_HTTP, f"{at} does not speak HTTP: {_OTHER[HTTP]}")
    if protocol == LUMBERJACK and http:
        return Hint(SPEAKS_HTTP, f"{at} speaks HTTP: {_OTHER[LUMBERJACK]}")
    return None


def _not_tls(at: str) -> Hint:
    return Hint(NOT_TLS, f"{at} does not speak TLS: use --ssl-enabled false, or check the port")


def _certificate(at: str, host, error: TLSVerificationError) -> Hint | None:
    if error.code in _UNKNOWN_CA_CODES:
        issuer = f" ({error.issuer})" if error.issuer else ""
        return Hint(
            UNKNOWN_CA,
            f"{at} presented a certificate from a CA we do not trust{issuer}: give that CA's"
            " certificate to --ssl-certificate-authorities (or --ssl-verification-mode none,"
            " which checks nothing)",
        )
    if error.names is not None:
        name = error.hostname or getattr(host, "host", host)
        held = ", ".join(error.names) if error.names else "no names (no subjectAltName)"
        which = "one of those names" if len(error.names) > 1 else "that name"
        if not error.names:
            which = "a name the certificate holds"
        return Hint(
            NAME_MISMATCH,
            f"{at} presented a certificate for {held}, not for {name}: --hosts must use"
            f" {which} (or the certificate must hold {name})",
        )
    return None
