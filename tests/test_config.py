"""Logstash's configuration rules, one row per rule, asserting the message the user reads:
the programs' words (flags, ``render(FLAG)``); ``str()`` says the same with setting names."""

from __future__ import annotations

import pytest

from tests import support_tls
from twisted_logstash import config
from twisted_logstash.errors import FLAG, SETTING, ConfigurationError

certs = support_tls.certs  # the session fixture, under its name

CA = "{certs}/ca.crt"
CERT = "{certs}/server.crt"
KEY = "{certs}/server.pkcs8.key"
P12 = "{certs}/server.p12"
TRUST = "{certs}/truststore.p12"
MISSING = "{certs}/missing.crt"

# (id, side, settings, explicit (None = the keys of settings), expected message)
# fmt: off
ERRORS = [
    ("username-without-password", "input", {"username": "u", "ssl_enabled": False}, None,
     "--password is required when --username is given"),
    ("password-without-username", "input", {"password": "p", "ssl_enabled": False}, None,
     "--password is not allowed without --username"),
    ("output-username-without-password", "output", {"username": "u"}, None,
     "--password is required when --username is given"),
    ("output-password-without-username", "output", {"password": "p"}, None,
     "--password is not allowed without --username"),
    ("explicit-ssl-while-disabled", "input",
     {"ssl_enabled": False, "ssl_certificate": CERT, "ssl_key": KEY}, None,
     "TLS is off (--ssl-enabled is false): --ssl-certificate, --ssl-key cannot be used; "
     "give --ssl-enabled true or leave them out"),
    ("output-explicit-ssl-while-disabled", "output",
     {"ssl_enabled": False, "ssl_verification_mode": "full"}, None,
     "TLS is off (--ssl-enabled is false): --ssl-verification-mode cannot be used; "
     "give --ssl-enabled true or leave it out"),
    ("input-no-identity", "input", {}, set(),
     "TLS is on but has no identity: give --ssl-certificate and --ssl-key (or "
     "--ssl-keystore-path and --ssl-keystore-password), or turn TLS off with --ssl-enabled "
     "false; `make certs` creates test certificates in certs/out"),
    ("input-certificate-and-keystore", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_keystore_path": P12,
      "ssl_keystore_password": "changeit"}, None,
     "the TLS identity is either --ssl-certificate and --ssl-key or --ssl-keystore-path, "
     "not both"),
    ("input-certificate-without-key", "input", {"ssl_certificate": CERT}, None,
     "--ssl-key is required when --ssl-certificate is given"),
    ("input-key-without-certificate", "input", {"ssl_key": KEY}, None,
     "--ssl-key is not allowed without --ssl-certificate"),
    ("input-passphrase-without-key", "input",
     {"ssl_key_passphrase": "x", "ssl_keystore_path": P12, "ssl_keystore_password": "c"}, None,
     "--ssl-key-passphrase is not allowed without --ssl-key"),
    ("input-keystore-without-password", "input", {"ssl_keystore_path": P12}, None,
     "--ssl-keystore-password is required when --ssl-keystore-path is given"),
    ("input-keystore-password-without-path", "input", {"ssl_keystore_password": "c"}, None,
     "--ssl-keystore-password is not allowed without --ssl-keystore-path"),
    ("input-empty-keystore-password", "input",
     {"ssl_keystore_path": P12, "ssl_keystore_password": ""}, None,
     "--ssl-keystore-password cannot be empty"),
    ("input-empty-key-passphrase", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_key_passphrase": ""}, None,
     "--ssl-key-passphrase cannot be empty"),
    ("input-cas-with-client-auth-none", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_certificate_authorities": [CA]}, None,
     "--ssl-certificate-authorities is not used with --ssl-client-authentication none: give "
     "--ssl-client-authentication optional or required to verify client certificates"),
    ("input-client-auth-without-cas", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_client_authentication": "required"}, None,
     "--ssl-client-authentication required needs --ssl-certificate-authorities: the CAs "
     "that client certificates are verified against"),
    ("input-client-auth-value", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_client_authentication": "force_peer"}, None,
     "--ssl-client-authentication takes none, optional or required, not 'force_peer'"),
    ("input-protocol-value", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_supported_protocols": ["TLSv1.3", "SSLv3"]},
     None, "--ssl-supported-protocols: SSLv3 not supported; use TLSv1.1, TLSv1.2, TLSv1.3"),
    ("input-cipher-value", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_cipher_suites": ["TLS_NOPE"]}, None,
     "--ssl-cipher-suites: unknown or unsupported cipher suite(s) TLS_NOPE (use IANA names "
     "such as TLS_AES_128_GCM_SHA256 or TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)"),
    ("input-handshake-timeout-value", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_handshake_timeout": "0"}, None,
     "--ssl-handshake-timeout must be a positive number of milliseconds, not '0'"),
    ("input-missing-certificate-file", "input", {"ssl_certificate": MISSING, "ssl_key": KEY},
     None, "--ssl-certificate {certs}/missing.crt: cannot be read (no such file)"),
    ("input-missing-ca-file", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_client_authentication": "optional",
      "ssl_certificate_authorities": [CA, MISSING]}, None,
     "--ssl-certificate-authorities {certs}/missing.crt: cannot be read (no such file)"),
    ("input-directory-as-key", "input", {"ssl_certificate": CERT, "ssl_key": "{certs}"}, None,
     "--ssl-key {certs}: cannot be read (it is a directory)"),
    ("output-certificate-and-keystore", "output",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_keystore_path": P12,
      "ssl_keystore_password": "c"}, None,
     "the TLS identity is either --ssl-certificate and --ssl-key or --ssl-keystore-path, "
     "not both"),
    ("output-certificate-without-key", "output", {"ssl_certificate": CERT}, None,
     "--ssl-key is required when --ssl-certificate is given"),
    ("output-key-without-certificate", "output", {"ssl_key": KEY}, None,
     "--ssl-key is not allowed without --ssl-certificate"),
    ("output-passphrase-without-key", "output", {"ssl_key_passphrase": "x"}, None,
     "--ssl-key-passphrase is not allowed without --ssl-key"),
    ("output-keystore-without-password", "output", {"ssl_keystore_path": P12}, None,
     "--ssl-keystore-password is required when --ssl-keystore-path is given"),
    ("output-keystore-password-without-path", "output", {"ssl_keystore_password": "c"}, None,
     "--ssl-keystore-password is not allowed without --ssl-keystore-path"),
    ("output-cas-and-truststore", "output",
     {"ssl_certificate_authorities": [CA], "ssl_truststore_path": TRUST,
      "ssl_truststore_password": "changeit"}, None,
     "trust is either --ssl-certificate-authorities or --ssl-truststore-path, not both"),
    ("output-cas-with-verification-none", "output",
     {"ssl_certificate_authorities": [CA], "ssl_verification_mode": "none"}, None,
     "--ssl-certificate-authorities is not used with --ssl-verification-mode none "
     "(nothing is verified)"),
    ("output-truststore-with-verification-none", "output",
     {"ssl_truststore_path": TRUST, "ssl_truststore_password": "c",
      "ssl_verification_mode": "none"}, None,
     "--ssl-truststore-path is not used with --ssl-verification-mode none (nothing is verified)"),
    ("output-truststore-without-password", "output", {"ssl_truststore_path": TRUST}, None,
     "--ssl-truststore-password is required when --ssl-truststore-path is given"),
    ("output-truststore-password-without-path", "output", {"ssl_truststore_password": "c"},
     None, "--ssl-truststore-password is not allowed without --ssl-truststore-path"),
    ("output-verification-value", "output", {"ssl_verification_mode": "certificate"}, None,
     "--ssl-verification-mode takes full or none, not 'certificate'"),
    ("output-protocol-value", "output", {"ssl_supported_protocols": ["TLSv1"]}, None,
     "--ssl-supported-protocols: TLSv1 not supported; use TLSv1.1, TLSv1.2, TLSv1.3"),
    ("output-missing-truststore", "output",
     {"ssl_truststore_path": "{certs}/missing.p12", "ssl_truststore_password": "c"}, None,
     "--ssl-truststore-path {certs}/missing.p12: cannot be read (no such file)"),
]
# fmt: on


