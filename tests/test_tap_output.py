"""The output program's own lifecycle, in process on a Clock (the real programs are in
test_programs.py)."""

import pytest
from support_transmitter import RETRY, FakeTransmitter
from twisted.internet.task import Clock

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.pipeline.diskqueue import DiskQueue
from twisted_logstash.pipeline.output import Output
from twisted_logstash.pipeline.sources import GeneratorSource
from twisted_logstash.tap.output import OutputProgram
from twisted_logstash.transport.hosts import Host

HOST = Host("127.0.0.1", 9800)


def test_stopping_closes_the_disk_queue_and_keeps_what_was_not_acknowledged(tmp_path):
    clock = Clock()
    fake = FakeTransmitter(clock, default=RETRY)
    queue = DiskQueue(str(tmp_path / "q"), capacity=100)
    output = Output(fake, [HOST], clock, batch_size=10, queue=queue)
    codes = []
    program = OutputProgram(output, GeneratorSource(30, clock), clock, exit=codes.append)
    program.startService()
    for _ in range(50):
        clock.advance(0.1)
    stopped = program.stopService()
    clock.advance(11)  # past the stop timeout: attempts still in flight are abandoned
    assert stopped.called
    assert codes == [1]  # events left unacknowledged
    # The directory lock was released: this process can open the queue again, and finds the
    # events that no receiver acknowledged.
    again = DiskQueue(str(tmp_path / "q"), capacity=100)
    assert again.pending() == 30


def queue_of(tmp_path, *argv):
    from twisted_logstash.tap.output import Options, make_queue, settings_from

    options = Options()
    options.parseOptions(["--hosts", "127.0.0.1", "--ssl-enabled", "false", *argv])
    settings, _, _ = settings_from(options, environ={})
    return make_queue(settings, Clock())


def test_queue_sync_full_reaches_the_disk_queue(tmp_path):
    queue = queue_of(tmp_path, f"--queue=disk:{tmp_path / 'q'}", "--queue-sync=full")
    assert queue.sync == "full"
    queue.close()


def test_queue_sync_defaults_to_normal(tmp_path):
    queue = queue_of(tmp_path, f"--queue=disk:{tmp_path / 'q'}")
    assert queue.sync == "normal"
    queue.close()


@pytest.mark.parametrize("argv", [["--queue-sync=always"], ["--queue=memory", "--queue-sync=full"]])
def test_bad_queue_sync_is_a_configuration_error(tmp_path, argv):
    with pytest.raises(ConfigurationError, match="--queue-sync"):
        queue_of(tmp_path, *argv)


def output_of(tmp_path, *argv):
    from twisted_logstash.tap.output import Options, build_output, settings_from

    options = Options()
    dead = f"--dead-letter={tmp_path / 'dead.ndjson'}"
    options.parseOptions(["--hosts", "127.0.0.1", "--ssl-enabled", "false", dead, *argv])
    settings, explicit, _ = settings_from(options, environ={})
    return build_output(settings, explicit, Clock())[0]


def test_batch_max_bytes_reaches_the_output_and_defaults_to_20_mib(tmp_path):
    assert output_of(tmp_path).batch_max_bytes == 20 * 1024 * 1024
    assert output_of(tmp_path, "--batch-max-bytes=65536").batch_max_bytes == 65536


@pytest.mark.parametrize("value", ["0", "-1", "20MiB"])
def test_bad_batch_max_bytes_is_a_configuration_error(tmp_path, value):
    with pytest.raises(ConfigurationError, match="`batch_max_bytes`"):
        output_of(tmp_path, f"--batch-max-bytes={value}")
