"""Make a throwaway certificate authority and every identity the TLS setup needs.

    python certs/make_certs.py certs/out

Writes, into OUTDIR (PEM keys are PKCS#8, as Logstash requires; every password is "changeit"):

    ca.crt, ca.pkcs8.key                 the throwaway CA (trust it on both sides)
    server.crt, server.pkcs8.key         server identity: DNS:localhost, IP:127.0.0.1, IP:::1
    server-encrypted.pkcs8.key           the same key, encrypted with the passphrase "changeit"
    server.p12                           PKCS#12 keystore: server key, certificate and the CA
    client.crt, client.pkcs8.key         client identity for mutual TLS
    client.p12                           PKCS#12 keystore: client key, certificate and the CA
    truststore.p12                       PKCS#12 trust store holding only the CA
    passphrase.txt                       "changeit", for --password-file style use
    other-ca.crt                         a second, unrelated CA
    other-client.crt, other-client.pkcs8.key   a client signed by the other CA (must be refused)
    wrong-name.crt, wrong-name.pkcs8.key       a server signed by the CA for DNS:wrong.example only
    expired.crt, expired.pkcs8.key             a server signed by the CA whose validity has ended

The certificates are for tests and trials only: the CA key sits next to them, unprotected.

Re-running is safe: a complete, still-valid set is kept as it is; otherwise a new set is made
in a temporary folder beside OUTDIR and swapped in whole, so OUTDIR never holds a half-written or
mixed set.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import sys
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PASSWORD = "changeit"
LAYOUT = "twisted-logstash certs v1\n"
#: a set is regenerated when any certificate (other than the expired one) ends sooner than this
MIN_REMAINING = datetime.timedelta(days=2)
VALIDITY = datetime.timedelta(days=365)

FILES = (
    "ca.crt",
    "ca.pkcs8.key",
    "server.crt",
    "server.pkcs8.key",
    "server-encrypted.pkcs8.key",
    "server.p12",
    "client.crt",
    "client.pkcs8.key",
    "client.p12",
    "truststore.p12",
    "passphrase.txt",
    "other-ca.crt",
    "other-client.crt",
    "other-client.pkcs8.key",
    "wrong-name.crt",
    "wrong-name.pkcs8.key",
    "expired.crt",
    "expired.pkcs8.key",
    "LAYOUT",
)


def make_certs(outdir: str | os.PathLike) -> Path:
    """Make (or keep) a complete certificate set in ``outdir``; return its path."""
    out = Path(outdir).resolve()
    if _is_complete(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_set(staging)
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _is_complete(out: Path) -> bool:
    """True when every file is there, the layout matches and nothing ends soon."""
    try:
        if (out / "LAYOUT").read_text() != LAYOUT:
            return False
        if not all((out / name).is_file() for name in FILES):
            return False
        limit = _now() + MIN_REMAINING
        for name in FILES:
            if name.endswith(".crt") and name != "expired.crt":
                cert = x509.load_pem_x509_certificate((out / name).read_bytes())
                if cert.not_valid_after_utc < limit:
                    return False
    except (OSError, ValueError):
        return False
    return True


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``staging`` folder, never leaving a mixed set."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.rename(out, old / out.name)
    os.rename(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "twisted-logstash test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = _key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after or now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key, passphrase: str | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _p12_encryption():
    """PBES2/AES so that current OpenSSL and Java both read the keystores."""
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(PASSWORD.encode())
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _write_pair(folder: Path, stem: str, cert, key) -> None:
    _write(folder / f"{stem}.crt", _pem_cert(cert))
    _write(folder / f"{stem}.pkcs8.key", _pem_key(key), private=True)


def _write_set(folder: Path) -> None:
    ca = _ca("twisted-logstash test CA")
    other = _ca("twisted-logstash other CA")
    server_names = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    server = _leaf("localhost", ca, names=server_names, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = _leaf("logstash-client", ca, names=[], usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_client = _leaf("other-client", other, names=[], usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    wrong = _leaf(
        "wrong.example",
        ca,
        names=[x509.DNSName("wrong.example")],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    now = _now()
    expired = _leaf(
        "localhost",
        ca,
        names=server_names,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )

    _write(folder / "ca.crt", _pem_cert(ca[0]))
    _write(folder / "ca.pkcs8.key", _pem_key(ca[1]), private=True)
    _write_pair(folder, "server", *server)
    _write(folder / "server-encrypted.pkcs8.key", _pem_key(server[1], PASSWORD), private=True)
    _write_pair(folder, "client", *client)
    for stem, (cert, key) in (("server", server), ("client", client)):
        p12 = pkcs12.serialize_key_and_certificates(
            stem.encode(), key, cert, [ca[0]], _p12_encryption()
        )
        _write(folder / f"{stem}.p12", p12, private=True)
    trusted = [pkcs12.PKCS12Certificate(ca[0], b"twisted-logstash test ca")]
    _write(
        folder / "truststore.p12",
        pkcs12.serialize_java_truststore(trusted, _p12_encryption()),
    )
    _write(folder / "passphrase.txt", (PASSWORD + "\n").encode(), private=True)
    _write(folder / "other-ca.crt", _pem_cert(other[0]))
    _write_pair(folder, "other-client", *other_client)
    _write_pair(folder, "wrong-name", *wrong)
    _write_pair(folder, "expired", *expired)
    # written last: its presence marks the set complete
    _write(folder / "LAYOUT", LAYOUT.encode())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python certs/make_certs.py OUTDIR\n")
        return 2
    out = make_certs(argv[1])
    sys.stdout.write(f"certificates in {out} (passwords and passphrase: {PASSWORD})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
