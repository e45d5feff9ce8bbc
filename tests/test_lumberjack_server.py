"""The framed input's Protocol, driven with StringTransport and a Clock."""

from __future__ import annotations

import pytest
from support_lumberjack import HeldSink, ack, acks_in, json_frame, u32, window
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_logstash.codecs.events import Decorations
from twisted_logstash.wires.lumberjack import server as server_module
from twisted_logstash.wires.lumberjack.frames import encode_window
from twisted_logstash.wires.lumberjack.server import LumberjackInputFactory


class Connection:
    """One protocol instance on a StringTransport, with its factory, sink and clock."""

    def __init__(self, auto: bool = False, **options):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.sink = HeldSink(auto=auto)
        self.factory = LumberjackInputFactory(self.sink, self.clock, **options)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def written(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionError("gone")))


@pytest.fixture
def logged(monkeypatch):
    events: list[dict] = []
    monkeypatch.setattr(server_module, "log", Logger(observer=events.append))
    return events


def messages(logged: list[dict]) -> str:
    from twisted.logger import formatEvent

    return "\n".join(formatEvent(event) for event in logged)


def test_ack_only_after_the_sink_fired():
    c = Connection()
    c.send(encode_window([{"message": "a"}, {"message": "b"}], compression_level=3))
    assert [e["message"] for e in c.sink.events] == ["a", "b"]
    assert c.written() == b""
    c.sink.release()
    assert c.written() == ack(2)


def test_events_are_prepared_with_timestamp_and_decorations():
    c = Connection(auto=True, decorations=Decorations(type="beats", tags=("relay",)))
    c.send(encode_window([{"message": "a"}, {"@timestamp": "2020-01-01T00:00:00.000Z"}]))
    first, second = c.sink.events
    assert first["@timestamp"] == "2023-11-14T22:13:20.000Z"
    assert first["@version"] == "1"
    assert first["type"] == "beats"
    assert "relay" in first["tags"]
    assert second["@timestamp"] == "2020-01-01T00:00:00.000Z"


def test_empty_window_is_acked_at_once():
    c = Connection()
    c.send(window(0))
    assert c.written() == ack(0)
    assert c.sink.batches == []


def test_new_window_before_the_current_one_completes_hands_the_partial_one_on(logged):
    c = Connection()
    c.send(window(3) + json_frame(1, b'{"n":1}') + json_frame(2, b'{"n":2}'))
    assert c.sink.batches == []
    c.send(window(1) + json_frame(1, b'{"n":3}'))
    assert [[e["n"] for e in b] for b in c.sink.batches] == [[1, 2]]
    c.sink.release()
    assert c.written() == ack(2)
    assert [[e["n"] for e in b] for b in c.sink.batches] == [[1, 2], [3]]
    c.sink.release()
    assert c.written() == ack(1)
    assert "handing on 2 of 3 events" in messages(logged)


def test_ack_echoes_the_senders_seq_numbers():
    c = Connection(auto=True)
    c.send(encode_window([{"n": i} for i in range(125)], first_seq=126, compression_level=None))
    assert acks_in(c.written()) == [250]


def test_version_1_window_gets_a_version_1_ack():
    c = Connection(auto=True)
    c.send(window(1, b"1") + b"1D" + u32(7) + u32(1) + u32(4) + b"line" + u32(2) + b"hi")
    assert c.written() == ack(7, b"1")
    assert c.sink.events[0]["line"] == "hi"


def test_windows_go_to_the_sink_one_at_a_time_in_order():
    c = Connection()
    c.send(b"".join(encode_window([{"w": w}, {"w": w}]) for w in range(3)))
    assert [[e["w"] for e in b] for b in c.sink.batches] == [[0, 0]]
    c.sink.release()
    assert [[e["w"] for e in b] for b in c.sink.batches] == [[0, 0], [1, 1]]
    c.sink.release()
    c.sink.release()
    assert acks_in(c.written()) == [2, 2, 2]
    assert len(c.sink.batches) == 3


def test_transport_is_paused_while_the_sink_is_behind():
    c = Connection()
    assert c.transport.producerState == "producing"
    c.send(encode_window([{"a": 1}]))
    assert c.transport.producerState == "paused"
    c.sink.release()
    assert c.transport.producerState == "producing"


def test_keepalive_acks_while_the_sink_is_busy_and_not_after():
    c = Connection()
    c.send(encode_window([{"a": 1}, {"a": 2}]))
    c.clock.advance(4.9)
    assert c.written() == b""
    c.clock.advance(0.1)
    assert c.written() == ack(0)
    c.clock.advance(5)
    assert c.written() == ack(0)
    c.sink.release()
    assert c.written() == ack(2)
    c.clock.advance(30)
    assert c.written() == b""


