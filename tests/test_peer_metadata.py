"""What an input records about each event's sender in ``@metadata`` (issue 13, item 4), as
Logstash's beats input does (``enrich``, ``ecs_compatibility``): the peer's IP address, and with
client certificates the TLS peer's status and identity; on both wires, from the library, the
programs' flags and the pipeline plugins. Real sockets on 127.0.0.1, real certificates."""

from __future__ import annotations

import orjson
import pytest
import pytest_twisted
from support_programs import programs_fixture, twistd  # noqa: F401
from twisted.internet import defer, reactor
from twisted.internet.testing import StringTransport

import twisted_logstash
from twisted_logstash.codecs.events import Enrichment, resolve_enrich
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.security.failures import TLSPeer, peer_address
from twisted_logstash.transport.server import InputFactory

SUBJECT = "CN=logstash-client,O=twisted-logstash test"
IP = {"ip_address": "127.0.0.1"}
ECS_IP = {"input": {"beats": {"host": {"ip": "127.0.0.1"}}}}


# -- the names, as Logstash's beats input sets them ---------------------------------------------


def test_names_without_ecs():
    enrichment = Enrichment(True, True, "disabled")
    verified = TLSPeer(True, "TLSv1.3", "CN=a,O=b", "TLS_AES_256_GCM_SHA384")
    assert enrichment.template("10.0.0.1", verified) == {
        "ip_address": "10.0.0.1",
        "tls_peer": {
            "status": "verified",
            "protocol": "TLSv1.3",
            "subject": "CN=a,O=b",
            "cipher_suite": "TLS_AES_256_GCM_SHA384",
        },
    }
    assert enrichment.template("10.0.0.1", TLSPeer(False)) == {
        "ip_address": "10.0.0.1",
        "tls_peer": {"status": "unverified"},
    }


