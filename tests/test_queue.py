"""The memory queue: held until acknowledged, handed out once, oldest first, with a capacity."""

import pytest
from zope.interface.verify import verifyObject

from twisted_logstash.interfaces import ICursorQueue, IEventQueue
from twisted_logstash.pipeline.queue import MemoryQueue


def events(start, stop):
    return [{"n": n} for n in range(start, stop)]


def fired(d):
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred did not fire"
    return results[0]


def test_provides_the_queue_interface_and_keeps_no_cursors():
    queue = MemoryQueue(10)
    assert verifyObject(IEventQueue, queue)
    # nothing it holds outlives the process, so neither would a read position
    assert not ICursorQueue.providedBy(queue)


def test_close_fires_at_once():
    queue = MemoryQueue(10)
    queue.put(events(0, 2))
    assert fired(queue.close()) is None


def test_put_fires_once_held_and_get_hands_out_oldest_first():
    queue = MemoryQueue(100)
    assert fired(queue.put(events(0, 3))) is None
    queue.put(events(3, 5))
    ticket, got = queue.get(4)
    assert got == events(0, 4)
    ticket2, got2 = queue.get(10)
    assert got2 == events(4, 5)
    assert ticket != ticket2


def test_get_returns_none_when_nothing_is_waiting():
    queue = MemoryQueue(10)
    assert queue.get(5) is None
    queue.put(events(0, 1))
    queue.get(5)
    assert queue.get(5) is None


def test_events_handed_out_stay_pending_until_acknowledged():
    queue = MemoryQueue(10)
    queue.put(events(0, 5))
    ticket, _ = queue.get(3)
    assert queue.pending() == 5
    assert queue.available() == 2
    queue.ack(ticket)
    assert queue.pending() == 2
    ticket, _ = queue.get(3)
    queue.ack(ticket)
    assert queue.pending() == 0


def test_acknowledging_an_unknown_or_used_ticket_raises():
    queue = MemoryQueue(10)
    queue.put(events(0, 2))
    ticket, _ = queue.get(2)
    queue.ack(ticket)
    with pytest.raises(KeyError):
        queue.ack(ticket)


def test_acknowledgements_out_of_order():
    queue = MemoryQueue(10)
    queue.put(events(0, 6))
    first, _ = queue.get(2)
    second, _ = queue.get(2)
    queue.ack(second)
    assert queue.pending() == 4
    queue.ack(first)
    assert queue.pending() == 2


def test_room_and_full_count_unacknowledged_events():
    queue = MemoryQueue(5)
    assert queue.room() == 5 and not queue.full
    queue.put(events(0, 4))
    ticket, _ = queue.get(4)
    assert queue.room() == 1
    queue.put(events(4, 5))
    assert queue.full and queue.room() == 0
    # put never refuses: the output is the one that holds back.
    queue.put(events(5, 7))
    assert queue.pending() == 7 and queue.room() == 0
    queue.ack(ticket)
    assert queue.room() == 2 and not queue.full


def test_not_durable_and_needs_a_capacity():
    assert MemoryQueue(1).durable is False
    with pytest.raises(ValueError):
        MemoryQueue(0)


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 7, 100])
def test_gets_of_any_size_across_puts_of_any_size_keep_the_order(limit):
    queue = MemoryQueue(1000)
    sizes = [3, 1, 0, 5, 2, 7]
    start = 0
    for size in sizes:
        fired(queue.put(events(start, start + size)))
        start += size
    got = []
    while (handed := queue.get(limit)) is not None:
        assert len(handed[1]) == min(limit, start - len(got))
        got += handed[1]
        assert queue.available() == start - len(got)
    assert got == events(0, start)
    assert queue.pending() == start


def test_a_batch_handed_out_whole_is_not_the_list_put():
    """The queue keeps its own copy: the caller may reuse its list after put."""
    queue = MemoryQueue(10)
    batch = events(0, 3)
    fired(queue.put(batch))
    batch.clear()
    assert queue.get(3)[1] == events(0, 3)
