"""The native wire over real TLS on 127.0.0.1, end to end with the project's own parts.

The server is our input (``HttpInputFactory`` in an ``InputService``) behind
``serverFromString(reactor, server_endpoint_string(settings, "127.0.0.1", 0))``; the client is our
``HttpTransmitter`` with ``client_endpoint_factory(reactor, settings)``: what the programs build
from their flags. Each entry of ``CASES`` says what a user configures on each side and what the
output then reads: the batch delivered, or a ``RetriableError`` / ``TerminalError`` whose reason
names the cause; the cause is compared in ``describe_tls_failure``'s words. docs/security.md
lists the same cases under "Tested combinations".

Contexts are built once per case (by the endpoint parser and ``client_endpoint_factory``), from
the session's one certificate folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from tests import support_tls
from twisted_logstash import config
from twisted_logstash.errors import ConfigurationError, DeadLettered, RetriableError, TerminalError
from twisted_logstash.pipeline.deadletter import DeadLetterFile
from twisted_logstash.pipeline.output import Output
from twisted_logstash.pipeline.sinks import CallableSink
from twisted_logstash.security import failures
from twisted_logstash.security.endpoints import client_endpoint_factory as _client_endpoints
from twisted_logstash.security.endpoints import server_endpoint_string
from twisted_logstash.security.settings import ClientTLSSettings
from twisted_logstash.transport.hosts import Host
from twisted_logstash.transport.inputservice import InputService
from twisted_logstash.wires.native.client import HttpTransmitter
from twisted_logstash.wires.native.server import HttpInputFactory, HttpInputProtocol

certs = support_tls.certs  # the session fixture, under its name
TIMEOUT = 10.0
DELIVERED = "delivered"

# Settings name files of the certificate folder; ``_paths`` makes them absolute.
SERVER_PEM = {"ssl_certificate": "server.crt", "ssl_key": "server.pkcs8.key"}
SERVER_P12 = {"ssl_keystore_path": "server.p12", "ssl_keystore_password": "changeit"}
SERVER_ENCRYPTED = {
    "ssl_certificate": "server.crt",
    "ssl_key": "server-encrypted.pkcs8.key",
    "ssl_key_passphrase": "changeit",
}
WRONG_NAME = {"ssl_certificate": "wrong-name.crt", "ssl_key": "wrong-name.pkcs8.key"}
EXPIRED = {"ssl_certificate": "expired.crt", "ssl_key": "expired.pkcs8.key"}
TRUST_CA = {"ssl_certificate_authorities": ["ca.crt"]}
TRUST_P12 = {"ssl_truststore_path": "truststore.p12", "ssl_truststore_password": "changeit"}
CLIENT_IDENTITIES = {
    "valid": {"ssl_certificate": "client.crt", "ssl_key": "client.pkcs8.key"},
    "none": {},
    "other-ca": {"ssl_certificate": "other-client.crt", "ssl_key": "other-client.pkcs8.key"},
}
CLIENT_P12 = {"ssl_keystore_path": "client.p12", "ssl_keystore_password": "changeit"}
MUTUAL = dict(SERVER_PEM, ssl_client_authentication="required", **TRUST_CA)
FILE_SETTINGS = frozenset(
    {
        "ssl_certificate",
        "ssl_key",
        "ssl_keystore_path",
        "ssl_truststore_path",
        "ssl_certificate_authorities",
    }
)

# causes, in describe_tls_failure's words
UNKNOWN_CA = "the peer does not trust our certificate (unknown CA)"
CERTIFICATE_REQUIRED = "the server requires a client certificate; none was presented"
NO_COMMON_PROTOCOL = "no protocol version in common"
# what the input logs when it refuses a client certificate
REFUSED_OTHER_CLIENT = (
    "refused a client certificate (CN=other-client,O=twisted-logstash test): "
    "unable to get local issuer certificate"
)


@dataclass(frozen=True)
class Case:
    """One combination: the input's settings, the output's, and what each side reports."""

    server: dict
    client: dict
    #: DELIVERED, or the cause in describe_tls_failure's words (else the status line)
    cause: str
    #: the exact reason of the output's error, as it is logged and dead-lettered ({host}: the
    #: input's host, named by the hint of transport/diagnosis.py)
    reason: str | None = None
    error: type = RetriableError
    status: int | None = None
    #: (username, password) the input requires / the output sends
    server_auth: tuple[str, str] | None = None
    client_auth: tuple[str, str] | None = None
    #: fragments of a line the input logs, when it logs one
    input_log: tuple[str, ...] = ()


def _client_auth_case(mode: str, identity: str) -> Case:
    server = dict(SERVER_PEM, ssl_client_authentication=mode)
    if mode != "none":
        server.update(TRUST_CA)
    client = dict(TRUST_CA, **CLIENT_IDENTITIES[identity])
    if (mode, identity) == ("required", "none"):
        return Case(
            server,
            client,
            CERTIFICATE_REQUIRED,
            "TLS handshake failed: the server requires a client certificate; none was presented",
        )
    if mode != "none" and identity == "other-ca":
        return Case(
            server,
            client,
            UNKNOWN_CA,
            "TLS handshake failed: the peer does not trust our certificate (unknown CA)",
            input_log=(REFUSED_OTHER_CLIENT,),
        )
    return Case(server, client, DELIVERED)


CASES: dict[str, Case] = {
    **{
        f"client-auth-{mode}-client-cert-{identity}": _client_auth_case(mode, identity)
        for mode in ("none", "optional", "required")
        for identity in ("valid", "none", "other-ca")
    },
    "wrong-name-verification-full": Case(
        WRONG_NAME,
        TRUST_CA,
        "server certificate does not match 127.0.0.1",
        "TLS handshake failed: server certificate does not match 127.0.0.1; the receiver at"
        " {host} presented a certificate for DNS:wrong.example, not for 127.0.0.1: --hosts must"
        " use that name (or the certificate must hold 127.0.0.1)",
    ),
    "wrong-name-verification-none": Case(WRONG_NAME, {"ssl_verification_mode": "none"}, DELIVERED),
    "expired-verification-full": Case(
        EXPIRED,
        TRUST_CA,
        "certificate verify failed: certificate has expired",
        "TLS handshake failed: certificate verify failed: certificate has expired",
    ),
    "expired-verification-none": Case(EXPIRED, {"ssl_verification_mode": "none"}, DELIVERED),
    "server-from-other-ca": Case(
        SERVER_PEM,
        {"ssl_certificate_authorities": ["other-ca.crt"]},
        "certificate verify failed: unable to get local issuer certificate",
        "TLS handshake failed: certificate verify failed: unable to get local issuer certificate;"
        " the receiver at {host} presented a certificate from a CA we do not trust"
        " (CN=twisted-logstash test CA,O=twisted-logstash test): give that CA's certificate to"
        " --ssl-certificate-authorities (or --ssl-verification-mode none, which checks nothing)",
    ),
    "tls12-client-tls13-server": Case(
        dict(SERVER_PEM, ssl_supported_protocols=["TLSv1.3"]),
        dict(TRUST_CA, ssl_supported_protocols=["TLSv1.2"]),
        NO_COMMON_PROTOCOL,
        "TLS handshake failed: no protocol version in common",
    ),
    "tls13-client-tls12-server": Case(
        dict(SERVER_PEM, ssl_supported_protocols=["TLSv1.2"]),
        dict(TRUST_CA, ssl_supported_protocols=["TLSv1.3"]),
        NO_COMMON_PROTOCOL,
        "TLS handshake failed: no protocol version in common",
    ),
    "tls12-both": Case(
        dict(SERVER_PEM, ssl_supported_protocols=["TLSv1.2"]),
        dict(TRUST_CA, ssl_supported_protocols=["TLSv1.2"]),
        DELIVERED,
    ),
    "server-identity-pem": Case(SERVER_PEM, TRUST_CA, DELIVERED),
    "server-identity-pkcs12": Case(SERVER_P12, TRUST_CA, DELIVERED),
    "server-identity-encrypted-pkcs8": Case(SERVER_ENCRYPTED, TRUST_CA, DELIVERED),
    "output-truststore-pkcs12": Case(SERVER_PEM, TRUST_P12, DELIVERED),
    "mutual-pkcs12-both-sides": Case(
        dict(SERVER_P12, ssl_client_authentication="required", **TRUST_CA),
        dict(TRUST_P12, **CLIENT_P12),
        DELIVERED,
    ),
    "mutual-encrypted-key-and-truststore": Case(
        dict(SERVER_ENCRYPTED, ssl_client_authentication="required", **TRUST_CA),
        dict(TRUST_P12, **CLIENT_IDENTITIES["valid"]),
        DELIVERED,
    ),
    "plain-output-to-tls-input": Case(
        SERVER_PEM,
        {"ssl_enabled": False},
        "connection closed before any response byte: closed by the server",
        # a bare close: the hint comes with the second in a row (tests/test_hints.py)
        "connection closed before any response byte: closed by the server",
    ),
    "tls-output-to-plain-input": Case(
        {"ssl_enabled": False},
        TRUST_CA,
        failures.SERVER_NOT_TLS,
        "TLS handshake failed: the server answered bytes that are not TLS; the receiver at"
        " {host} does not speak TLS: use --ssl-enabled false, or check the port",
        input_log=(
            "127.0.0.1:",
            " sent a TLS handshake to this plain HTTP port (is TLS off on this input",
        ),
    ),
    "basic-auth-right-password": Case(
        MUTUAL,
        dict(TRUST_CA, **CLIENT_IDENTITIES["valid"]),
        DELIVERED,
        server_auth=("logstash", "s3cret"),
        client_auth=("logstash", "s3cret"),
    ),
    "basic-auth-wrong-password": Case(
        MUTUAL,
        dict(TRUST_CA, **CLIENT_IDENTITIES["valid"]),
        "HTTP 401 Unauthorized: missing or wrong credentials",
        "HTTP 401 Unauthorized: missing or wrong credentials",
        error=TerminalError,
        status=401,
        server_auth=("logstash", "s3cret"),
        client_auth=("logstash", "wrong"),
        input_log=("answered 401", "from 127.0.0.1:", ": missing or wrong credentials"),
    ),
    "basic-auth-no-credentials": Case(
        SERVER_PEM,
        TRUST_CA,
        "HTTP 401 Unauthorized: missing or wrong credentials",
        "HTTP 401 Unauthorized: missing or wrong credentials",
        error=TerminalError,
        status=401,
        server_auth=("logstash", "s3cret"),
        input_log=("answered 401", "from 127.0.0.1:", ": missing or wrong credentials"),
    ),
}


def client_endpoint_factory(reactor, settings: dict):
    """The output's endpoints for Logstash-named settings, checked as the program checks them."""
    return _client_endpoints(reactor, ClientTLSSettings.from_settings(settings))