def _fill(value, folder):
    if isinstance(value, str):
        return value.format(certs=folder)
    if isinstance(value, list):
        return [_fill(item, folder) for item in value]
    return value


@pytest.mark.parametrize(
    ("side", "settings", "explicit", "message"),
    [row[1:] for row in ERRORS],
    ids=[row[0] for row in ERRORS],
)
def test_configuration_error(certs, side, settings, explicit, message):
    settings = {name: _fill(value, certs) for name, value in settings.items()}
    if explicit is None:
        explicit = set(settings)
    check = config.check_input if side == "input" else config.check_output
    with pytest.raises(ConfigurationError) as raised:
        check(settings, explicit)
    assert raised.value.render(FLAG) == message.format(certs=certs)
    # the same sentence with setting names, for a pipeline or a library call
    assert str(raised.value) == raised.value.render(SETTING)
    assert "--" not in str(raised.value) and raised.value.settings


def test_every_row_has_a_distinct_rule():
    ids = [row[0] for row in ERRORS]
    assert len(ids) == len(set(ids))


def good_input(certs, **extra):
    settings = {
        "ssl_certificate": str(certs / "server.crt"),
        "ssl_key": str(certs / "server.pkcs8.key"),
    }
    settings.update(extra)
    return settings


def test_good_input_has_no_warning(certs):
    settings = good_input(
        certs,
        ssl_client_authentication="required",
        ssl_certificate_authorities=[str(certs / "ca.crt")],
        ssl_supported_protocols=["TLSv1.2", "TLSv1.3"],
        ssl_cipher_suites=["TLS_AES_128_GCM_SHA256"],
        ssl_handshake_timeout=10000,
        username="u",
        password="p",
    )
    assert config.check_input(settings, set(settings)) == []


