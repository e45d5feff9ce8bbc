"""The file sink in the real input program: a torn last line left by ``kill -9``, and
``--sink-fsync`` (issue 11).

Killing the input with SIGKILL in the middle of a large write is hard to time, so the torn file
is written by hand, as the kill leaves it, and the real program is restarted on it.
"""

from __future__ import annotations

import orjson
import pytest
import pytest_twisted
from support_programs import Program, programs_fixture  # noqa: F401
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

import twisted_logstash
from twisted_logstash.errors import ConfigurationError
from twisted_logstash.pipeline.sinks import FileSink
from twisted_logstash.tap.input import Options, build, settings_from

PLAIN = ("--host", "127.0.0.1", "--port", "0", "--ssl-enabled", "false")
BEFORE = [{"message": f"acknowledged before the kill {n}", "n": n} for n in range(3)]
TORN = b'{"message":"half a line: the input was killed while writing th'


def every_line(path) -> list[dict]:
    """Each line of ``path`` parsed: one that does not parse fails the test."""
    return [orjson.loads(line) for line in path.read_bytes().split(b"\n")[:-1]]


@defer.inlineCallbacks
def ended_with_status_0(program: Program):
    status = yield program.ended()
    assert status == 0, program.failure(f"exited with {status}")


@pytest.mark.parametrize("fsync", [False, True], ids=["plain", "fsync"])
@pytest_twisted.inlineCallbacks
def test_the_input_restarted_on_a_torn_file_writes_only_lines_that_parse(programs, tmp_path, fsync):
    sink = tmp_path / "received.ndjson"
    sink.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in BEFORE) + TORN)
    args = [*PLAIN, f"--sink=file:{sink}"] + (["--sink-fsync=true"] if fsync else [])
    receiver = programs.input(*args)
    port = yield receiver.wait_port()
    sender = programs.output(
        f"--hosts=127.0.0.1:{port}", "--ssl-enabled=false", "--source=generator:500"
    )
    yield ended_with_status_0(sender)
    lines = every_line(sink)
    assert lines[:3] == BEFORE
    assert sorted(e["sequence"] for e in lines[3:]) == list(range(500))
    assert "cut a torn last line" in receiver.output
    assert f"{len(TORN)} bytes at offset" in receiver.output
    status = yield receiver.terminate()
    assert status == 0, receiver.output  # a clean stop by SIGTERM


# -- the flag, in process --------------------------------------------------------------------


def built_sink(*argv):
    options = Options()
    options.parseOptions(["--ssl-enabled", "false", *argv])
    settings, explicit, _ = settings_from(options, environ={})
    service, _ = build(settings, explicit, MemoryReactorClock())
    return service.factory.sink


def test_sink_fsync_reaches_the_file_sink(tmp_path):
    path = tmp_path / "events.ndjson"
    synced = built_sink(f"--sink=file:{path}", "--sink-fsync=true")
    assert isinstance(synced, FileSink) and synced.fsync
    assert not built_sink(f"--sink=file:{path}").fsync
    assert not built_sink(f"--sink=file:{path}", "--sink-fsync=false").fsync


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--sink=stdout", "--sink-fsync=true"), "`sink_fsync` is for the file sink"),
        (("--sink=null", "--sink-fsync=true"), "`sink_fsync` is for the file sink"),
        (("--sink-fsync=true",), "`sink_fsync` is for the file sink"),
        (("--sink=file:x", "--sink-fsync=always"), "`sink_fsync` takes true or false"),
    ],
)
def test_sink_fsync_mistakes_are_configuration_errors(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match=message):
        built_sink(*argv)


def test_the_library_takes_sink_fsync_too(tmp_path):
    service = twisted_logstash.logstash_input(
        sink=f"file:{tmp_path / 'events.ndjson'}", sink_fsync=True, ssl_enabled=False
    )
    assert service.factory.sink.fsync
    # the library names the setting, where the program names its flag
    with pytest.raises(ConfigurationError, match="`sink_fsync` is for the file sink"):
        twisted_logstash.logstash_input(
            sink=lambda events: None, sink_fsync=True, ssl_enabled=False
        )