def _paths(settings: dict, folder) -> dict:
    """The settings with file names made absolute paths in ``folder``."""
    result = {}
    for name, value in settings.items():
        if name in FILE_SETTINGS:
            if isinstance(value, list):
                value = [str(folder / item) for item in value]
            else:
                value = str(folder / value)
        result[name] = value
    return result


def _cause(reason: str) -> str:
    """The cause a transmitter's reason names: after ``TLS handshake failed: `` for a TLS failure
    (in ``describe_tls_failure``'s words, as the input logs it), else the whole reason."""
    prefix = "TLS handshake failed: "
    reason = reason.partition("; the receiver at ")[0]  # the hint, if any: what to change
    return reason[len(prefix) :] if reason.startswith(prefix) else reason


@pytest.fixture
def logged():
    """The project's log lines (level, text) while the test runs."""
    lines: list[tuple[LogLevel, str]] = []

    def observe(event):
        if str(event.get("log_namespace", "")).startswith("twisted_logstash"):
            lines.append((event.get("log_level"), formatEvent(event)))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


class _Watched(HttpInputProtocol):
    """The input's protocol, telling the test when the server side of a connection is gone."""

    def connectionMade(self):
        self.gone = defer.Deferred()
        self.factory.made.append(self)
        super().connectionMade()

    def connectionLost(self, reason=None):
        super().connectionLost(reason)
        self.gone.callback(None)