def test_keepalive_interval_is_configurable_and_can_be_off():
    c = Connection(keepalive_interval=1.0)
    c.send(encode_window([{"a": 1}]))
    c.clock.pump([1, 1, 1])
    assert acks_in(c.written()) == [0, 0, 0]
    off = Connection(keepalive_interval=None)
    off.send(encode_window([{"a": 1}]))
    off.clock.advance(100)
    assert off.written() == b"" and not off.closed


def test_idle_connection_is_closed_after_the_inactivity_timeout(logged):
    c = Connection(auto=True)
    c.clock.advance(59)
    assert not c.closed
    c.clock.advance(1)
    assert c.closed
    assert "no reads or writes for 60.0 s" in messages(logged)


def test_reads_and_writes_keep_the_connection_open():
    c = Connection(auto=True, client_inactivity_timeout=10.0)
    c.clock.advance(8)
    c.send(window(0))
    c.clock.advance(8)
    assert not c.closed
    c.clock.advance(2)
    assert c.closed


def test_a_busy_sink_never_gets_its_connection_closed_for_inactivity():
    c = Connection(client_inactivity_timeout=10.0, keepalive_interval=None)
    c.send(encode_window([{"a": 1}]))
    c.clock.advance(100)
    assert not c.closed
    c.sink.release()
    assert c.written() == ack(1)
    c.clock.advance(10)
    assert c.closed


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"7W" + u32(1), "unknown protocol version"),
        (b"2Q" + u32(1), "unknown frame type"),
        (window(1) + json_frame(1, b"[1]"), "not an object"),
        (window(1) + b"2J" + u32(1) + u32(0), "JSON length 0"),
        (window(1) + b"2C" + u32(3) + b"abc", "zlib"),
        (json_frame(1, b"{}"), "outside a window"),
        (ack(1), "must not send ACK"),
    ],
)
def test_protocol_error_closes_without_ack_and_logs_why(data, reason, logged):
    c = Connection(auto=True)
    c.send(data)
    assert c.closed
    assert c.written() == b""
    assert c.sink.batches == []
    assert reason in messages(logged)


def test_window_over_the_limit_is_a_protocol_error(logged):
    c = Connection(auto=True, max_window=10)
    c.send(window(11))
    assert c.closed
    assert "window size 11 over the limit 10" in messages(logged)


def test_protocol_error_while_busy_acks_the_delivered_window_then_closes():
    c = Connection()
    c.send(encode_window([{"a": 1}]))
    c.send(encode_window([{"a": 2}]) + b"2Z")
    assert not c.closed
    c.sink.release()
    assert c.written() == ack(1)
    assert c.closed
    assert len(c.sink.batches) == 1


def test_sink_failure_closes_the_connection_without_ack(logged):
    c = Connection()
    c.send(encode_window([{"a": 1}]) + encode_window([{"a": 2}]))
    c.sink.fail()
    assert c.closed
    assert c.written() == b""
    assert len(c.sink.batches) == 1
    assert "the sink failed 1 events" in messages(logged)


def test_connection_lost_while_busy_writes_nothing_later():
    c = Connection()
    c.send(encode_window([{"a": 1}]))
    c.lose()
    c.sink.release()
    c.clock.advance(120)
    assert c.written() == b""
    assert c.clock.getDelayedCalls() == []


def test_many_windows_with_a_synchronous_sink_do_not_recurse():
    c = Connection(auto=True)
    c.send(b"".join(encode_window([{"i": i}], compression_level=None) for i in range(3000)))
    assert len(c.sink.batches) == 3000
    assert acks_in(c.written()) == [1] * 3000
    assert c.transport.producerState == "producing"


def test_one_byte_at_a_time():
    c = Connection(auto=True)
    data = encode_window([{"a": 1}, {"b": 2}]) + encode_window([{"c": 3}], compression_level=None)
    for i in range(len(data)):
        c.send(data[i : i + 1])
    assert [sorted(e) for e in c.sink.events] == [
        ["@timestamp", "@version", "a"],
        ["@timestamp", "@version", "b"],
        ["@timestamp", "@version", "c"],
    ]
    assert acks_in(c.written()) == [2, 1]


def test_drain_closes_idle_connections_and_fires_when_they_are_gone():
    c = Connection(auto=True)
    drained = c.factory.drain()
    assert c.closed and not drained.called
    c.lose()
    assert drained.called


def test_drain_finishes_and_acks_the_window_with_the_sink_and_drops_the_rest():
    c = Connection()
    c.send(encode_window([{"a": 1}]))
    c.send(encode_window([{"a": 2}]))
    drained = c.factory.drain()
    assert not c.closed
    c.sink.release()
    assert c.written() == ack(1)
    assert c.closed
    assert len(c.sink.batches) == 1
    c.lose()
    assert drained.called


def test_drain_with_no_connections_fires_at_once_and_new_ones_are_closed():
    factory = LumberjackInputFactory(HeldSink(), Clock())
    assert factory.drain().called
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert transport.disconnecting


def test_abort_drops_every_connection():
    c = Connection()
    c.send(encode_window([{"a": 1}]))
    c.factory.abort()
    assert c.transport.disconnecting
