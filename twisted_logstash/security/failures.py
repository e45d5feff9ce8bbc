"""Why a TLS connection failed, in one line a user can act on.

OpenSSL reports a failed handshake as a tuple of reason codes, and service-identity as an
exception naming patterns; ``describe_tls_failure`` turns either into one line ("certificate
verify failed: certificate has expired", "no protocol version in common"), the words every
log line and every error of both wires use. ``describe_peer`` names the far end of a
connection the same way everywhere; ``peer_address`` and ``describe_tls_peer`` say what an input
records about its sender (``[@metadata]``, see ``codecs/events.py``). A refused certificate also
says what the check knew (`TLSVerificationError`: the CA missing, `missing_ca`; the names the
certificate holds, `describe_pattern`), for the output's hint (``transport/diagnosis.py``).
"""

from __future__ import annotations

from typing import NamedTuple

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.python.failure import Failure

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.transport.hosts import Host

#: what the server logs when a client goes in the middle of the handshake: what a client that
#: refuses the server's certificate does (it sends no alert)
CLOSED_DURING_HANDSHAKE = (
    "the peer closed the connection during the handshake (did it refuse our certificate?)"
)

#: X509_V_ERR_* codes users meet, in OpenSSL's words (used if the binding is unavailable)
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
}


class TLSVerificationError(Exception):
    """The peer's certificate was refused; the message says why, in one line.

    What the check knew, for `transport/diagnosis.py` to name the fix: ``code``, OpenSSL's
    X509_V_ERR_* code when the chain was refused; ``issuer``, the CA it could not find (the
    issuer of the last certificate it had, or that certificate when it is self-signed), as
    RFC 4514 text; ``hostname``, the name we connected to, and ``names``, what the
    certificate holds (``DNS:x``, ``IP:y``), when the name did not match.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        issuer: str | None = None,
        hostname: str | None = None,
        names: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.issuer = issuer
        self.hostname = hostname
        self.names = names


def verify_reason(code: int) -> str:
    """OpenSSL's words for an X509_V_ERR_* code."""
    try:
        from OpenSSL._util import ffi, lib

        return ffi.string(lib.X509_verify_cert_error_string(code)).decode()
    except Exception:
        return _VERIFY_ERRORS.get(code, f"verification error {code}")


#: X509_V_ERR_* codes at which the certificate OpenSSL hands the callback is itself the CA it
#: does not trust (self-signed), rather than one issued by it
_SELF_SIGNED = frozenset({18, 19})


def missing_ca(cert, code: int) -> str | None:
    """The CA a chain refused with ``code`` ends at, as RFC 4514 text (``CN=Test CA,O=x``):
    the certificate itself when it is self-signed, else its issuer; None if unreadable."""
    try:
        name = cert.to_cryptography()
        name = name.subject if code in _SELF_SIGNED else name.issuer
        return name.rfc4514_string()
    except Exception:
        return None


def describe_pattern(pattern) -> str:
    """One name of a certificate, as service-identity extracted it: ``DNS:host``,
    ``IP:1.2.3.4``, ``URI:...``, ``SRV:...``."""
    kind = type(pattern).__name__.removesuffix("Pattern")
    kind = {"IPAddress": "IP", "URI": "URI", "SRV": "SRV", "DNS": "DNS"}.get(kind, kind)
    value = getattr(pattern, "pattern", None)
    if value is None:
        value = getattr(pattern, "name_pattern", pattern)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return f"{kind}:{value}"


def describe_peer(transport) -> str:
    """The far end of a connection for a log line: ``host:port`` (``[v6]:port``), or ``?``."""
    try:
        peer = transport.getPeer()
    except Exception:
        return "?"
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    return str(Host(host, port)) if host is not None else str(peer)


def peer_address(transport) -> str | None:
    """The IP address of a connection's far end as Logstash's beats input records it
    (``InetAddress.getHostAddress``): an IPv4 address mapped into IPv6 (``::ffff:10.0.0.1``, a
    dual-stack listener) as IPv4; None when the peer has none (a UNIX socket)."""
    try:
        host = transport.getPeer().host
    except Exception:
        return None
    if not isinstance(host, str):
        return None
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


