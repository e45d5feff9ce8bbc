"""Logstash's retry schedule: 0.1 s doubling to 30 s."""

import pytest

from twisted_logstash.pipeline.backoff import Backoff


def test_default_schedule_doubles_from_a_tenth_and_caps_at_thirty():
    backoff = Backoff()
    delays = [backoff.next() for _ in range(12)]
    assert delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert delays[8] == pytest.approx(25.6)
    assert delays[9:] == [30.0, 30.0, 30.0]


def test_reset_starts_over():
    backoff = Backoff(initial=1, factor=3, maximum=100)
    assert [backoff.next() for _ in range(3)] == [1, 3, 9]
    backoff.reset()
    assert backoff.next() == 1


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"factor": 0.5}, {"initial": 5, "maximum": 1}])
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)
