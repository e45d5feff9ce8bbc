"""The TLS settings objects: frozen, their defaults in one place, checked with Logstash's
rules, and what the programs build their endpoints from (no endpoint string in between)."""

from __future__ import annotations

import dataclasses

import pytest
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactorClock

from tests import support_tls
from twisted_logstash import config
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.security import endpoints
from twisted_logstash.security.auth import Credentials
from twisted_logstash.security.settings import ClientTLSSettings, ServerTLSSettings

certs = support_tls.certs  # the session fixture, under its name


def identity(certs) -> dict:
    return {
        "ssl_certificate": str(certs / "server.crt"),
        "ssl_key": str(certs / "server.pkcs8.key"),
    }


@pytest.mark.parametrize("kind", [ServerTLSSettings, ClientTLSSettings])
def test_settings_objects_are_frozen(kind):
    settings = kind.from_settings({"ssl_enabled": False})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.ssl_enabled = True
    assert settings == kind.from_settings({"ssl_enabled": False})
    hash(settings)  # frozen all the way down: lists are kept as tuples


def test_server_defaults(certs):
    settings = ServerTLSSettings.from_settings(identity(certs))
    assert settings.ssl_enabled is True
    assert settings.ssl_client_authentication == "none"
    assert settings.ssl_certificate_authorities == ()
    assert settings.ssl_handshake_timeout == 10000
    assert settings.handshake_timeout == 10.0
    assert settings.ssl_supported_protocols == ("TLSv1.2", "TLSv1.3")
    assert settings.ssl_cipher_suites == ()


def test_client_defaults():
    settings = ClientTLSSettings.from_settings({})
    assert settings.ssl_enabled is True
    assert settings.ssl_verification_mode == "full" and settings.verify
    assert settings.ssl_supported_protocols == ("TLSv1.2", "TLSv1.3")
    assert settings.warnings == ()


def test_not_given_is_the_default(certs):
    """None, an empty list and (for a choice) empty text all mean "not given"."""
    given = {
        **identity(certs),
        "ssl_client_authentication": "",
        "ssl_supported_protocols": [],
        "ssl_handshake_timeout": None,
    }
    assert ServerTLSSettings.from_settings(given) == ServerTLSSettings.from_settings(
        identity(certs)
    )


def test_values_are_converted_once(certs):
    settings = ServerTLSSettings.from_settings(
        {
            **identity(certs),
            "ssl_handshake_timeout": "2500",
            "ssl_supported_protocols": "TLSv1.3",  # one item, as Logstash takes it
            "ssl_client_authentication": "required",
            "ssl_certificate_authorities": [str(certs / "ca.crt")],
        }
    )
    assert settings.ssl_handshake_timeout == 2500
    assert settings.handshake_timeout == 2.5
    assert settings.ssl_supported_protocols == ("TLSv1.3",)
    assert settings.ssl_certificate_authorities == (str(certs / "ca.crt"),)


@pytest.mark.parametrize(
    ("kind", "given", "message"),
    [
        (
            ServerTLSSettings,
            {},
            "TLS is on but has no identity: give `ssl_certificate` and `ssl_key` (or "
            "`ssl_keystore_path` and `ssl_keystore_password`), or turn TLS off with "
            "`ssl_enabled => false`; `make certs` creates test certificates in certs/out",
        ),
        (
            ClientTLSSettings,
            {"ssl_enabled": False, "ssl_verification_mode": "none"},
            "TLS is off (`ssl_enabled` is false): `ssl_verification_mode` cannot be used; "
            "give `ssl_enabled => true` or leave it out",
        ),
        (
            ClientTLSSettings,
            {"ssl_verification_mode": "none", "ssl_certificate_authorities": ["/x"]},
            "`ssl_certificate_authorities` is not used with `ssl_verification_mode => none` "
            "(nothing is verified)",
        ),
    ],
)
def test_logstash_rules_and_messages(kind, given, message):
    with pytest.raises(ConfigurationError) as raised:
        kind.from_settings(given)
    assert str(raised.value) == message


def test_explicit_names_what_the_user_gave(certs):
    """A value present but not given (a program's own) is no "explicit SSL-related setting"."""
    given = {"ssl_enabled": False, "ssl_verification_mode": "full"}
    assert not ClientTLSSettings.from_settings(given, explicit={"ssl_enabled"}).ssl_enabled


def test_the_framed_wire_default_comes_from_the_caller():
    assert not ServerTLSSettings.from_settings({}, ssl_enabled_default=False).ssl_enabled


def test_warnings_are_carried_but_are_not_the_settings():
    unsafe = ClientTLSSettings.from_settings({"ssl_verification_mode": "none"})
    assert unsafe.warnings == (config.WARN_VERIFICATION_NONE,)
    assert unsafe == dataclasses.replace(unsafe, warnings=())


def test_to_settings_round_trips(certs):
    settings = ServerTLSSettings.from_settings(identity(certs))
    assert ServerTLSSettings.from_settings(settings.to_settings()) == settings


# ---------------------------------------------------------------------------- the programs


def _no_strings(monkeypatch):
    """Make building or parsing an endpoint string fail, wherever the programs could."""

    def refuse(*args, **kwargs):
        raise AssertionError("an endpoint string was built or parsed")

    from twisted_logstash.tap import input as input_program

    monkeypatch.setattr(endpoints, "server_endpoint_string", refuse)
    monkeypatch.setattr(endpoints, "client_endpoint_string", refuse)
    monkeypatch.setattr(input_program, "serverFromString", refuse)
    monkeypatch.setattr("twisted.internet.endpoints.serverFromString", refuse)
    monkeypatch.setattr("twisted.internet.endpoints.clientFromString", refuse)