class TLSPeer(NamedTuple):
    """What the TLS layer of a connection says about its peer, in the words Logstash's beats
    input records (``SSLSession``): ``verified`` is whether the peer presented a certificate
    (one that fails verification fails the handshake first); ``protocol`` (``TLSv1.3``),
    ``subject`` (RFC 4514, as Java's ``X500Principal.getName()``: ``CN=a,O=b``) and ``cipher``
    (its IANA name, as Java names it) are None when it is not verified."""

    verified: bool
    protocol: str | None = None
    subject: str | None = None
    cipher: str | None = None


def describe_tls_peer(transport) -> TLSPeer | None:
    """The TLS peer of a connection whose handshake is done; None on a plain connection."""
    try:
        handle = transport.getHandle()
    except Exception:
        return None
    if not isinstance(handle, SSL.Connection):
        return None
    certificate = handle.get_peer_certificate()
    if certificate is None:
        return TLSPeer(False)
    from twisted_logstash.security.contexts import TLS12_SUITES

    cipher = handle.get_cipher_name()
    iana = next((iana for iana, name in TLS12_SUITES.items() if name == cipher), cipher)
    return TLSPeer(
        True,
        handle.get_protocol_version_name(),
        certificate.to_cryptography().subject.rfc4514_string(),
        iana,  # TLS 1.3 suites have one name; TLS 1.2 ones as Java names them
    )


_REASONS = (
    ("certificate verify failed", "certificate verify failed"),
    ("peer did not return a certificate", "peer did not present a certificate"),
    ("certificate required", "the server requires a client certificate; none was presented"),
    ("unknown ca", "the peer does not trust our certificate (unknown CA)"),
    ("bad certificate", "the peer refused our certificate"),
    ("certificate expired", "the peer refused our certificate: it has expired"),
    ("unsupported protocol", "no protocol version in common"),
    ("protocol version", "no protocol version in common"),
    ("no protocols available", "no protocol version in common"),
    ("no shared cipher", "no cipher suite in common"),
    ("handshake failure", "handshake failure (no cipher suite or protocol in common?)"),
    ("wrong version number", "the peer does not speak TLS (plain TCP?)"),
    ("http request", "the peer sent plain HTTP to a TLS port"),
    ("packet length too long", "the peer does not speak TLS (plain TCP?)"),
    ("record layer failure", "the peer does not speak TLS (plain TCP?)"),
)


#: OpenSSL's reasons when the bytes received are not TLS records at all
NOT_TLS_REASONS = ("wrong version number", "packet length too long", "record layer failure")
#: a client's cause when the server answered its handshake with something else than TLS (the
#: attempt adds what to do: `transport/diagnosis.py`)
SERVER_NOT_TLS = "the server answered bytes that are not TLS"


def describe_tls_failure(failure: Failure | BaseException, *, client: bool = False) -> str:
    """One line saying why a TLS connection failed, for logs and error messages.

    ``client`` is true when we are the client: a peer that answers with something else than TLS
    is then a server without TLS on that port (a plain input, most likely), which the line says.
    """
    error = failure.value if isinstance(failure, Failure) else failure
    if isinstance(error, TLSVerificationError | ConfigurationError):
        return str(error)
    if isinstance(error, VerificationError):
        return f"certificate does not match: {error}"
    if isinstance(error, SSL.Error):
        reasons = ssl_reasons(error)
        if client and any(needle in reason for reason in reasons for needle in NOT_TLS_REASONS):
            return SERVER_NOT_TLS
        for reason in reasons:
            for needle, text in _REASONS:
                if needle in reason:
                    return text
        return "TLS error: " + ("; ".join(reasons) or repr(error))
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionDone | ConnectionLost):
        return "connection closed by the peer"
    return str(error) or type(error).__name__


def ssl_reasons(error: SSL.Error) -> list[str]:
    """The reason strings of an OpenSSL error (a list of (lib, func, reason) tuples)."""
    reasons = []
    for arg in error.args:
        if isinstance(arg, list):
            reasons.extend(str(item[-1]).lower() for item in arg if item)
        elif arg:
            reasons.append(str(arg).lower())
    return reasons
