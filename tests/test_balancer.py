"""The balancer's rules, one test each, with time driven by a Clock."""

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from twisted_logstash.errors import TerminalError
from twisted_logstash.pipeline.balancer import Balancer
from twisted_logstash.transport.hosts import Host

A, B, C = Host("a", 1), Host("b", 1), Host("c", 1)


def make(hosts=(A, B, C), cooloff=60.0):
    clock = Clock()
    return Balancer(list(hosts), clock, cooloff=cooloff), clock


def test_fewest_in_flight_wins():
    balancer, _ = make()
    assert [balancer.pick() for _ in range(3)] == [A, B, C]
    balancer.succeeded(B)
    assert balancer.pick() == B
    assert balancer.in_flight(B) == 1


def test_ties_in_flight_go_to_the_least_recently_started():
    balancer, clock = make()
    first = [balancer.pick() for _ in range(3)]
    clock.advance(1)
    for host in first:
        balancer.succeeded(host)
    # All idle now: A started first, so it is the least recently started.
    assert balancer.pick() == A
    balancer.succeeded(A)
    assert balancer.pick() == B
    balancer.succeeded(B)
    assert balancer.pick() == C


def test_round_robin_when_every_attempt_finishes_at_once():
    balancer, clock = make()
    seen = []
    for _ in range(6):
        host = balancer.pick()
        seen.append(host)
        clock.advance(0.1)
        balancer.succeeded(host)
    assert seen == [A, B, C, A, B, C]


def test_a_failed_host_is_avoided_even_when_idle():
    balancer, _ = make(hosts=(A, B))
    assert balancer.pick() == A
    assert balancer.pick() == B
    balancer.failed(A)
    # A is idle, B is busy, but A failed within the cool-off.
    assert balancer.pick() == B
    assert balancer.pick() == B
    assert balancer.is_cooling_off(A)


def test_a_failed_host_returns_after_the_cooloff():
    balancer, clock = make(hosts=(A, B), cooloff=60.0)
    balancer.pick()
    balancer.failed(A)
    clock.advance(59.9)
    assert balancer.pick() == B
    balancer.succeeded(B)
    clock.advance(0.1)
    assert not balancer.is_cooling_off(A)
    assert balancer.pick() == A


def test_success_does_not_end_the_cooloff_early():
    balancer, _ = make(hosts=(A, B))
    balancer.pick()  # A
    balancer.pick()  # B
    balancer.failed(A)
    balancer.succeeded(B)
    assert balancer.pick() == B
    balancer.succeeded(B)
    assert balancer.pick() == B


def test_when_all_failed_recently_the_least_recently_failed_is_tried():
    balancer, clock = make()
    for _ in range(3):
        balancer.pick()
    balancer.failed(B)
    clock.advance(1)
    balancer.failed(C)
    clock.advance(1)
    balancer.failed(A)
    assert balancer.pick() == B
    # Still the least recently failed, whatever is in flight on it.
    assert balancer.pick() == B
    balancer.failed(B)
    balancer.succeeded(B)
    assert balancer.pick() == C


def test_failures_at_the_same_instant_are_ordered_by_sequence():
    balancer, _ = make(hosts=(A, B))
    balancer.pick()
    balancer.pick()
    balancer.failed(B)
    balancer.failed(A)
    assert balancer.pick() == B


def test_recovered_host_beats_a_cooling_one_with_less_load():
    balancer, clock = make(hosts=(A, B), cooloff=10)
    balancer.pick()  # A
    balancer.failed(A)
    clock.advance(5)
    balancer.pick()  # B
    balancer.failed(B)
    clock.advance(5)  # A's cool-off over, B's not
    assert balancer.pick() == A
    assert balancer.pick() == A


def test_finishing_an_attempt_that_was_never_started_is_a_bug():
    balancer, _ = make()
    with pytest.raises(ValueError):
        balancer.succeeded(A)


def test_needs_hosts_and_deduplicates():
    with pytest.raises(ValueError):
        Balancer([], Clock())
    balancer = Balancer([A, A, B], Clock())
    assert balancer.hosts == [A, B]


def test_one_host_is_picked_healthy_or_not_and_counted():
    clock = Clock()
    balancer = Balancer([A], clock, cooloff=10)
    assert balancer.pick() == A
    balancer.failed(A)
    assert balancer.is_cooling_off(A)
    assert balancer.pick() == A
    assert balancer.in_flight(A) == 1
    balancer.succeeded(A)
    assert balancer.in_flight(A) == 0
    with pytest.raises(ValueError, match="no attempt in flight"):
        balancer.succeeded(A)
    with pytest.raises(KeyError):
        balancer.succeeded(Host("elsewhere", 1))


def test_a_batch_refused_for_good_leaves_its_host_in_the_rotation():
    """A receiver that answered 400/413 refused that batch, not the work: as Logstash's own load
    balancer (which marks a host only when the request itself failed), the host is neither
    isolated nor put behind the others, and the refusal is still counted by reason."""
    balancer, clock = make(hosts=(A, B))
    assert balancer.pick() == A
    with capturedLogs() as events:
        balancer.refused(A, TerminalError("the receiver answered 413", status=413))
    assert not balancer.is_cooling_off(A) and not balancer.all_isolated()
    assert balancer.in_flight(A) == 0
    assert balancer.record(A).failures == {"status_4xx": 1}
    assert balancer.isolations() == []
    assert [e for e in events if "isolated" in formatEvent(e)] == []
    clock.advance(1)
    assert balancer.pick() == B  # least recently started, as after a success
    assert balancer.pick() == A


def test_the_only_host_refusing_a_batch_is_not_reported_down():
    balancer, _ = make(hosts=(A,))
    balancer.pick()
    balancer.refused(A, TerminalError("the receiver answered 400", status=400))
    assert not balancer.all_isolated() and balancer.isolations() == []