@defer.inlineCallbacks
def serving(settings: dict, received: list, auth: tuple[str, str] | None = None):
    """Our input on 127.0.0.1 with an ephemeral port; returns (service, host).

    ``service.factory.made`` lists the connections it accepted (each with a ``gone`` Deferred).
    """
    from twisted.internet import reactor

    username, password = auth or (None, None)
    factory = HttpInputFactory(
        CallableSink(received.append), reactor, username=username, password=password
    )
    factory.protocol = _Watched
    factory.made = []
    endpoint = serverFromString(reactor, server_endpoint_string(settings, "127.0.0.1", 0))
    service = InputService(endpoint, factory, reactor, drain_timeout=TIMEOUT)
    service.startService()
    port = yield service.listening
    return service, Host("127.0.0.1", port.getHost().port)


@defer.inlineCallbacks
def run_case(case: Case, folder, label: str):
    """Send one batch of three events; returns (error or None, batches the input received, host).

    After a failed connection, the input is stopped only once it saw each connection end, so that
    what it logs is the peer's doing, not the input's own closing.
    """
    from twisted.internet import reactor

    received: list[list[dict]] = []
    service, host = yield serving(_paths(case.server, folder), received, case.server_auth)
    username, password = case.client_auth or (None, None)
    transmitter = HttpTransmitter(
        reactor,
        client_endpoint_factory(reactor, _paths(case.client, folder)),
        username=username,
        password=password,
        timeout=TIMEOUT,
    )
    events = [{"message": label, "n": n} for n in range(3)]
    outcome = None
    try:
        yield transmitter.transmit(host, transmitter.encode(events))
    except TerminalError as error:
        outcome = error  # an HTTP answer: the connection stays open for the next request
    except RetriableError as error:
        outcome = error
        gone = [connection.gone for connection in service.factory.made]
        yield defer.gatherResults(gone).addTimeout(TIMEOUT, reactor)
    finally:
        yield transmitter.close()
        yield service.stopService()
    return outcome, received, host