def test_good_output_with_system_trust(certs):
    assert config.check_output({}, set()) == []


def test_defaults_given_implicitly_do_not_count_as_explicit():
    """Defaults filled in by the program are not 'explicit' ssl settings."""
    settings = {"ssl_enabled": False, "ssl_verification_mode": "full", "ssl_handshake_timeout": 1}
    assert config.check_output(settings, {"ssl_enabled"}) == []
    assert config.check_input(settings, {"ssl_enabled"}) == []


@pytest.mark.parametrize(
    ("side", "warning"),
    [
        (
            "input",
            "`username` and `password` travel in clear text: TLS is off (`ssl_enabled` is false)",
        ),
        (
            "output",
            "`username` and `password` travel in clear text: TLS is off (`ssl_enabled` is false)",
        ),
    ],
)
def test_credentials_without_ssl_warn(side, warning):
    settings = {"ssl_enabled": False, "username": "u", "password": "p"}
    check = config.check_input if side == "input" else config.check_output
    assert check(settings, set(settings)) == [warning]


def test_string_false_disables_ssl():
    settings = {"ssl_enabled": "false", "username": "u", "password": "p"}
    assert config.check_input(settings, set()) == [config.WARN_CREDENTIALS]


def test_verification_none_warns():
    settings = {"ssl_verification_mode": "none"}
    assert config.check_output(settings, set(settings)) == [config.WARN_VERIFICATION_NONE]


def test_password_from_flag_warns():
    assert config.read_password("s3cret", None, {}) == ("s3cret", [config.WARN_PASSWORD_FLAG])
    assert "process list" in config.WARN_PASSWORD_FLAG


def test_password_from_file_first_line(tmp_path):
    path = tmp_path / "pw"
    path.write_text("s3cret:with colon\r\nsecond line\n")
    assert config.read_password(None, str(path), {}) == ("s3cret:with colon", [])


def test_password_file_beats_environment(tmp_path):
    path = tmp_path / "pw"
    path.write_text("fromfile")
    environ = {"LOGSTASH_PASSWORD": "fromenv"}
    assert config.read_password(None, str(path), environ) == ("fromfile", [])
    assert config.read_password("fromflag", None, environ)[0] == "fromflag"


def test_password_from_environment():
    assert config.read_password(None, None, {"LOGSTASH_PASSWORD": "e"}) == ("e", [])
    assert config.read_password(None, None, {}) == (None, [])
    assert config.read_password(None, None, {"LOGSTASH_PASSWORD": ""}) == (None, [])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "--password-file {path}: cannot be read (no such file)"),
        ("\nsecond", "--password-file {path}: the first line is empty"),
        (b"\xff\xfe", "--password-file {path}: is not UTF-8 text"),
    ],
)
def test_password_file_problems(tmp_path, content, message):
    path = tmp_path / "pw"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ConfigurationError) as raised:
        config.read_password(None, str(path), {})
    assert raised.value.render(FLAG) == message.format(path=path)


def test_two_password_flags_are_an_error(tmp_path):
    with pytest.raises(ConfigurationError, match="only one of `password` and `password_file`"):
        config.read_password("a", str(tmp_path / "pw"), {})