@pytest.mark.parametrize("ecs", ["v1", "v8"])
def test_names_with_ecs(ecs):
    enrichment = Enrichment(True, True, ecs)
    verified = TLSPeer(True, "TLSv1.2", "CN=a", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")
    assert enrichment.template("10.0.0.1", verified) == {
        "input": {
            "beats": {
                "host": {"ip": "10.0.0.1"},
                "tls": {
                    "version_protocol": "TLSv1.2",
                    "client": {"subject": "CN=a"},
                    "cipher": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                },
            }
        },
        "tls_peer": {"status": "verified"},
    }
    native = Enrichment(True, False, ecs, plugin="logstash")
    assert native.template("::1", None) == {"input": {"logstash": {"host": {"ip": "::1"}}}}


def test_nothing_to_record_is_no_applier():
    assert not Enrichment()
    assert Enrichment(True).applier(None, None) is None  # a UNIX socket has no IP address
    assert Enrichment(False, True).applier("10.0.0.1", None) is None  # not TLS


def test_each_event_gets_its_own_metadata():
    enrich = Enrichment(True, True, "v8").applier("10.0.0.1", TLSPeer(True, "TLSv1.3", "CN=a", "X"))
    events = [{"n": 1}, {"n": 2}]
    enrich(events)
    first, second = (event["@metadata"] for event in events)
    assert first == second
    first["input"]["beats"]["tls"]["client"]["subject"] = "changed downstream"
    first["tls_peer"]["status"] = "changed"
    assert second["input"]["beats"]["tls"]["client"]["subject"] == "CN=a"
    assert second["tls_peer"] == {"status": "verified"}


def test_metadata_the_sender_sent_is_kept_and_set_into():
    """Beats send ``@metadata`` (beat, type, version): Logstash keeps it and sets the fields
    into it (``set_nested``), ``tls_peer`` replaced as a whole."""
    enrich = Enrichment(True, True, "v8").applier("10.0.0.1", TLSPeer(False))
    events = [
        {"@metadata": {"beat": "filebeat", "input": {"other": 1}, "tls_peer": {"forged": "x"}}},
        {"@metadata": "not an object"},
    ]
    enrich(events)
    assert events[0]["@metadata"] == {
        "beat": "filebeat",
        "input": {"other": 1, "beats": {"host": {"ip": "10.0.0.1"}}},
        "tls_peer": {"status": "unverified"},
    }
    assert events[1]["@metadata"] == {
        "input": {"beats": {"host": {"ip": "10.0.0.1"}}},
        "tls_peer": {"status": "unverified"},
    }


def test_a_subject_is_data_never_code():
    """The values are closure variables of the compiled maker, never part of its source."""
    subject = "'}; import os; os._exit(3); {'"
    enrich = Enrichment(False, True, "disabled").applier(None, TLSPeer(True, "TLSv1.3", subject))
    events = [{}]
    enrich(events)
    assert events[0]["@metadata"]["tls_peer"]["subject"] == subject


def test_enrich_is_resolved_as_logstash_does():
    assert resolve_enrich(None, "lumberjack") == {"codec_metadata", "source_metadata"}
    assert resolve_enrich(None, "http") == set()
    assert resolve_enrich(["all"], "http") == {
        "codec_metadata",
        "source_metadata",
        "ssl_peer_metadata",
    }
    assert resolve_enrich(["none"], "lumberjack") == set()
    assert resolve_enrich([], "lumberjack") == set()
    assert resolve_enrich(["ssl_peer_metadata"], "lumberjack") == {"ssl_peer_metadata"}
    with pytest.raises(ValueError, match="it must be the only value given") as error:
        resolve_enrich(["all", "source_metadata"], "http")
    assert str(error.value) == (
        "when an alias is provided to `enrich`, it must be the only value given (got: "
        '["all", "source_metadata"], including alias all)'
    )
    with pytest.raises(ValueError, match="'host' is not one of"):
        resolve_enrich(["host"], "http")


def test_peer_address_of_a_dual_stack_listener():
    class Peer:
        def __init__(self, host):
            self.host = host

    class Transport:
        def __init__(self, host):
            self.peer = Peer(host)

        def getPeer(self):
            return self.peer

    assert peer_address(Transport("::ffff:10.1.2.3")) == "10.1.2.3"
    assert peer_address(Transport("::1")) == "::1"
    assert peer_address(Transport(None)) is None


# -- the skeleton: once per connection, nothing when nothing is enabled --------------------------


class Exchange:
    """Every ``receive`` with bytes is one batch of two events."""

    def __init__(self, connection):
        self.connection = connection

    def receive(self, data):
        return [[{"n": 1}, {"n": 2}]] if data else []

    def ack(self, events):
        return b"ok"

    def lost(self):
        pass


class Sink:
    def __init__(self):
        self.batches = []

    def deliver(self, events):
        self.batches.append(events)
        return defer.succeed(None)


def connection(enrichment):
    sink = Sink()
    factory = InputFactory(sink, reactor, exchange=Exchange, enrichment=enrichment, sniff_tls=False)
    proto = factory.buildProtocol(None)
    proto.makeConnection(StringTransport(peerAddress=_Address("192.0.2.7")))
    return proto, sink


class _Address:
    def __init__(self, host):
        self.host, self.port = host, 1234


def test_disabled_leaves_events_alone():
    proto, sink = connection(None)
    proto.dataReceived(b"x")
    assert [sorted(event) for event in sink.batches[0]] == [["@timestamp", "@version", "n"]] * 2
    proto, sink = connection(Enrichment())  # empty: nothing either
    proto.dataReceived(b"x")
    assert not any("@metadata" in event for event in sink.batches[0])


def test_worked_out_once_per_connection(monkeypatch):
    calls = []
    from twisted_logstash.transport import server

    real = server.peer_address
    monkeypatch.setattr(server, "peer_address", lambda t: calls.append(t) or real(t))
    proto, sink = connection(Enrichment(True, False, "disabled"))
    proto.dataReceived(b"x")
    proto.dataReceived(b"y")
    assert len(sink.batches) == 2 and len(calls) == 1
    assert all(
        event["@metadata"] == {"ip_address": "192.0.2.7"} for b in sink.batches for event in b
    )


# -- both wires, real sockets ---------------------------------------------------------------------


class Collect:
    def __init__(self):
        self.events = []

    def __call__(self, events):
        self.events.extend(events)


def _mutual_tls(certs, mode="required", client_cert=True):
    server = dict(
        ssl_enabled=True,
        ssl_certificate=str(certs / "server.crt"),
        ssl_key=str(certs / "server.pkcs8.key"),
        ssl_certificate_authorities=[str(certs / "ca.crt")],
        ssl_client_authentication=mode,
    )
    client = dict(ssl_enabled=True, ssl_certificate_authorities=[str(certs / "ca.crt")])
    if client_cert:
        client.update(
            ssl_certificate=str(certs / "client.crt"), ssl_key=str(certs / "client.pkcs8.key")
        )
    return server, client


@defer.inlineCallbacks
def received(protocol, input_settings, output_settings, tmp_path, count=20):
    """The events a library input (sink: a callable) got from a library output."""
    got = Collect()
    receiver = twisted_logstash.logstash_input(
        protocol=protocol, sink=got, host="127.0.0.1", port=0, **input_settings
    )
    receiver.startService()
    yield receiver.listening
    output = twisted_logstash.logstash_output(
        hosts=[f"127.0.0.1:{receiver.port.getHost().port}"],
        protocol=protocol,
        dead_letter=str(tmp_path / "dlq"),
        batch_delay=1,
        **output_settings,
    )
    output.startService()
    try:
        yield defer.gatherResults([output.send([{"n": n}]) for n in range(count)])
    finally:
        yield output.stopService()
        yield receiver.stopService()
    assert sorted(event["n"] for event in got.events) == list(range(count))
    return got.events


def metadata_of(events):
    metadata = [event.get("@metadata") for event in events]
    assert len({id(each) for each in metadata if each is not None}) == len(
        [each for each in metadata if each is not None]
    ), "each event owns its @metadata"
    return metadata


@pytest_twisted.inlineCallbacks
def test_framed_wire_records_the_peer_address_by_default_as_logstash_8(tmp_path):
    events = yield received("lumberjack", {}, {"ssl_enabled": False}, tmp_path)
    assert metadata_of(events) == [ECS_IP] * len(events)
    events = yield received(
        "lumberjack", {"ecs_compatibility": "disabled"}, {"ssl_enabled": False}, tmp_path
    )
    assert metadata_of(events) == [IP] * len(events)
    events = yield received("lumberjack", {"enrich": "none"}, {"ssl_enabled": False}, tmp_path)
    assert metadata_of(events) == [None] * len(events)


@pytest_twisted.inlineCallbacks
def test_native_wire_records_nothing_unless_asked(tmp_path):
    plain = {"ssl_enabled": False}
    events = yield received("http", plain, plain, tmp_path)
    assert metadata_of(events) == [None] * len(events)  # as Logstash's `logstash` input
    events = yield received(
        "http",
        {**plain, "enrich": ["source_metadata"], "ecs_compatibility": "disabled"},
        plain,
        tmp_path,
    )
    assert metadata_of(events) == [IP] * len(events)
    events = yield received("http", {**plain, "enrich": "source_metadata"}, plain, tmp_path)
    assert metadata_of(events) == [{"input": {"logstash": {"host": {"ip": "127.0.0.1"}}}}] * len(
        events
    )


@pytest.mark.parametrize("protocol", ["http", "lumberjack"])
@pytest_twisted.inlineCallbacks
def test_mutual_tls_peer_subject(protocol, certs, tmp_path):
    server, client = _mutual_tls(certs)
    events = yield received(
        protocol, {**server, "enrich": "all", "ecs_compatibility": "disabled"}, client, tmp_path
    )
    for metadata in metadata_of(events):
        peer = metadata["tls_peer"]
        assert metadata["ip_address"] == "127.0.0.1"
        assert peer["status"] == "verified"
        assert peer["subject"] == SUBJECT
        assert peer["protocol"] in ("TLSv1.2", "TLSv1.3")
        assert peer["cipher_suite"].startswith("TLS_")
    plugin = "beats" if protocol == "lumberjack" else "logstash"
    events = yield received(
        protocol,
        {**server, "enrich": "ssl_peer_metadata", "ecs_compatibility": "v8"},
        client,
        tmp_path,
    )
    for metadata in metadata_of(events):
        assert metadata["tls_peer"] == {"status": "verified"}
        assert metadata["input"][plugin]["tls"]["client"]["subject"] == SUBJECT
        assert "host" not in metadata["input"][plugin]  # source_metadata not asked for


@pytest_twisted.inlineCallbacks
def test_optional_client_authentication_without_a_certificate_is_unverified(certs, tmp_path):
    server, client = _mutual_tls(certs, "optional", client_cert=False)
    events = yield received("http", {**server, "enrich": "ssl_peer_metadata"}, client, tmp_path)
    assert metadata_of(events) == [{"tls_peer": {"status": "unverified"}}] * len(events)


@pytest_twisted.inlineCallbacks
def test_tls_without_client_certificates_records_no_tls_peer(certs, tmp_path):
    server, client = _mutual_tls(certs, client_cert=False)
    server = {k: v for k, v in server.items() if k != "ssl_certificate_authorities"}
    server["ssl_client_authentication"] = "none"
    events = yield received(
        "lumberjack",
        {**server, "enrich": "all", "ecs_compatibility": "disabled"},
        client,
        tmp_path,
    )
    assert metadata_of(events) == [IP] * len(events)  # as Logstash: client auth is needed


def test_flags_are_checked_before_anything_binds():
    # the library names settings (the program says --enrich)
    with pytest.raises(ConfigurationError, match="`enrich`: 'peer' is not one of"):
        twisted_logstash.logstash_input(sink="null", ssl_enabled=False, enrich="peer")
    with pytest.raises(ConfigurationError, match="alias is provided to `enrich`"):
        twisted_logstash.logstash_input(sink="null", ssl_enabled=False, enrich=["none", "all"])
    with pytest.raises(ConfigurationError, match="`ecs_compatibility` takes disabled, v1, v8"):
        twisted_logstash.logstash_input(sink="null", ssl_enabled=False, ecs_compatibility="v2")


# -- the programs --------------------------------------------------------------------------------


def _lines(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@defer.inlineCallbacks
def _send(protocol, port, count, **settings):
    output = twisted_logstash.logstash_output(
        hosts=[f"127.0.0.1:{port}"], protocol=protocol, batch_delay=1, **settings
    )
    output.startService()
    try:
        yield defer.gatherResults([output.send([{"n": n}]) for n in range(count)])
    finally:
        yield output.stopService()


@pytest_twisted.inlineCallbacks
def test_program_flags(programs, tmp_path, certs):
    """``--enrich``/``--ecs-compatibility`` on the program: what it records is seen through an
    ``--add-field`` that refers to it (decorations come after, as in Logstash); the file sink
    writes no ``@metadata``."""
    out = tmp_path / "out.ndjson"
    program = programs.input(
        "--protocol=lumberjack",
        "--host=127.0.0.1",
        "--port=0",
        "--ssl-enabled=true",
        f"--ssl-certificate={certs / 'server.crt'}",
        f"--ssl-key={certs / 'server.pkcs8.key'}",
        f"--ssl-certificate-authorities={certs / 'ca.crt'}",
        "--ssl-client-authentication=required",
        "--enrich=source_metadata,ssl_peer_metadata",
        "--ecs-compatibility=disabled",
        "--add-field=peer=%{[@metadata][tls_peer][subject]}",
        "--add-field=from=%{[@metadata][ip_address]}",
        f"--sink=file:{out}",
    )
    port = yield program.wait_port()
    _, client = _mutual_tls(certs)
    yield _send("lumberjack", port, 5, dead_letter=str(tmp_path / "dlq"), **client)
    program.signal()
    yield program.ended()
    events = _lines(out)
    assert sorted(event["n"] for event in events) == list(range(5))
    assert all(e["peer"] == SUBJECT and e["from"] == "127.0.0.1" for e in events)
    assert not any("@metadata" in event for event in events)


@pytest_twisted.inlineCallbacks
def test_program_refuses_a_wrong_enrich(programs):
    program = programs.input("--protocol=lumberjack", "--port=0", "--enrich=peer")
    status = yield program.ended()
    assert status == 2
    assert "--enrich: 'peer' is not one of" in program.stderr.decode()
    assert b"listening" not in program.stdout


# -- pipelines -----------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_a_relay_uses_the_metadata_and_sends_none_of_it(programs, tmp_path, certs):
    """beats input (mutual TLS, enrich all) -> logstash output: the relay refers to what it
    recorded, and the next receiver gets no ``@metadata`` at all."""
    got = Collect()
    last = twisted_logstash.logstash_input(
        protocol="http", sink=got, host="127.0.0.1", port=0, ssl_enabled=False
    )
    last.startService()
    yield last.listening
    conf = tmp_path / "relay.conf"
    conf.write_text(
        f"""input {{ beats {{
  host => "127.0.0.1" port => 0
  ssl_enabled => true
  ssl_certificate => "{certs}/server.crt" ssl_key => "{certs}/server.pkcs8.key"
  ssl_certificate_authorities => "{certs}/ca.crt" ssl_client_authentication => required
  enrich => all
  add_field => {{ "peer" => "%{{[@metadata][input][beats][tls][client][subject]}}"
                 "from" => "%{{[@metadata][input][beats][host][ip]}}" }}
}} }}
output {{ logstash {{ hosts => "127.0.0.1:{last.port.getHost().port}" ssl_enabled => false }} }}
"""
    )
    relay = programs.spawn("relay", twistd("logstash-pipeline", "-f", str(conf)))
    try:
        port = yield relay.wait_port()
        _, client = _mutual_tls(certs)
        yield _send("lumberjack", port, 10, dead_letter=str(tmp_path / "dlq"), **client)
    finally:
        relay.signal()
        yield relay.ended()
        yield last.stopService()
    assert sorted(event["n"] for event in got.events) == list(range(10))
    assert all(e["peer"] == SUBJECT and e["from"] == "127.0.0.1" for e in got.events)
    assert not any("@metadata" in event for event in got.events)


def _build_error(text):
    from twisted.internet.testing import MemoryReactorClock

    from twisted_logstash.pipelines.build import build
    from twisted_logstash.pipelines.syntax import PipelineError, parse

    with pytest.raises(PipelineError) as caught:
        build(parse(text, "p.conf"), MemoryReactorClock(), {})
    return str(caught.value)


def test_pipeline_settings_are_checked(certs):
    assert _build_error(
        "input { beats { port => 0 enrich => [all, none] } } output { stdout { } }"
    ).startswith("p.conf:1:27: beats input: when an alias is provided to `enrich`")
    assert _build_error("input { beats { port => 0 enrich => [peer] } } output { stdout { } }") == (
        "p.conf:1:37: Invalid setting for beats input plugin: enrich: Expected one of "
        "source_metadata, codec_metadata, ssl_peer_metadata, all, none, got peer"
    )
    assert _build_error(
        "input { beats { port => 0 ecs_compatibility => v2 } } output { stdout { } }"
    ) == (
        "p.conf:1:48: Invalid setting for beats input plugin: ecs_compatibility: Expected one "
        "of disabled, v1, v8, got v2"
    )
    assert _build_error(
        "input { beats { port => 0 enrich => none ssl_peer_metadata => true } }"
        " output { stdout { } }"
    ) == (
        "p.conf:1:42: beats input: both `enrich` and (deprecated) ssl_peer_metadata were "
        "provided; use only `enrich`"
    )
    tls = f'ssl_certificate => "{certs}/server.crt" ssl_key => "{certs}/server.pkcs8.key"'
    assert _build_error(
        f"input {{ beats {{ port => 0 ssl_enabled => true {tls}\n ssl_peer_metadata => true }} }}"
        " output { stdout { } }"
    ) == (
        "p.conf:2:2: beats input: Configuring ssl_peer_metadata => true requires "
        "ssl_client_authentication => to be configured with 'optional' or 'required'"
    )


def test_pipeline_settings_reach_the_input(certs):
    from twisted.internet.testing import MemoryReactorClock

    from twisted_logstash.pipelines.build import build
    from twisted_logstash.pipelines.syntax import parse

    def enrichment(text):
        pipeline = build(parse(text + " output { stdout { } }", "p.conf"), MemoryReactorClock(), {})
        return pipeline.inputs[0].input.factory.enrichment

    assert enrichment("input { beats { port => 0 } }") == Enrichment(True, False, "v8", "beats")
    assert enrichment("input { logstash { port => 0 ssl_enabled => false } }") is None
    assert enrichment(
        "input { logstash { port => 0 ssl_enabled => false enrich => source_metadata"
        " ecs_compatibility => disabled } }"
    ) == Enrichment(True, False, "disabled", "logstash")
    tls = (
        f'ssl_enabled => true ssl_certificate => "{certs}/server.crt" '
        f'ssl_key => "{certs}/server.pkcs8.key" ssl_certificate_authorities => "{certs}/ca.crt"'
        " ssl_client_authentication => optional"
    )
    assert enrichment(
        f"input {{ beats {{ port => 0 {tls} ssl_peer_metadata => true }} }}"
    ) == Enrichment(True, True, "v8", "beats")


def test_the_collector_is_held_off_during_a_batch_and_restored():
    import gc

    enrich = Enrichment(True, False, "v8").applier("10.0.0.1", None)
    seen = []
    events = [_Probe(seen) for _ in range(3)]
    assert gc.isenabled()
    enrich(events)
    assert seen == [False] * 3 and gc.isenabled()
    gc.disable()
    try:
        enrich([_Probe(seen)])
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


class _Probe(dict):
    """An event that notes whether the collector runs while it gets its ``@metadata``."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def get(self, key, default=None):
        import gc

        self.seen.append(gc.isenabled())
        return super().get(key, default)


def test_connections_of_one_shape_share_code_not_values():
    first = Enrichment(True, False, "disabled").applier("10.0.0.1", None)
    second = Enrichment(True, False, "disabled").applier("10.0.0.2", None)
    events = [{}], [{}]
    first(events[0])
    second(events[1])
    assert [batch[0]["@metadata"] for batch in events] == [
        {"ip_address": "10.0.0.1"},
        {"ip_address": "10.0.0.2"},
    ]