@pytest.mark.parametrize("name", list(CASES))
@pytest_twisted.inlineCallbacks
def test_native_tls(certs, logged, name):
    case = CASES[name]
    outcome, received, host = yield run_case(case, certs, name)
    if case.cause == DELIVERED:
        assert outcome is None, f"not delivered: {outcome!r}"
        assert [[(e["message"], e["n"]) for e in batch] for batch in received] == [
            [(name, 0), (name, 1), (name, 2)]
        ]
    else:
        assert outcome is not None, "delivered, but it should have failed"
        assert type(outcome) is case.error, repr(outcome)
        assert _cause(outcome.reason) == case.cause
        assert outcome.reason == case.reason.replace("{host}", str(host))
        assert outcome.status == case.status
        assert outcome.host == host
        assert received == []
    if case.input_log:
        assert any(all(part in text for part in case.input_log) for _, text in logged), logged
    if name not in INPUT_SIDE:
        # closes after a completed handshake are not handshake failures
        assert not [text for _, text in logged if text.startswith(HANDSHAKE_FAILED)], logged


# What the input logs (at warn level, once, naming the peer) when a handshake fails: the cause in
# describe_tls_failure's words, or the refused client certificate.
INPUT_SIDE = {
    "client-auth-optional-client-cert-other-ca": REFUSED_OTHER_CLIENT,
    "client-auth-required-client-cert-none": "peer did not present a certificate",
    "client-auth-required-client-cert-other-ca": REFUSED_OTHER_CLIENT,
    "wrong-name-verification-full": failures.CLOSED_DURING_HANDSHAKE,
    "expired-verification-full": failures.CLOSED_DURING_HANDSHAKE,
    "server-from-other-ca": failures.CLOSED_DURING_HANDSHAKE,
    "tls12-client-tls13-server": NO_COMMON_PROTOCOL,
    "tls13-client-tls12-server": NO_COMMON_PROTOCOL,
    "plain-output-to-tls-input": "the peer sent plain HTTP to a TLS port",
}
HANDSHAKE_FAILED = "TLS handshake with 127.0.0.1:"


