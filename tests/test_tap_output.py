"""The output program's own lifecycle, in process on a Clock (the real programs are in
test_programs.py)."""

from support_transmitter import RETRY, FakeTransmitter
from twisted.internet.task import Clock

from twisted_logstash.diskqueue import DiskQueue
from twisted_logstash.hosts import Host
from twisted_logstash.output import Output
from twisted_logstash.sources import GeneratorSource
from twisted_logstash.tap.output import OutputProgram

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
