"""Logstash's configuration rules, one row per rule, asserting the message the user reads."""

from __future__ import annotations

import pytest

from tests import support_tls
from twisted_logstash import config
from twisted_logstash.errors import ConfigurationError

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
     "`password` is REQUIRED when `username` is provided"),
    ("password-without-username", "input", {"password": "p", "ssl_enabled": False}, None,
     "`password` not allowed unless `username` is configured"),
    ("output-username-without-password", "output", {"username": "u"}, None,
     "`password` is REQUIRED when `username` is provided"),
    ("output-password-without-username", "output", {"password": "p"}, None,
     "`password` not allowed unless `username` is configured"),
    ("explicit-ssl-while-disabled", "input",
     {"ssl_enabled": False, "ssl_certificate": CERT, "ssl_key": KEY}, None,
     'Explicit SSL-related settings not supported because `ssl_enabled => false`: '
     '["ssl_certificate", "ssl_key"]'),
    ("output-explicit-ssl-while-disabled", "output",
     {"ssl_enabled": False, "ssl_verification_mode": "full"}, None,
     'Explicit SSL-related settings not supported because `ssl_enabled => false`: '
     '["ssl_verification_mode"]'),
    ("input-no-identity", "input", {}, set(),
     "SSL identity MUST be configured with either `ssl_certificate`/`ssl_key` or "
     "`ssl_keystore_*`"),
    ("input-certificate-and-keystore", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_keystore_path": P12,
      "ssl_keystore_password": "changeit"}, None,
     "SSL identity can be configured with EITHER `ssl_certificate` OR `ssl_keystore_*`, "
     "but not both"),
    ("input-certificate-without-key", "input", {"ssl_certificate": CERT}, None,
     "`ssl_key` is required when `ssl_certificate` is configured"),
    ("input-key-without-certificate", "input", {"ssl_key": KEY}, None,
     "`ssl_key` is not allowed unless `ssl_certificate` is configured"),
    ("input-passphrase-without-key", "input",
     {"ssl_key_passphrase": "x", "ssl_keystore_path": P12, "ssl_keystore_password": "c"}, None,
     "`ssl_key_passphrase` is not allowed unless `ssl_key` is configured"),
    ("input-keystore-without-password", "input", {"ssl_keystore_path": P12}, None,
     "`ssl_keystore_password` is REQUIRED when `ssl_keystore_path` is configured"),
    ("input-keystore-password-without-path", "input", {"ssl_keystore_password": "c"}, None,
     "`ssl_keystore_password` is not allowed unless `ssl_keystore_path` is configured"),
    ("input-empty-keystore-password", "input",
     {"ssl_keystore_path": P12, "ssl_keystore_password": ""}, None,
     "`ssl_keystore_password` cannot be empty"),
    ("input-empty-key-passphrase", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_key_passphrase": ""}, None,
     "`ssl_key_passphrase` cannot be empty"),
    ("input-cas-with-client-auth-none", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_certificate_authorities": [CA]}, None,
     "`ssl_certificate_authorities` is not supported because "
     "`ssl_client_authentication => none`"),
    ("input-client-auth-without-cas", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_client_authentication": "required"}, None,
     "Using `ssl_client_authentication` set to `optional` or `required` requires the "
     "configuration of trust with `ssl_certificate_authorities`"),
    ("input-client-auth-value", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_client_authentication": "force_peer"}, None,
     "`ssl_client_authentication` must be one of none, optional, required, not 'force_peer'"),
    ("input-protocol-value", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_supported_protocols": ["TLSv1.3", "SSLv3"]},
     None, "`ssl_supported_protocols`: SSLv3 not supported; use TLSv1.1, TLSv1.2, TLSv1.3"),
    ("input-cipher-value", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_cipher_suites": ["TLS_NOPE"]}, None,
     "`ssl_cipher_suites`: unknown or unsupported cipher suite(s) TLS_NOPE (use IANA names "
     "such as TLS_AES_128_GCM_SHA256 or TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)"),
    ("input-handshake-timeout-value", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_handshake_timeout": "0"}, None,
     "`ssl_handshake_timeout` must be a positive number of milliseconds, not '0'"),
    ("input-missing-certificate-file", "input", {"ssl_certificate": MISSING, "ssl_key": KEY},
     None, "Specified ssl_certificate {certs}/missing.crt path must be readable (no such file)"),
    ("input-missing-ca-file", "input",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_client_authentication": "optional",
      "ssl_certificate_authorities": [CA, MISSING]}, None,
     "Specified ssl_certificate_authorities {certs}/missing.crt path must be readable "
     "(no such file)"),
    ("input-directory-as-key", "input", {"ssl_certificate": CERT, "ssl_key": "{certs}"}, None,
     "Specified ssl_key {certs} path must be readable (it is a directory)"),
    ("output-certificate-and-keystore", "output",
     {"ssl_certificate": CERT, "ssl_key": KEY, "ssl_keystore_path": P12,
      "ssl_keystore_password": "c"}, None,
     "SSL identity can be configured with EITHER `ssl_certificate` OR `ssl_keystore_*`, "
     "but not both"),
    ("output-certificate-without-key", "output", {"ssl_certificate": CERT}, None,
     "`ssl_key` is REQUIRED when `ssl_certificate` is provided"),
    ("output-key-without-certificate", "output", {"ssl_key": KEY}, None,
     "`ssl_key` is not allowed unless `ssl_certificate` is configured"),
    ("output-passphrase-without-key", "output", {"ssl_key_passphrase": "x"}, None,
     "`ssl_key_passphrase` is not allowed unless `ssl_key` is configured"),
    ("output-keystore-without-password", "output", {"ssl_keystore_path": P12}, None,
     "`ssl_keystore_password` is REQUIRED when `ssl_keystore_path` is provided"),
    ("output-keystore-password-without-path", "output", {"ssl_keystore_password": "c"}, None,
     "`ssl_keystore_password` is not allowed unless `ssl_keystore_path` is configured"),
    ("output-cas-and-truststore", "output",
     {"ssl_certificate_authorities": [CA], "ssl_truststore_path": TRUST,
      "ssl_truststore_password": "changeit"}, None,
     "SSL trust can be configured with EITHER `ssl_certificate_authorities` OR "
     "`ssl_truststore_*`, but not both"),
    ("output-cas-with-verification-none", "output",
     {"ssl_certificate_authorities": [CA], "ssl_verification_mode": "none"}, None,
     "SSL Certificate Authorities cannot be configured when `ssl_verification_mode => none`"),
    ("output-truststore-with-verification-none", "output",
     {"ssl_truststore_path": TRUST, "ssl_truststore_password": "c",
      "ssl_verification_mode": "none"}, None,
     "SSL Truststore cannot be configured when `ssl_verification_mode => none`"),
    ("output-truststore-without-password", "output", {"ssl_truststore_path": TRUST}, None,
     "`ssl_truststore_password` is REQUIRED when `ssl_truststore_path` is provided"),
    ("output-truststore-password-without-path", "output", {"ssl_truststore_password": "c"},
     None, "`ssl_truststore_password` not allowed unless `ssl_truststore_path` is configured"),
    ("output-verification-value", "output", {"ssl_verification_mode": "certificate"}, None,
     "`ssl_verification_mode` must be full or none, not 'certificate'"),
    ("output-protocol-value", "output", {"ssl_supported_protocols": ["TLSv1"]}, None,
     "`ssl_supported_protocols`: TLSv1 not supported; use TLSv1.1, TLSv1.2, TLSv1.3"),
    ("output-missing-truststore", "output",
     {"ssl_truststore_path": "{certs}/missing.p12", "ssl_truststore_password": "c"}, None,
     "Specified ssl_truststore_path {certs}/missing.p12 path must be readable (no such file)"),
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
    assert str(raised.value) == message.format(certs=certs)


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
        ("input", "HTTP Basic Auth over non-secured connection"),
        ("output", "transmitting credentials over non-secured connection"),
    ],
)
def test_credentials_without_ssl_warn(side, warning):
    settings = {"ssl_enabled": False, "username": "u", "password": "p"}
    check = config.check_input if side == "input" else config.check_output
    assert check(settings, set(settings)) == [warning]


def test_string_false_disables_ssl():
    settings = {"ssl_enabled": "false", "username": "u", "password": "p"}
    assert config.check_input(settings, set()) == ["HTTP Basic Auth over non-secured connection"]


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
    assert str(raised.value) == message.format(path=path)


def test_two_password_flags_are_an_error(tmp_path):
    with pytest.raises(ConfigurationError, match="only one of --password and --password-file"):
        config.read_password("a", str(tmp_path / "pw"), {})
