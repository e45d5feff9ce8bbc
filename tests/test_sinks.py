"""Sinks: what they write, when their Deferred fires, and how they fail."""

from __future__ import annotations

import decimal
import fcntl
import io
import os

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from twisted_logstash.codecs import ndjson
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.interfaces import IEventSink
from twisted_logstash.pipeline import sinks
from twisted_logstash.pipeline.sinks import (
    CallableSink,
    FileSink,
    NullSink,
    StdoutSink,
    sink_from_string,
)

EVENTS = [{"message": "one", "n": 1}, {"message": "two", "tags": ["a"]}]


def outcome(d: defer.Deferred):
    """What a Deferred fired with (a value or a Failure); it must have fired already."""
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


class RecordingStream(io.BytesIO):
    """A binary stream that remembers the order of writes and flushes."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def write(self, data):
        self.calls.append("write")
        return super().write(data)

    def flush(self):
        self.calls.append("flush")
        super().flush()


class BrokenStream(io.BytesIO):
    def write(self, data):
        raise BrokenPipeError(32, "Broken pipe")


def test_every_sink_provides_the_interface(tmp_path):
    for sink in (
        StdoutSink(io.BytesIO()),
        FileSink(str(tmp_path / "x")),
        NullSink(),
        CallableSink(lambda events: None),
    ):
        assert verifyObject(IEventSink, sink)


# -- stdout ----------------------------------------------------------------------------------


def test_stdout_sink_writes_ndjson_and_flushes_before_firing():
    stream = RecordingStream()
    d = StdoutSink(stream).deliver(EVENTS)
    assert outcome(d) is None
    assert stream.calls == ["write", "flush"]
    assert stream.getvalue() == ndjson.encode(EVENTS)
    assert ndjson.decode(stream.getvalue()) == EVENTS


def test_stdout_sink_writes_nothing_for_no_events():
    stream = RecordingStream()
    assert outcome(StdoutSink(stream).deliver([])) is None
    assert stream.getvalue() == b""


def test_stdout_sink_defaults_to_the_binary_standard_output(monkeypatch):
    buffer = io.BytesIO()
    monkeypatch.setattr(sinks.sys, "stdout", io.TextIOWrapper(buffer))
    sink = StdoutSink()
    outcome(sink.deliver(EVENTS[:1]))
    assert buffer.getvalue() == b'{"message":"one","n":1}\n'


def test_stdout_sink_failure_is_a_failed_deferred():
    result = outcome(StdoutSink(BrokenStream()).deliver(EVENTS))
    assert isinstance(result, Failure)
    assert result.check(BrokenPipeError)


ODD = [{"n": 1}, {"d": decimal.Decimal("1.10"), "b": b"\xff", "s": {2, 1}, "f": float("nan")}]
ODD_NDJSON = '{"n":1}\n{"d":"1.10","b":"\ufffd","s":[1,2],"f":null}\n'.encode()


def test_stdout_sink_writes_what_json_lacks_in_its_string_form():
    """Issue 10 item 4: the one JSON policy, not a failed batch."""
    stream = io.BytesIO()
    assert outcome(StdoutSink(stream).deliver(ODD)) is None
    assert stream.getvalue() == ODD_NDJSON


def test_file_sink_writes_what_json_lacks_in_its_string_form(tmp_path):
    path = tmp_path / "events.ndjson"
    sink = FileSink(str(path))
    try:
        assert outcome(sink.deliver(ODD)) is None
    finally:
        sink.close()
    assert path.read_bytes() == ODD_NDJSON


# -- file ------------------------------------------------------------------------------------


def test_file_sink_appends_ndjson_and_it_is_on_disk_when_the_deferred_fires(tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_bytes(b'{"old":true}\n')
    sink = FileSink(str(path))
    assert outcome(sink.deliver(EVENTS)) is None
    # Read through a separate handle while the sink is still open: nothing is buffered.
    assert ndjson.decode(path.read_bytes()) == [{"old": True}, *EVENTS]
    assert outcome(sink.deliver(EVENTS[:1])) is None
    assert ndjson.decode(path.read_bytes()) == [{"old": True}, *EVENTS, EVENTS[0]]
    sink.close()


def in_this_thread(fn, *args):
    """A stand-in for deferToThread that runs ``fn`` at once."""
    return defer.maybeDeferred(fn, *args)


def test_file_sink_fsyncs_only_when_asked(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(sinks.os, "fsync", synced.append)
    plain = FileSink(str(tmp_path / "plain"), in_thread=in_this_thread)
    outcome(plain.deliver(EVENTS))
    assert synced == []
    durable = FileSink(str(tmp_path / "durable"), fsync=True, in_thread=in_this_thread)
    outcome(durable.deliver(EVENTS))
    assert synced == [durable._file.fileno()]
    plain.close()
    durable.close()


class Threads:
    """A stand-in for deferToThread whose calls wait until the test ends them."""

    def __init__(self):
        self.calls: list[tuple[object, tuple, defer.Deferred]] = []

    def __call__(self, fn, *args):
        d = defer.Deferred()
        self.calls.append((fn, args, d))
        return d

    def finish(self, index=0):
        fn, args, d = self.calls.pop(index)
        try:
            result = fn(*args)
        except Exception:
            d.errback()
        else:
            d.callback(result)


def fired(d: defer.Deferred) -> bool:
    return d.called


def test_with_fsync_the_deferred_fires_only_once_the_sync_in_a_thread_is_done(tmp_path):
    """The input acknowledges when the Deferred fires: not before the bytes are synced."""
    path = tmp_path / "events.ndjson"
    threads = Threads()
    sink = FileSink(str(path), fsync=True, in_thread=threads)
    d = sink.deliver(EVENTS)
    assert path.read_bytes() == ndjson.encode(EVENTS)  # written at once, in the reactor
    assert [(fn, args) for fn, args, _ in threads.calls] == [(os.fsync, (sink._file.fileno(),))]
    assert not fired(d)
    threads.finish()
    assert outcome(d) is None
    sink.close()


def test_batches_written_during_a_sync_share_the_next_one_and_fire_in_order(tmp_path):
    path = tmp_path / "events.ndjson"
    threads = Threads()
    sink = FileSink(str(path), fsync=True, in_thread=threads)
    order = []
    first = sink.deliver(EVENTS[:1]).addCallback(lambda _: order.append(1))
    second = sink.deliver(EVENTS[1:]).addCallback(lambda _: order.append(2))
    empty = sink.deliver([]).addCallback(lambda _: order.append(3))
    assert len(threads.calls) == 1  # one sync at a time
    threads.finish()
    assert order == [1]
    assert len(threads.calls) == 1  # the next sync covers both batches written meanwhile
    threads.finish()
    assert order == [1, 2, 3]
    assert fired(first) and fired(second) and fired(empty)
    assert threads.calls == []
    assert ndjson.decode(path.read_bytes()) == EVENTS
    sink.close()


def test_a_failed_sync_fails_its_batches_and_those_after_and_cuts_them_off(tmp_path, monkeypatch):
    """Their bytes may or may not be on disk: cut off, so that the retries are written once."""
    path = tmp_path / "events.ndjson"
    threads = Threads()
    sink = FileSink(str(path), fsync=True, in_thread=threads)
    kept = sink.deliver(EVENTS[:1])
    threads.finish()
    assert outcome(kept) is None

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sinks.os, "fsync", broken)
    failing = sink.deliver(EVENTS)
    later = sink.deliver(EVENTS[1:])  # written while the failing sync runs
    assert len(threads.calls) == 1
    threads.finish()
    assert outcome(failing).check(OSError)
    assert outcome(later).check(OSError)
    assert path.read_bytes() == ndjson.encode(EVENTS[:1])
    monkeypatch.undo()
    retried = sink.deliver(EVENTS)
    threads.finish()
    assert outcome(retried) is None
    assert ndjson.decode(path.read_bytes()) == [EVENTS[0], *EVENTS]
    sink.close()


def test_closing_during_a_sync_closes_the_file_once_it_is_done(tmp_path):
    threads = Threads()
    sink = FileSink(str(tmp_path / "events.ndjson"), fsync=True, in_thread=threads)
    d = sink.deliver(EVENTS)
    sink.close()
    assert not sink._file.closed  # the thread still syncs its descriptor
    assert outcome(sink.deliver(EVENTS)).check(ValueError)
    threads.finish()
    assert outcome(d) is None
    assert sink._file.closed


@pytest_twisted.inlineCallbacks
def test_with_fsync_in_a_real_thread_batches_are_on_disk_in_order(tmp_path):
    path = tmp_path / "events.ndjson"
    sink = FileSink(str(path), fsync=True)
    batches = [[{"n": n, "i": i} for i in range(5)] for n in range(20)]
    order = []
    waiting = [
        sink.deliver(batch).addCallback(lambda _, n=n: order.append(n))
        for n, batch in enumerate(batches)
    ]
    yield defer.gatherResults(waiting)
    sink.close()
    assert order == list(range(20))
    assert ndjson.decode(path.read_bytes()) == [e for batch in batches for e in batch]


def test_file_sink_with_a_bad_path_fails_at_construction(tmp_path):
    with pytest.raises(ConfigurationError, match=r"cannot open .*missing"):
        FileSink(str(tmp_path / "missing" / "events.ndjson"))
    with pytest.raises(ConfigurationError, match="cannot open"):
        FileSink(str(tmp_path))  # a directory


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_file_sink_write_error_is_a_failed_deferred():
    sink = FileSink("/dev/full")
    result = outcome(sink.deliver(EVENTS))
    assert isinstance(result, Failure)
    assert result.check(OSError)
    sink.close()


class HalfWriter:
    """A raw file that takes half of the first write, then fails like a full disk."""

    def __init__(self, real):
        self.real = real
        self.failed = False

    def write(self, data):
        if self.failed:
            raise OSError(28, "No space left on device")
        self.failed = True
        half = bytes(data[: len(data) // 2])
        return self.real.write(half)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_partly_written_batch_is_cut_off_so_the_file_keeps_whole_lines(tmp_path):
    path = tmp_path / "events.ndjson"
    sink = FileSink(str(path))
    outcome(sink.deliver(EVENTS[:1]))
    real = sink._file
    sink._file = HalfWriter(real)
    result = outcome(sink.deliver(EVENTS))
    assert result.check(OSError)
    assert path.read_bytes() == ndjson.encode(EVENTS[:1])
    sink._file = real
    outcome(sink.deliver(EVENTS))  # the retry writes the batch once, whole
    assert ndjson.decode(path.read_bytes()) == [EVENTS[0], *EVENTS]
    sink.close()


def test_a_closed_file_sink_fails_deliveries(tmp_path):
    sink = FileSink(str(tmp_path / "events.ndjson"))
    sink.close()
    assert outcome(sink.deliver(EVENTS)).check(ValueError)
    sink.close()  # closing twice is harmless


# -- null and callable -----------------------------------------------------------------------


def test_null_sink_counts():
    sink = NullSink()
    assert outcome(sink.deliver(EVENTS)) is None
    assert outcome(sink.deliver([])) is None
    assert outcome(sink.deliver(EVENTS[:1])) is None
    assert sink.count == 3


def test_callable_sink_with_a_plain_function():
    seen = []
    sink = CallableSink(lambda events: seen.append(list(events)) or "ignored")
    assert outcome(sink.deliver(EVENTS)) is None
    assert seen == [EVENTS]


def test_callable_sink_waits_for_a_returned_deferred():
    pending = defer.Deferred()
    sink = CallableSink(lambda events: pending)
    d = sink.deliver(EVENTS)
    results = []
    d.addBoth(results.append)
    assert results == []
    pending.callback("done")
    assert results == [None]


def test_callable_sink_failures_become_failed_deferreds():
    def explode(events):
        raise RuntimeError("downstream is gone")

    assert outcome(CallableSink(explode).deliver(EVENTS)).check(RuntimeError)
    failing = CallableSink(lambda events: defer.fail(OSError("queue full")))
    assert outcome(failing.deliver(EVENTS)).check(OSError)


# -- sink_from_string ------------------------------------------------------------------------


def test_sink_from_string(tmp_path):
    assert isinstance(sink_from_string("stdout"), StdoutSink)
    assert isinstance(sink_from_string("null"), NullSink)
    path = tmp_path / "out.ndjson"
    sink = sink_from_string(f"file:{path}")
    assert isinstance(sink, FileSink)
    assert sink.path == str(path)
    outcome(sink.deliver(EVENTS))
    assert ndjson.decode(path.read_bytes()) == EVENTS
    sink.close()


@pytest.mark.parametrize("spec", ["", "STDOUT", "file", "files:/x", "elasticsearch", "nul"])
def test_sink_from_string_names_the_accepted_forms(spec):
    with pytest.raises(ConfigurationError, match=r"'stdout', 'file:PATH' or 'null'"):
        sink_from_string(spec)


def test_sink_from_string_file_needs_a_path(tmp_path):
    with pytest.raises(ConfigurationError, match="needs a path"):
        sink_from_string("file:")
    with pytest.raises(ConfigurationError, match="cannot open"):
        sink_from_string(f"file:{tmp_path}/no/such/dir/x")


class ShortWrites(io.RawIOBase):
    """A raw stream that takes at most a few bytes a call, and sometimes none (EAGAIN)."""

    def __init__(self):
        self.data = bytearray()
        self.calls = 0

    def writable(self):
        return True

    def fileno(self):
        return 1  # select() on stdout: writable at once in a test run

    def write(self, b):
        self.calls += 1
        if self.calls % 3 == 0:
            return None
        chunk = bytes(b[:7])
        self.data += chunk
        return len(chunk)


def test_stdout_sink_writes_the_whole_batch_through_short_and_refused_writes():
    stream = ShortWrites()
    assert outcome(StdoutSink(stream).deliver(EVENTS)) is None
    assert bytes(stream.data) == ndjson.encode(EVENTS)
    assert stream.calls > 3


# -- a torn last line (issue 11) -------------------------------------------------------------


def sink_on(path, **kwargs) -> tuple[FileSink, list[dict]]:
    """A FileSink opened on ``path`` and the log events its opening wrote."""
    with capturedLogs() as logged:
        sink = FileSink(str(path), **kwargs)
    return sink, list(logged)


def test_a_torn_last_line_is_cut_so_the_next_event_is_not_glued_to_it(tmp_path):
    """kill -9 in mid-write leaves part of a line; the next acknowledged event must parse."""
    path = tmp_path / "events.ndjson"
    whole = b'{"old":1}\n{"old":2}\n'
    torn = b'{"message":"cut short by kill -9","n'
    path.write_bytes(whole + torn)
    sink, logged = sink_on(path)
    try:
        assert outcome(sink.deliver(EVENTS)) is None
    finally:
        sink.close()
    assert ndjson.decode(path.read_bytes()) == [{"old": 1}, {"old": 2}, *EVENTS]
    warnings = [e for e in logged if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 1
    text = formatEvent(warnings[0])
    assert f"{len(torn)} bytes" in text and f"offset {len(whole)}" in text
    assert str(path) in text


def test_a_file_of_one_torn_line_is_cut_to_nothing(tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_bytes(b'{"first batch never acknowl')
    sink, logged = sink_on(path)
    outcome(sink.deliver(EVENTS[:1]))
    sink.close()
    assert path.read_bytes() == ndjson.encode(EVENTS[:1])
    assert "offset 0" in formatEvent(logged[0])


def test_a_torn_tail_longer_than_one_read_is_cut_at_the_last_newline(tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_bytes(b'{"old":1}\n' + b'{"big":"' + b"x" * 300_000)
    sink, _ = sink_on(path)
    outcome(sink.deliver(EVENTS[:1]))
    sink.close()
    assert ndjson.decode(path.read_bytes()) == [{"old": 1}, EVENTS[0]]


@pytest.mark.parametrize("content", [b"", b'{"old":1}\n', b"\n"])
def test_a_file_of_whole_lines_is_left_as_it_is_and_nothing_is_logged(tmp_path, content):
    path = tmp_path / "events.ndjson"
    path.write_bytes(content)
    sink, logged = sink_on(path)
    sink.close()
    assert path.read_bytes() == content
    assert logged == []


# -- one batch, one write --------------------------------------------------------------------


class CountingRaw(io.RawIOBase):
    """A raw stream that takes every write whole and remembers each one."""

    def __init__(self):
        self.writes = []

    def writable(self):
        return True

    def write(self, b):
        self.writes.append(bytes(b))
        return len(b)


BIG = [{"message": "x" * 300, "n": n} for n in range(125)]


def test_the_file_sink_writes_a_batch_in_one_append(tmp_path):
    """One write of the whole batch on an O_APPEND descriptor: another writer's append lands
    before or after the batch, never between its lines."""
    path = tmp_path / "events.ndjson"
    sink = FileSink(str(path))
    assert fcntl.fcntl(sink._file.fileno(), fcntl.F_GETFL) & os.O_APPEND
    sink._file = Counting(sink._file)
    outcome(sink.deliver(BIG))
    outcome(sink.deliver(EVENTS))
    sink.close()
    assert sink._file.writes == [len(ndjson.encode(BIG)), len(ndjson.encode(EVENTS))]
    assert ndjson.decode(path.read_bytes()) == BIG + EVENTS


class Counting:
    """A raw file whose writes (one system call each) are counted."""

    def __init__(self, real):
        self.real = real
        self.writes = []

    def write(self, data):
        self.writes.append(len(data))
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.parametrize("events", [EVENTS, BIG], ids=["small", "large"])
def test_the_stdout_sink_writes_a_batch_in_one_write_through_its_buffer(events):
    raw = CountingRaw()
    stream = io.BufferedWriter(raw, buffer_size=8192)
    sink = StdoutSink(stream)
    outcome(sink.deliver(events))
    outcome(sink.deliver(events))
    assert raw.writes == [ndjson.encode(events)] * 2


def test_a_file_that_may_be_appended_to_but_not_read_still_opens(tmp_path, monkeypatch):
    path = tmp_path / "events.ndjson"
    path.write_bytes(b'{"old":1}\n{"to')

    def append_only(name, mode="r", **kwargs):
        if "r" in mode:  # a file with mode 0200, as root never sees it
            raise PermissionError(13, "Permission denied")
        return open(name, mode, **kwargs)

    monkeypatch.setattr(sinks, "open", append_only, raising=False)
    sink, logged = sink_on(path)
    outcome(sink.deliver(EVENTS[:1]))
    sink.close()
    assert "cannot check" in formatEvent(logged[0])
    assert path.read_bytes().endswith(ndjson.encode(EVENTS[:1]))


def test_sink_from_string_with_fsync(tmp_path):
    sink = sink_from_string(f"file:{tmp_path / 'out.ndjson'}", fsync=True)
    assert isinstance(sink, FileSink) and sink.fsync
    sink.close()
    assert not sink_from_string(f"file:{tmp_path / 'other.ndjson'}").fsync
    for spec in ("stdout", "null"):
        with pytest.raises(ConfigurationError, match=r"fsync is for the file sink"):
            sink_from_string(spec, fsync=True)
