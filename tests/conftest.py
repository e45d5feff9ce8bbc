"""Shared fixtures. Per-area helpers live in tests/support_*.py modules."""

import pytest
from twisted.logger import globalLogPublisher

from tests.support_tls import certs  # noqa: F401

#: how the reactor words a failure escaping a timed call or its loop
REACTOR_FAILURES = {"while handling timed call", "Unexpected error in main loop"}


@pytest.fixture(autouse=True)
def no_unhandled_errors():
    """Fail a test during which the reactor logged an unhandled error (an exception escaping a
    protocol or a timer: ``log.err()`` with no reason given), as Twisted's trial does."""
    found: list[str] = []

    def observe(event):
        legacy = event.get("failure")  # the reactor's log.err() around a read or write
        if legacy is not None and event.get("isError") and event.get("why") is None:
            found.append(legacy.getTraceback())
        failure = event.get("log_failure")  # a timed call, the main loop
        if failure is not None and event.get("log_format") in REACTOR_FAILURES:
            found.append(failure.getTraceback())

    globalLogPublisher.addObserver(observe)
    yield
    globalLogPublisher.removeObserver(observe)
    if found:
        pytest.fail("unhandled error logged:\n" + "\n".join(found), pytrace=False)