@pytest.mark.parametrize("name", list(INPUT_SIDE))
@pytest_twisted.inlineCallbacks
def test_the_input_logs_why_a_handshake_failed(certs, logged, name):
    outcome, _, _ = yield run_case(CASES[name], certs, name)
    assert outcome is not None
    lines = [(level, text) for level, text in logged if text.startswith(HANDSHAKE_FAILED)]
    assert len(lines) == 1, logged
    level, text = lines[0]
    assert level == LogLevel.warn
    assert text.endswith(" failed: " + INPUT_SIDE[name]), text


def test_every_failed_handshake_case_says_what_the_input_logs():
    failed = {
        name
        for name, case in CASES.items()
        if case.reason is not None and case.reason.startswith("TLS handshake failed: ")
    }
    told = set(INPUT_SIDE) | {name for name, case in CASES.items() if case.input_log}
    assert failed <= told, failed - told


@pytest_twisted.inlineCallbacks
def test_wrong_password_over_mutual_tls_is_dead_lettered(certs, tmp_path):
    """A 401 is terminal: the output does not retry it, it writes the batch to the dead letters."""
    from twisted.internet import reactor

    received: list[list[dict]] = []
    service, host = yield serving(_paths(MUTUAL, certs), received, ("logstash", "s3cret"))
    client = _paths(dict(TRUST_CA, **CLIENT_IDENTITIES["valid"]), certs)
    transmitter = HttpTransmitter(
        reactor,
        client_endpoint_factory(reactor, client),
        username="logstash",
        password="wrong",
        timeout=TIMEOUT,
    )
    path = tmp_path / "dead-letter.ndjson"
    dead = DeadLetterFile(str(path), reactor)
    output = Output(transmitter, [host], reactor, batch_size=2, batch_delay=0, dead_letter=dead)
    output.startService()
    events = [{"message": "secret", "n": n} for n in range(2)]
    try:
        sent = output.send(events)
        sent.addTimeout(TIMEOUT, reactor)
        with pytest.raises(DeadLettered):
            yield sent
    finally:
        yield output.stopService()
        dead.close()
        yield service.stopService()
    assert received == []
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [record["event"] for record in records] == events
    info = records[0]["dead_letter"]
    assert info["reason"] == "HTTP 401 Unauthorized: missing or wrong credentials"
    assert info["status"] == 401
    assert info["host"] == str(host)
    assert output.stats.retries == 0


# -- configuration checks around TLS ------------------------------------------------------------

NO_IDENTITY = (
    "TLS is on but has no identity: give `ssl_certificate` and `ssl_key` (or `ssl_keystore_path` "
    "and `ssl_keystore_password`), or turn TLS off with `ssl_enabled => false`; `make certs` "
    "creates test certificates in certs/out"
)
#: the same sentence as the program says it, naming its flags
NO_IDENTITY_FLAGS = (
    "TLS is on but has no identity: give --ssl-certificate and --ssl-key (or --ssl-keystore-path "
    "and --ssl-keystore-password), or turn TLS off with --ssl-enabled false; `make certs` "
    "creates test certificates in certs/out"
)


