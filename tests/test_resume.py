"""A file source on a disk queue resumes after the last line whose events are queued."""

from __future__ import annotations

import json

from twisted.internet.task import Clock

from twisted_logstash.pipeline.diskqueue import DiskQueue
from twisted_logstash.pipeline.queue import MemoryQueue
from twisted_logstash.pipeline.resume import CursorQueue, cursor_key, resumable
from twisted_logstash.pipeline.sources import FileSource, GeneratorSource


def write_lines(path, ids) -> None:
    with open(path, "a") as f:
        for i in ids:
            f.write(json.dumps({"id": i}) + "\n")


def run(source, clock, consumer, ticks: int = 1000) -> None:
    source.start(consumer)
    for _ in range(ticks):
        if source.ended or source.paused:
            return
        clock.advance(0)


def drain(queue) -> list[int]:
    got = queue.get(100000)
    if got is None:
        return []
    ticket, events = got
    queue.ack(ticket)
    return [e["id"] for e in events]


def test_the_next_run_reads_on_after_what_the_first_run_queued(tmp_path):
    events = tmp_path / "events.ndjson"
    write_lines(events, range(100))
    clock = Clock()
    queue = DiskQueue(str(tmp_path / "q"))
    source, wrapped = resumable(FileSource(str(events), clock, chunk_size=700), queue, clock)
    assert isinstance(wrapped, CursorQueue)
    run(source, clock, wrapped.put)
    assert wrapped.pending() == 100
    assert queue.cursor(cursor_key(str(events))) == events.stat().st_size
    assert drain(wrapped) == list(range(100))
    queue.close()

    write_lines(events, range(100, 150))  # the file grew while the program was down
    clock = Clock()
    queue = DiskQueue(str(tmp_path / "q"))
    source, wrapped = resumable(FileSource(str(events), clock), queue, clock)
    assert source.offset > 0
    run(source, clock, wrapped.put)
    assert drain(wrapped) == list(range(100, 150))
    queue.close()


def test_a_put_of_part_of_a_read_stores_the_position_after_its_last_line(tmp_path):
    events = tmp_path / "events.ndjson"
    lines = [json.dumps({"id": i}) for i in range(10)]
    lines.insert(2, "   ")  # a blank line holds no event
    lines.insert(5, "")
    lines.insert(7, "not json: a message event")
    events.write_text("".join(line + "\n" for line in lines))
    clock = Clock()
    queue = DiskQueue(str(tmp_path / "q"))
    source, wrapped = resumable(FileSource(str(events), clock), queue, clock)

    def put_part(batch):
        wrapped.put(batch[:5])  # the queue took only part; the rest waits outside it
        source.pauseProducing()

    run(source, clock, put_part)
    key = cursor_key(str(events))
    # just after the fifth event's line: ids 0, 1, (blank), 2, 3, (blank), 4
    assert queue.cursor(key) == len("".join(line + "\n" for line in lines[:7]))
    queue.close()  # the process dies here: the rest of the read was never queued

    clock = Clock()
    queue = DiskQueue(str(tmp_path / "q"))
    source, wrapped = resumable(FileSource(str(events), clock), queue, clock)
    run(source, clock, wrapped.put)
    got = []
    while True:
        taken = queue.get(100)
        if taken is None:
            break
        got.extend(e.get("id", e.get("message")) for e in taken[1])
        queue.ack(taken[0])
    # each event once: the five queued, then the file read on after them
    assert got == [0, 1, 2, 3, 4, "not json: a message event", 5, 6, 7, 8, 9]
    queue.close()


def test_later_parts_of_a_read_move_the_position_line_by_line(tmp_path):
    events = tmp_path / "events.ndjson"
    write_lines(events, range(6))
    clock = Clock()
    queue = DiskQueue(str(tmp_path / "q"))
    source, wrapped = resumable(FileSource(str(events), clock), queue, clock)
    parts = []
    run(source, clock, lambda batch: (parts.append(batch), source.pauseProducing()))
    (batch,) = parts
    key = cursor_key(str(events))
    line = len(json.dumps({"id": 0}) + "\n")  # every line has the same length here
    positions = []
    for piece in (batch[:1], batch[1:4], batch[4:]):
        wrapped.put(piece)
        positions.append(queue.cursor(key))
    assert positions == [line, 4 * line, 6 * line]
    queue.close()


def test_events_from_elsewhere_stop_the_cursor_without_losing_any(tmp_path):
    events = tmp_path / "events.ndjson"
    write_lines(events, range(3))
    clock = Clock()
    queue = DiskQueue(str(tmp_path / "q"))
    source, wrapped = resumable(FileSource(str(events), clock), queue, clock)
    wrapped.put([{"id": -1}])  # not from the source
    run(source, clock, wrapped.put)
    assert queue.cursor(cursor_key(str(events))) is None
    assert sorted(drain(wrapped)) == [-1, 0, 1, 2]
    queue.close()


def test_a_file_shorter_than_its_cursor_is_read_from_the_start(tmp_path):
    events = tmp_path / "events.ndjson"
    write_lines(events, range(50))
    queue = DiskQueue(str(tmp_path / "q"))
    queue.put([], cursor=(cursor_key(str(events)), events.stat().st_size))
    events.write_text("")
    write_lines(events, range(5))  # replaced by a shorter file
    clock = Clock()
    source, wrapped = resumable(FileSource(str(events), clock), queue, clock)
    assert source.offset == 0
    run(source, clock, wrapped.put)
    assert drain(wrapped) == list(range(5))
    queue.close()


def test_other_sources_and_queues_are_left_alone(tmp_path):
    events = tmp_path / "events.ndjson"
    write_lines(events, range(3))
    clock = Clock()
    memory = MemoryQueue(10)
    file_source = FileSource(str(events), clock)
    assert resumable(file_source, memory, clock) == (file_source, memory)
    generator = GeneratorSource(5, clock)
    disk = DiskQueue(str(tmp_path / "q"))
    assert resumable(generator, disk, clock) == (generator, disk)
    disk.close()
