"""pyOpenSSL contexts and Twisted connection creators from the TLS settings objects.

Logstash runs on Java; its settings name protocols (``TLSv1.2``) and cipher suites
(``TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384``) the Java/IANA way, and its keys are PKCS#8 PEM or
PKCS#12 keystores. This module turns a ``ServerTLSSettings`` or ``ClientTLSSettings`` into a
pyOpenSSL context and then into Twisted connection creators
(``IOpenSSLServerConnectionCreator`` / ``IOpenSSLClientConnectionCreator``), so that the same
configuration means the same thing here as in a Logstash pipeline.

Every mistake a user can make in a file (a wrong passphrase, a key that does not match its
certificate, a keystore that does not open) is a ConfigurationError naming the setting and the
file, raised while building, before anything listens or connects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID
from service_identity.pyopenssl import extract_patterns, verify_service_identity
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_logstash.config import HINT_IDENTITY
from twisted_logstash.errors import ConfigurationError, named
from twisted_logstash.security.failures import (
    TLSVerificationError,
    describe_pattern,
    missing_ca,
    verify_reason,
)
from twisted_logstash.security.handshake import note_refusal

if TYPE_CHECKING:
    from twisted_logstash.security.settings import ClientTLSSettings, ServerTLSSettings

log = Logger()

PROTOCOLS = ("TLSv1.1", "TLSv1.2", "TLSv1.3")
_VERSIONS = {
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}

#: TLS 1.3 suites: OpenSSL spells them as IANA does; they are set apart (set_tls13_ciphersuites)
TLS13_SUITES = (
    "TLS_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)

#: TLS 1.2 and older suites as Java/IANA name them -> OpenSSL's names
TLS12_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384": "ECDHE-ECDSA-AES256-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384": "ECDHE-RSA-AES256-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384": "DHE-RSA-AES256-GCM-SHA384",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": "DHE-RSA-AES128-GCM-SHA256",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "DHE-RSA-CHACHA20-POLY1305",
    "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256": "DHE-RSA-AES256-SHA256",
    "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256": "DHE-RSA-AES128-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA256": "AES256-SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
}
_OPENSSL_TLS12 = set(TLS12_SUITES.values())


def translate_cipher_suites(names: Sequence[str]) -> tuple[str | None, str | None]:
    """IANA/Java suite names -> (OpenSSL TLS 1.2 cipher list, TLS 1.3 ciphersuites).

    OpenSSL names are accepted too. None means "not restricted" (nothing given); an empty
    string means "none of that kind was listed". Unknown names are a ConfigurationError.
    """
    if not names:
        return None, None
    tls12: list[str] = []
    tls13: list[str] = []
    unknown: list[str] = []
    for name in names:
        if name in TLS13_SUITES:
            tls13.append(name)
        elif name in TLS12_SUITES:
            tls12.append(TLS12_SUITES[name])
        elif name in _OPENSSL_TLS12:
            tls12.append(name)
        else:
            unknown.append(name)
    if unknown:
        raise ConfigurationError.about(
            "{ssl_cipher_suites}: unknown or unsupported cipher suite(s) {unknown} "
            "(use IANA names such as TLS_AES_128_GCM_SHA256 or "
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)",
            unknown=", ".join(unknown),
        )
    return ":".join(tls12), ":".join(tls13)


def protocol_range(protocols: Sequence[str]) -> tuple[int, int]:
    """``ssl_supported_protocols`` -> (minimum, maximum) OpenSSL protocol versions.

    OpenSSL enables a contiguous range only, so a gap (TLSv1.1 and TLSv1.3 without TLSv1.2) is
    a ConfigurationError rather than silently enabling the version in between.
    """
    names = list(protocols)
    if not names:
        raise ConfigurationError.about("{ssl_supported_protocols} lists no protocol version")
    unknown = [name for name in names if name not in _VERSIONS]
    if unknown:
        raise ConfigurationError.about(
            "{ssl_supported_protocols}: {unknown} not supported; use {known}",
            unknown=", ".join(unknown),
            known=", ".join(PROTOCOLS),
        )
    indexes = sorted({PROTOCOLS.index(name) for name in names})
    if indexes != list(range(indexes[0], indexes[-1] + 1)):
        raise ConfigurationError.about(
            "{ssl_supported_protocols} must be a contiguous range of versions "
            "(got {names}; add the versions in between)",
            names=", ".join(names),
        )
    return _VERSIONS[PROTOCOLS[indexes[0]]], _VERSIONS[PROTOCOLS[indexes[-1]]]


def _tuned_context(settings: ServerTLSSettings | ClientTLSSettings) -> SSL.Context:
    """A context with the protocol range and cipher suites of ``settings``."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_options(SSL.OP_NO_COMPRESSION)
    minimum, maximum = protocol_range(settings.ssl_supported_protocols)
    tls12, tls13 = translate_cipher_suites(settings.ssl_cipher_suites)
    if tls12 is not None:
        # only one kind of suite listed: the other protocol versions cannot be negotiated
        if not tls12:
            if maximum < SSL.TLS1_3_VERSION:
                raise ConfigurationError.about(
                    "{ssl_cipher_suites} lists only TLSv1.3 suites but "
                    "{ssl_supported_protocols} does not include TLSv1.3"
                )
            minimum = SSL.TLS1_3_VERSION
        if not tls13:
            if minimum >= SSL.TLS1_3_VERSION:
                raise ConfigurationError.about(
                    "{ssl_cipher_suites} lists no TLSv1.3 suite but "
                    "{ssl_supported_protocols} allows only TLSv1.3"
                )
            maximum = min(maximum, SSL.TLS1_2_VERSION)
        try:
            if tls12:
                ctx.set_cipher_list(tls12.encode())
            if tls13:
                ctx.set_tls13_ciphersuites(tls13.encode())
        except SSL.Error as error:
            raise ConfigurationError.about(
                "{ssl_cipher_suites}: this OpenSSL supports none of the listed suites ({error})",
                error=error,
            ) from None
    ctx.set_min_proto_version(minimum)
    ctx.set_max_proto_version(maximum)
    return ctx


