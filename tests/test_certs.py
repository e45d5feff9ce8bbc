"""certs/make_certs.py: the set is complete, says what it claims, and re-running is safe."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests import support_tls

certs = support_tls.certs  # the session fixture, under its name
make_certs = support_tls.make_certs_module.make_certs
SCRIPT = Path(__file__).resolve().parent.parent / "certs" / "make_certs.py"


def cert(folder: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / name).read_bytes())


def issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def names(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        san.get_values_for_type(x509.DNSName),
        [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
    )


def test_every_file_is_there(certs):
    missing = [name for name in support_tls.make_certs_module.FILES if not (certs / name).is_file()]
    assert missing == []


def test_server_names_and_chain(certs):
    ca, server = cert(certs, "ca.crt"), cert(certs, "server.crt")
    assert names(server) == (["localhost"], ["127.0.0.1", "::1"])
    assert issued_by(server, ca)
    assert issued_by(cert(certs, "client.crt"), ca)
    assert issued_by(cert(certs, "wrong-name.crt"), ca)
    assert names(cert(certs, "wrong-name.crt")) == (["wrong.example"], [])
    other = cert(certs, "other-ca.crt")
    assert issued_by(cert(certs, "other-client.crt"), other)
    assert not issued_by(cert(certs, "other-client.crt"), ca)


def test_expired_is_expired(certs):
    expired = cert(certs, "expired.crt")
    assert expired.not_valid_after_utc < datetime.datetime.now(datetime.UTC)
    assert issued_by(expired, cert(certs, "ca.crt"))


def test_keys_are_pkcs8_and_the_encrypted_one_needs_changeit(certs):
    assert (certs / "server.pkcs8.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    encrypted = (certs / "server-encrypted.pkcs8.key").read_bytes()
    assert encrypted.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = serialization.load_pem_private_key(encrypted, b"changeit")
    assert key.public_key() == cert(certs, "server.crt").public_key()
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(encrypted, b"wrong")
    assert (certs / "passphrase.txt").read_text() == "changeit\n"
    assert (certs / "server.pkcs8.key").stat().st_mode & 0o077 == 0


def test_keystores_and_truststore(certs):
    for stem in ("server", "client"):
        key, leaf, extra = pkcs12.load_key_and_certificates(
            (certs / f"{stem}.p12").read_bytes(), b"changeit"
        )
        assert leaf == cert(certs, f"{stem}.crt")
        assert key.public_key() == leaf.public_key()
        assert extra == [cert(certs, "ca.crt")]
    key, leaf, extra = pkcs12.load_key_and_certificates(
        (certs / "truststore.p12").read_bytes(), b"changeit"
    )
    assert (key, leaf, extra) == (None, None, [cert(certs, "ca.crt")])


def test_rerun_keeps_a_complete_set(tmp_path):
    out = make_certs(tmp_path / "set")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert make_certs(out) == out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_incomplete_set_is_replaced_whole(tmp_path):
    out = make_certs(tmp_path / "set")
    old_ca = cert(out, "ca.crt")
    (out / "client.p12").unlink()
    (out / "stray-file").write_text("left over")
    make_certs(out)
    new_ca = cert(out, "ca.crt")
    assert new_ca != old_ca
    assert issued_by(cert(out, "server.crt"), new_ca)
    assert (out / "client.p12").is_file()
    assert not (out / "stray-file").exists()
    # nothing left beside it: staging and old folders are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_soon_expiring_set_is_replaced(tmp_path, monkeypatch):
    module = support_tls.make_certs_module
    out = make_certs(tmp_path / "set")
    old_ca = cert(out, "ca.crt")
    monkeypatch.setattr(module, "MIN_REMAINING", datetime.timedelta(days=400))
    make_certs(out)
    assert cert(out, "ca.crt") != old_ca


def test_command_line(tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "changeit" in done.stdout
    assert (out / "LAYOUT").is_file()
    usage = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == 2
    assert "usage" in usage.stderr


def test_san_addresses_are_ip_objects(certs):
    san = cert(certs, "server.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert ipaddress.ip_address("::1") in san.value.get_values_for_type(x509.IPAddress)