def test_input_endpoint_is_made_from_the_settings_object(certs, monkeypatch):
    from twisted.internet import reactor

    from twisted_logstash.tap.input import Options, build, settings_from

    given = {
        **identity(certs),
        "ssl_client_authentication": "required",
        "ssl_certificate_authorities": [str(certs / "ca.crt")],
    }
    # what a logstash-tls string with the same settings parses into (before strings are barred)
    text = endpoints.server_endpoint_string(given, "127.0.0.1", 0)
    from_string = serverFromString(reactor, text).settings

    _no_strings(monkeypatch)
    options = Options()
    options.parseOptions(
        [
            "--host=127.0.0.1",
            "--port=0",
            "--sink=null",
            f"--ssl-certificate={given['ssl_certificate']}",
            f"--ssl-key={given['ssl_key']}",
            "--ssl-client-authentication=REQUIRED",
            f"--ssl-certificate-authorities={certs / 'ca.crt'}",
        ]
    )
    settings, explicit, _ = settings_from(options, environ={})
    service, warnings = build(settings, explicit, MemoryReactorClock())
    assert isinstance(service.endpoint, endpoints.TLSServerEndpoint)
    assert service.endpoint.settings == ServerTLSSettings.from_settings(given) == from_string
    assert service.endpoint.endpoint._interface == "127.0.0.1"
    assert warnings == []


def test_plain_input_endpoint_on_the_framed_wire(monkeypatch):
    from twisted_logstash.tap.input import Options, build, settings_from

    _no_strings(monkeypatch)
    options = Options()
    options.parseOptions(["--protocol=lumberjack", "--sink=null"])
    settings, explicit, _ = settings_from(options, environ={})
    service, _ = build(settings, explicit, MemoryReactorClock())
    assert not isinstance(service.endpoint, endpoints.TLSServerEndpoint)
    assert (service.endpoint._interface, service.endpoint._port) == ("0.0.0.0", 5044)


def test_output_endpoints_are_made_from_the_settings_object(certs, monkeypatch, tmp_path):
    from twisted_logstash.tap import common
    from twisted_logstash.tap import output as program

    _no_strings(monkeypatch)
    made = []
    real = common.client_endpoint_factory

    def recording(reactor, settings, timeout=endpoints.DEFAULT_CONNECT_TIMEOUT):
        made.append(settings)
        return real(reactor, settings, timeout)

    monkeypatch.setattr(common, "client_endpoint_factory", recording)
    options = program.Options()
    options.parseOptions(
        [
            "--hosts=127.0.0.1",
            "--source=generator:1",
            f"--dead-letter={tmp_path / 'dead.ndjson'}",
            f"--ssl-certificate-authorities={certs / 'ca.crt'}",
            "--ssl-supported-protocols=TLSv1.3",
        ]
    )
    settings, explicit, _ = program.settings_from(options, environ={})
    built, warnings = program.build(settings, explicit, MemoryReactorClock())
    built.output.dead_letter.close()
    assert made == [
        ClientTLSSettings.from_settings(
            {
                "ssl_certificate_authorities": [str(certs / "ca.crt")],
                "ssl_supported_protocols": ["TLSv1.3"],
            }
        )
    ]
    assert warnings == []


def test_library_settings_go_the_same_way(certs):
    """``input_listener``/``output_connector``: a plain dict of Logstash names, no flags."""
    from twisted_logstash.tap.common import input_listener, output_connector

    listener = input_listener({**identity(certs), "port": 9801, "username": "u", "password": "p"})
    assert (listener.address.host, listener.address.port) == ("0.0.0.0", 9801)
    assert listener.tls == ServerTLSSettings.from_settings(identity(certs))
    assert listener.credentials == Credentials("u", "p")
    assert listener.warnings == ()
    framed = input_listener({}, protocol="lumberjack")
    assert framed.address.port == 5044 and not framed.tls.ssl_enabled
    connector = output_connector({"ssl_enabled": False, "username": "u", "password": "p"})
    assert connector.warnings == (config.WARN_OUTPUT_CREDENTIALS,)
    with pytest.raises(ConfigurationError, match="`password` is required"):
        output_connector({"username": "u"})


def test_secrets_stay_out_of_reprs(certs):
    """A record may end up in a log line or a traceback: no passphrase or password in it."""
    from twisted_logstash.tap.common import input_listener

    server = ServerTLSSettings.from_settings(
        {
            "ssl_keystore_path": str(certs / "server.p12"),
            "ssl_keystore_password": "changeit-secret",
        }
    )
    client = ClientTLSSettings(ssl_key_passphrase="pass-secret", ssl_truststore_password="t-secret")
    listener = input_listener({**identity(certs), "username": "u", "password": "pw-secret"})
    for record in (server, client, listener, Credentials("u", "pw-secret")):
        assert "secret" not in repr(record)


def test_endpoint_flag_gives_the_object_the_flags_give(certs):
    """``--endpoint logstash-tls:...`` still works, and means what the same flags mean."""
    from twisted_logstash.tap.input import Options, build, settings_from

    def endpoint_of(*argv):
        options = Options()
        options.parseOptions(["--sink=null", *argv])
        settings, explicit, _ = settings_from(options, environ={})
        service, _ = build(settings, explicit, MemoryReactorClock())
        return service.endpoint

    given = identity(certs)
    text = endpoints.server_endpoint_string(given, "127.0.0.1", 0)
    from_string = endpoint_of(f"--endpoint={text}")
    from_flags = endpoint_of(
        "--host=127.0.0.1",
        "--port=0",
        f"--ssl-certificate={given['ssl_certificate']}",
        f"--ssl-key={given['ssl_key']}",
    )
    assert from_string.settings == from_flags.settings
    assert from_string.endpoint._interface == from_flags.endpoint._interface == "127.0.0.1"