# ---------------------------------------------------------------------------- files


def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigurationError.about(
            named(name) + " {path}: cannot be read ({why})", path=path, why=error.strerror
        ) from None


def load_certificates(name: str, path: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file; a file holding none is a ConfigurationError."""
    try:
        certs = x509.load_pem_x509_certificates(_read(name, path))
    except ValueError:
        certs = []
    if not certs:
        raise ConfigurationError.about(named(name) + " {path}: holds no PEM certificate", path=path)
    return certs


def _load_pem_key(settings: ServerTLSSettings | ClientTLSSettings):
    path = settings.ssl_key
    if not path:
        raise ConfigurationError.about("{ssl_key} is required when {ssl_certificate} is given")
    passphrase = settings.ssl_key_passphrase
    data = _read("ssl_key", path)
    password = passphrase.encode() if passphrase else None
    try:
        return serialization.load_pem_private_key(data, password)
    except TypeError:
        if password is None:
            raise ConfigurationError.about(
                "{ssl_key} {path} is encrypted: give its passphrase with {ssl_key_passphrase}",
                path=path,
            ) from None
        # a passphrase for a key that is not encrypted: harmless, the key is usable
        return serialization.load_pem_private_key(data, None)
    except ValueError:
        if password is not None and b"ENCRYPTED" in data:
            raise ConfigurationError.about(
                "{ssl_key} {path} cannot be decrypted with the given {ssl_key_passphrase} "
                "(wrong passphrase?)",
                path=path,
            ) from None
        raise ConfigurationError.about(
            "{ssl_key} {path}: not a PEM private key (PKCS#8 expected)", path=path
        ) from None


def open_pkcs12(store: str, path: str, password: str | None):
    """The (key, certificate, extra certificates) of the PKCS#12 file ``path``, opened with
    ``password``; ``store`` (``ssl_keystore`` or ``ssl_truststore``) names the settings in the
    error a wrong password or a file that is not PKCS#12 raises."""
    try:
        return pkcs12.load_key_and_certificates(
            _read(f"{store}_path", path), (password or "").encode()
        )
    except ValueError:
        raise ConfigurationError.about(
            named(f"{store}_path")
            + " {path} cannot be opened with the given "
            + named(f"{store}_password")
            + " (wrong password, or not a PKCS#12 file)",
            path=path,
        ) from None


def load_keystore(path: str, password: str | None):
    """The private key, its certificate and the chain of a PKCS#12 keystore."""
    key, cert, extra = open_pkcs12("ssl_keystore", path, password)
    if key is None or cert is None:
        raise ConfigurationError.about(
            "{ssl_keystore_path} {path} holds no private key with its certificate", path=path
        )
    return key, cert, list(extra)


def load_truststore(path: str, password: str | None) -> list[x509.Certificate]:
    """Every certificate of a PKCS#12 trust store."""
    _key, cert, extra = open_pkcs12("ssl_truststore", path, password)
    certs = ([cert] if cert is not None else []) + list(extra)
    if not certs:
        raise ConfigurationError.about(
            "{ssl_truststore_path} {path} holds no certificate", path=path
        )
    return certs


def _use_identity(ctx: SSL.Context, settings: ServerTLSSettings | ClientTLSSettings) -> bool:
    """Install the PEM or PKCS#12 identity of ``settings``; False when there is none."""
    if settings.ssl_certificate:
        certs = load_certificates("ssl_certificate", settings.ssl_certificate)
        key = _load_pem_key(settings)
        where = ConfigurationError.about(
            "{ssl_key} {key} does not match {ssl_certificate} {certificate}",
            key=settings.ssl_key,
            certificate=settings.ssl_certificate,
        )
    elif settings.ssl_keystore_path:
        key, cert, extra = load_keystore(settings.ssl_keystore_path, settings.ssl_keystore_password)
        certs = [cert, *extra]
        where = ConfigurationError.about(
            "{ssl_keystore_path} {path}: key and certificate differ",
            path=settings.ssl_keystore_path,
        )
    else:
        return False
    ctx.use_certificate(certs[0])
    for chain_cert in certs[1:]:
        if chain_cert != certs[0]:
            ctx.add_extra_chain_cert(chain_cert)
    try:
        ctx.use_privatekey(key)
        ctx.check_privatekey()
    except SSL.Error:
        raise where from None
    return True


def _authorities(paths: Sequence[str]) -> list[x509.Certificate]:
    return [
        cert for path in paths for cert in load_certificates("ssl_certificate_authorities", path)
    ]


def _trust(ctx: SSL.Context, certs: Sequence[x509.Certificate]) -> None:
    store = ctx.get_cert_store()
    for cert in certs:
        store.add_cert(crypto.X509.from_cryptography(cert))


# ---------------------------------------------------------------------------- server


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """One context for every accepted connection; per-connection verification logging."""

    def __init__(self, context: SSL.Context, client_authentication: str):
        self.context = context
        self.client_authentication = client_authentication

    def serverConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        # as Twisted's own creators do: callbacks find the connection's protocol from here
        connection.set_app_data(tlsProtocol)
        return connection


def _server_verify(conn: SSL.Connection, cert, errno: int, depth: int, ok: int) -> bool:
    """Let OpenSSL decide, and say why a client certificate was refused.

    Under ``HandshakeTimeoutFactory`` the reason goes into the one line logged for the failed
    handshake (with the peer's address); elsewhere it is logged here.
    """
    if not ok:
        subject = cert.to_cryptography().subject.rfc4514_string()
        refusal = f"refused a client certificate ({subject}): {verify_reason(errno)}"
        if not note_refusal(conn.get_app_data(), refusal):
            log.warn("{refusal}", refusal=refusal)
    return bool(ok)


def server_context(settings: ServerTLSSettings) -> SSL.Context:
    """The server context: identity, client authentication, protocols, ciphers."""
    ctx = _tuned_context(settings)
    ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
    if not _use_identity(ctx, settings):
        raise ConfigurationError.about("TLS is on but has no identity: " + HINT_IDENTITY)
    mode = settings.ssl_client_authentication
    if mode == "none":
        ctx.set_verify(SSL.VERIFY_NONE)
    else:
        cas = _authorities(settings.ssl_certificate_authorities)
        _trust(ctx, cas)
        for cert in cas:
            ctx.add_client_ca(cert)
        flags = SSL.VERIFY_PEER
        if mode == "required":
            flags |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        ctx.set_verify(flags, _server_verify)
    # needed for session resumption once clients are verified
    ctx.set_session_id(b"twisted-logstash")
    return ctx


def server_options(settings: ServerTLSSettings) -> ServerTLS:
    """An ``IOpenSSLServerConnectionCreator`` for the input's settings."""
    return ServerTLS(server_context(settings), settings.ssl_client_authentication)


# ---------------------------------------------------------------------------- client


def _is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLS:
    """Connections to one host name or IP address, verified when ``verify`` is true.

    Verification (``ssl_verification_mode => full``) is the chain against the trusted CAs AND
    the name: a DNS name against the certificate's DNS names, an IP address against its IP
    addresses (service-identity rules). A refusal aborts the handshake with a
    TLSVerificationError that says why.
    """

    def __init__(self, context: SSL.Context, hostname: str, verify: bool):
        self.context = context
        self.hostname = hostname
        self.verify = verify
        self._is_ip = _is_ip(hostname)
        self._service_id = IPAddress_ID(hostname) if self._is_ip else DNS_ID(hostname)

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        if not self._is_ip:
            connection.set_tlsext_host_name(_idna(self.hostname))
        if self.verify:
            connection.set_verify(SSL.VERIFY_PEER, self._verify_callback(tlsProtocol))
        else:
            connection.set_verify(SSL.VERIFY_NONE)
        return connection

    def _verify_callback(self, tlsProtocol):
        refused = []

        def refuse(message: str, **known) -> bool:
            if not refused:
                refused.append(message)
                error = TLSVerificationError(message, **known)
                tlsProtocol.failVerification(Failure(error))
            return False

        def callback(conn, cert, errno: int, depth: int, ok: int) -> bool:
            try:
                if not ok:
                    return refuse(
                        f"certificate verify failed: {verify_reason(errno)}",
                        code=errno,
                        issuer=missing_ca(cert, errno),
                    )
                if depth == 0:
                    patterns = extract_patterns(cert)
                    try:
                        verify_service_identity(patterns, [self._service_id], [])
                    except VerificationError:
                        return refuse(
                            f"server certificate does not match {self.hostname}",
                            hostname=self.hostname,
                            names=[describe_pattern(pattern) for pattern in patterns],
                        )
                return True
            except Exception:
                # an exception escaping an OpenSSL callback would be lost: log it, refuse
                log.failure("while verifying the certificate of {host}", host=self.hostname)
                return False

        return callback


def _idna(hostname: str) -> bytes:
    try:
        return hostname.encode("ascii")
    except UnicodeEncodeError:
        import idna

        return idna.encode(hostname)


def client_context(settings: ClientTLSSettings) -> SSL.Context:
    """The client context: trust, optional identity (mutual TLS), protocols, ciphers."""
    ctx = _tuned_context(settings)
    _use_identity(ctx, settings)
    if settings.verify:
        if settings.ssl_certificate_authorities:
            _trust(ctx, _authorities(settings.ssl_certificate_authorities))
        elif settings.ssl_truststore_path:
            _trust(
                ctx,
                load_truststore(settings.ssl_truststore_path, settings.ssl_truststore_password),
            )
        else:
            ctx.set_default_verify_paths()
    return ctx


def client_options(settings: ClientTLSSettings, hostname: str) -> ClientTLS:
    """An ``IOpenSSLClientConnectionCreator`` for connecting to ``hostname``."""
    return ClientTLS(client_context(settings), hostname, settings.verify)
