"""The one-call library entry points: twisted_logstash.logstash_input / logstash_output.

Real loopback sockets and real certificates: the services are the ones the programs run.
"""

from __future__ import annotations

import decimal

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

import twisted_logstash
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.pipeline.output import Output
from twisted_logstash.transport.inputservice import InputService


class Collect:
    def __init__(self):
        self.events = []

    def __call__(self, events):
        self.events.extend(events)


def _port(service: InputService) -> int:
    return service.port.getHost().port


@pytest_twisted.inlineCallbacks
def _round_trip(input_settings, output_settings, protocol, count=300):
    got = Collect()
    receiver = twisted_logstash.logstash_input(
        protocol=protocol, sink=got, host="127.0.0.1", port=0, **input_settings
    )
    assert isinstance(receiver, InputService)
    receiver.startService()
    yield receiver.listening
    output = twisted_logstash.logstash_output(
        hosts=[f"127.0.0.1:{_port(receiver)}"], protocol=protocol, **output_settings
    )
    assert isinstance(output, Output)
    output.startService()
    try:
        sent = [output.send([{"n": n, "price": decimal.Decimal("1.5")}]) for n in range(count)]
        yield defer.gatherResults(sent)
    finally:
        yield output.stopService()
        yield receiver.stopService()
    assert sorted(event["n"] for event in got.events) == list(range(count))
    assert {event["price"] for event in got.events} == {"1.5"}
    return got.events


def _mutual_tls(certs):
    server = dict(
        ssl_certificate=str(certs / "server.crt"),
        ssl_key=str(certs / "server.pkcs8.key"),
        ssl_certificate_authorities=[str(certs / "ca.crt")],
        ssl_client_authentication="required",
    )
    client = dict(
        ssl_enabled=True,
        ssl_certificate_authorities=[str(certs / "ca.crt")],
        ssl_certificate=str(certs / "client.crt"),
        ssl_key=str(certs / "client.pkcs8.key"),
    )
    return server, client


@pytest_twisted.inlineCallbacks
def test_native_wire_with_mutual_tls_and_basic_auth(certs, tmp_path):
    server, client = _mutual_tls(certs)
    auth = dict(username="shipper", password="s3cret")
    events = yield _round_trip(
        {**server, **auth, "tags": ["a", "b"], "add_field": {"site": "x"}},
        {**client, **auth, "dead_letter": str(tmp_path / "dlq"), "batch_delay": 1},
        "http",
    )
    assert all(e["tags"] == ["a", "b"] and e["site"] == "x" for e in events)


@pytest_twisted.inlineCallbacks
def test_tags_and_fields_reach_events_as_given():
    """A tag holding a comma and a field name holding '=' are one tag and one name (the
    programs' flags read comma lists and KEY=VALUE; a library or pipeline caller gave objects)."""
    events = yield _round_trip(
        {"ssl_enabled": False, "tags": ["a,b", "c"], "add_field": {"k=x": "v=1", "site": "y"}},
        {"ssl_enabled": False, "batch_delay": 1},
        "http",
        count=3,
    )
    assert all(e["tags"] == ["a,b", "c"] for e in events)
    assert all(e["k=x"] == "v=1" and e["site"] == "y" for e in events)


@pytest_twisted.inlineCallbacks
def test_framed_wire_with_mutual_tls(certs, tmp_path):
    server, client = _mutual_tls(certs)
    yield _round_trip(
        {**server, "ssl_enabled": True},
        {**client, "dead_letter": str(tmp_path / "dlq"), "queue": f"disk:{tmp_path / 'q'}"},
        "lumberjack",
    )
    # the output closed its disk queue on stop: the directory lock is free again
    from twisted_logstash.pipeline.diskqueue import DiskQueue

    DiskQueue(str(tmp_path / "q"), reactor=reactor).close()


def test_a_mistake_is_the_programs_message_before_anything_binds(certs):
    with pytest.raises(ConfigurationError) as error:
        twisted_logstash.logstash_input(
            sink="null", port=0, ssl_certificate=str(certs / "server.crt")
        )
    from twisted_logstash.tap import input as program

    options = program.Options()
    options.parseOptions(["--port=0", f"--ssl-certificate={certs / 'server.crt'}", "--sink=null"])
    with pytest.raises(ConfigurationError) as same:
        settings, explicit, _ = program.settings_from(options, environ={})
        program.build(settings, explicit, reactor)
    assert str(error.value) == str(same.value)


def test_an_unknown_setting_is_named():
    with pytest.raises(ConfigurationError, match="unknown setting 'ssl_verify'"):
        twisted_logstash.logstash_output(hosts="127.0.0.1", ssl_verify=False)
    with pytest.raises(ConfigurationError, match="unknown setting 'hosts'"):
        twisted_logstash.logstash_input(sink="null", hosts="x")


def test_output_settings_reach_the_service(tmp_path):
    output = twisted_logstash.logstash_output(
        hosts="127.0.0.1:1, [::1]:2",
        ssl_enabled=False,
        batch_size=7,
        batch_max_bytes=4096,
        max_in_flight=3,
        dead_letter=str(tmp_path / "dlq"),
    )
    assert (output.batch_size, output.batch_max_bytes, output.max_in_flight) == (7, 4096, 3)
    assert [str(host) for host in output.balancer.hosts] == ["127.0.0.1:1", "[::1]:2"]


def test_a_wire_only_setting_on_the_other_wire_is_refused():
    with pytest.raises(ConfigurationError, match="lumberjack"):
        twisted_logstash.logstash_input(protocol="lumberjack", sink="null", username="u")


def test_the_sink_must_be_a_sink():
    with pytest.raises(ConfigurationError, match="sink: an IEventSink"):
        twisted_logstash.logstash_input(sink=42, ssl_enabled=False)
