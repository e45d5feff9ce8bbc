"""A file source on a disk queue resumes exactly after the last line whose event is queued.

The source hands each event's position along with it, the output stores the position with the
events it puts (splitting it when the queue takes part of a read), and ``resume`` reads it back:
nothing is derived later by reading the file again.
"""

from __future__ import annotations

import json

from support_transmitter import HANG, OK, FakeTransmitter
from twisted.internet.task import Clock
from twisted.logger import Logger

from twisted_logstash.pipeline.diskqueue import DiskQueue
from twisted_logstash.pipeline.output import Output
from twisted_logstash.pipeline.queue import MemoryQueue
from twisted_logstash.pipeline.resume import resume
from twisted_logstash.pipeline.sources import FileSource, GeneratorSource, file_key
from twisted_logstash.transport.hosts import Host

HOST = Host("127.0.0.1", 9800)


def write_lines(path, ids) -> None:
    with open(path, "a") as f:
        for i in ids:
            f.write(json.dumps({"id": i}) + "\n")


def line_ends(text: str) -> list[int]:
    """The offset just after each line of ``text`` that holds an event (not blank)."""
    ends, position = [], 0
    for line in text.split("\n")[:-1]:
        position += len(line.encode()) + 1
        if line.strip():
            ends.append(position)
    return ends


class Run:
    """One run of the output program's pipeline on a Clock: a file source resumed from a disk
    queue, an output with a scripted transmitter. ``die()`` ends it as a kill -9 would: the
    queue is closed with nothing acknowledged or stopped."""

    def __init__(self, path, qdir, default=OK, capacity=100, **kw):
        self.clock = Clock()
        self.queue = DiskQueue(str(qdir), capacity=capacity)
        self.source = FileSource(str(path), self.clock, **kw.pop("source", {}))
        self.resumed = resume(self.source, self.queue)
        self.fake = FakeTransmitter(self.clock, default=default)
        self.output = Output(self.fake, [HOST], self.clock, queue=self.queue, **kw)
        self.output.log = Logger(observer=lambda event: None)
        self.output.attach(self.source)
        self.output.startService()

    def run(self, steps: int = 1000) -> None:
        for _ in range(steps):
            self.clock.advance(0.05)
            if self.source.ended and not self.output.pending():
                return

    @property
    def cursor(self):
        return self.queue.cursor(self.source.key)

    def die(self) -> None:
        self.source.stopProducing()
        self.queue.close()


def ids(events):
    return [e.get("id", e.get("message")) for e in events]


def test_the_next_run_reads_on_after_what_the_first_run_queued(tmp_path):
    events = tmp_path / "events.ndjson"
    write_lines(events, range(100))
    first = Run(events, tmp_path / "q", source={"chunk_size": 700})
    assert first.resumed == 0
    first.run()
    assert ids(first.fake.delivered) == list(range(100))
    stored = first.cursor
    assert stored == events.stat().st_size
    first.die()

    write_lines(events, range(100, 150))  # the file grew while the program was down
    second = Run(events, tmp_path / "q")
    assert second.resumed == second.source.offset == stored
    second.run()
    assert ids(second.fake.delivered) == list(range(100, 150))
    second.die()


def test_a_put_of_part_of_a_read_stores_the_position_after_its_last_event(tmp_path):
    events = tmp_path / "events.ndjson"
    lines = [json.dumps({"id": i}) for i in range(10)]
    lines.insert(2, "   ")  # a blank line holds no event
    lines.insert(5, "")
    lines.insert(7, "not json: a message event")
    text = "".join(line + "\n" for line in lines)
    events.write_text(text)
    # Nothing is acknowledged and the queue holds 5: the output puts 5 events of the read and
    # keeps the other 6 waiting, with the source paused.
    first = Run(events, tmp_path / "q", default=HANG, capacity=5)
    first.run(steps=10)
    assert first.output.pending() == 11 and first.queue.pending() == 5
    # just after the fifth event's line: ids 0, 1, (blank), 2, 3, (blank), 4
    stored = first.cursor
    assert stored == line_ends(text)[4] == len("".join(line + "\n" for line in lines[:7]))
    first.die()  # the six events waiting outside the queue die with the process

    second = Run(events, tmp_path / "q")
    assert second.resumed == stored
    second.run()
    # each event once: the five from the queue, then the file read on after them
    assert ids(second.fake.delivered) == [0, 1, 2, 3, 4, "not json: a message event", 5, 6, 7, 8, 9]
    assert second.cursor == len(text)
    second.die()


def test_later_parts_of_a_read_move_the_position_event_by_event(tmp_path):
    events = tmp_path / "events.ndjson"
    write_lines(events, range(6))
    line = len(json.dumps({"id": 0}) + "\n")  # every line has the same length here
    run = Run(events, tmp_path / "q", default=HANG, capacity=2, batch_size=1, max_in_flight=1)
    run.run(steps=5)
    positions = [run.cursor]
    while run.fake.hung():
        run.fake.hung()[0].succeed()  # one event acknowledged: room for one more
        positions.append(run.cursor)
        run.run(steps=5)
    assert positions == [2 * line, 3 * line, 4 * line, 5 * line, 6 * line, 6 * line, 6 * line]
    assert ids(run.fake.delivered) == list(range(6))
    run.die()


def test_events_sent_by_callers_never_move_the_cursor(tmp_path):
    events = tmp_path / "events.ndjson"
    write_lines(events, range(3))
    run = Run(events, tmp_path / "q", default=HANG)
    run.output.send([{"id": -1}])  # not from the file: no position
    run.run(steps=5)
    assert run.cursor == events.stat().st_size
    assert sorted(ids(e for a in run.fake.attempts for e in a.events)) == [-1, 0, 1, 2]
    run.die()

    again = Run(events, tmp_path / "q")
    again.run()
    assert sorted(ids(again.fake.delivered)) == [-1, 0, 1, 2]  # from the queue, not the file
    again.die()


def test_a_file_shorter_than_its_cursor_is_read_from_the_start(tmp_path):
    events = tmp_path / "events.ndjson"
    write_lines(events, range(50))
    queue = DiskQueue(str(tmp_path / "q"))
    queue.put([], cursor=(file_key(str(events)), events.stat().st_size))
    queue.close()
    events.write_text("")
    write_lines(events, range(5))  # replaced by a shorter file
    run = Run(events, tmp_path / "q")
    assert run.resumed == run.source.offset == 0
    run.run()
    assert ids(run.fake.delivered) == list(range(5))
    run.die()


def test_other_sources_and_queues_are_left_alone(tmp_path):
    events = tmp_path / "events.ndjson"
    write_lines(events, range(3))
    clock = Clock()
    file_source = FileSource(str(events), clock)
    assert resume(file_source, MemoryQueue(10)) == 0  # keeps no cursors
    assert file_source.offset == 0
    disk = DiskQueue(str(tmp_path / "q"))
    disk.put([], cursor=("generator", 3))
    assert resume(GeneratorSource(5, clock), disk) == 0  # has no position
    disk.close()