def test_input_without_identity_refuses_to_start_from_the_endpoint_string():
    from twisted.internet import reactor

    with pytest.raises(ConfigurationError) as raised:
        serverFromString(reactor, server_endpoint_string({}, "127.0.0.1", 0))
    assert str(raised.value) == NO_IDENTITY


def test_input_program_without_identity_exits_with_logstash_message(capsys):
    from twisted_logstash.tap import input as program

    options = program.Options()
    options.parseOptions(["--host", "127.0.0.1", "--port", "0", "--sink", "null"])
    with pytest.raises(SystemExit) as raised:
        program.makeService(options)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err == f"twistd logstash-input: configuration error: {NO_IDENTITY_FLAGS}\n"


@pytest.mark.parametrize("side", ["input", "output"])
def test_programs_warn_when_credentials_travel_without_tls(tmp_path, logged, side):
    """The warning reaches the log at warn level, from the program as users run it."""
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")
    flags = ["--ssl-enabled", "false", "--username", "logstash"]
    flags += ["--password-file", str(password_file)]
    if side == "input":
        from twisted_logstash.tap import input as program

        flags += ["--host", "127.0.0.1", "--port", "0", "--sink", "null"]
    else:
        from twisted_logstash.tap import output as program

        flags += ["--hosts", "127.0.0.1", "--source", "generator:1"]
        flags += ["--dead-letter", str(tmp_path / "dead.ndjson")]
    options = program.Options()
    options.parseOptions(flags)
    built = program.makeService(options)
    if side == "output":
        built.output.dead_letter.close()
    # one sentence for both programs, naming the flags
    warning = "--username and --password travel in clear text: TLS is off (--ssl-enabled is false)"
    assert (LogLevel.warn, warning) in logged


@pytest.mark.parametrize("value", [False, "false", "False", "FALSE", " false "])
def test_credentials_warning_for_every_spelling_of_false(value):
    """A settings dict may say ``ssl_enabled`` as text: every spelling that turns TLS off warns."""
    settings = {"ssl_enabled": value, "username": "logstash", "password": "s3cret"}
    assert server_endpoint_string(settings, "127.0.0.1", 0).startswith("tcp:")
    assert config.check_output(settings, {"username", "password"}) == [
        config.WARN_OUTPUT_CREDENTIALS
    ]
    assert config.check_input(settings, {"username", "password"}) == [config.WARN_INPUT_CREDENTIALS]


@pytest_twisted.inlineCallbacks
def test_tls_output_to_plain_input_fails_at_once(certs, logged):
    """The input answers a ClientHello at once: no timeout of either side is involved.

    Sockets are real; the input's clock is fake and never moves, so its 30 s header timeout
    cannot be what ends the attempt; the output's timeout is its default (60 s).
    """
    from twisted.internet import reactor
    from twisted.internet.task import Clock

    clock = Clock()
    received: list[list[dict]] = []
    factory = HttpInputFactory(CallableSink(received.append), clock)
    plain = server_endpoint_string({"ssl_enabled": False}, "127.0.0.1", 0)
    service = InputService(serverFromString(reactor, plain), factory, reactor)
    service.startService()
    port = yield service.listening
    host = Host("127.0.0.1", port.getHost().port)
    transmitter = HttpTransmitter(
        reactor, client_endpoint_factory(reactor, _paths(TRUST_CA, certs))
    )
    try:
        attempt = transmitter.transmit(host, transmitter.encode([{"message": "x"}]))
        with pytest.raises(RetriableError) as raised:
            yield attempt.addTimeout(TIMEOUT, reactor)
    finally:
        yield transmitter.close()
        yield service.stopService()
    assert raised.value.reason == (
        f"TLS handshake failed: {failures.SERVER_NOT_TLS}; the receiver at {host} does not"
        " speak TLS: use --ssl-enabled false, or check the port"
    )
    assert clock.seconds() == 0
    assert received == []
    warnings = [text for level, text in logged if level == LogLevel.warn]
    assert len(warnings) == 1 and "sent a TLS handshake to this plain HTTP port" in warnings[0]
