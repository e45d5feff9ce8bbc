"""What every Twisted process of the harness does first: pick a reactor, keep logs quiet."""

from __future__ import annotations

import sys

REACTORS = ("default", "epoll", "poll", "select", "asyncio")


def install_reactor(name: str) -> str:
    """Install the named reactor before anything imports the default one; its class name."""
    if name == "epoll":
        from twisted.internet import epollreactor

        epollreactor.install()
    elif name == "poll":
        from twisted.internet import pollreactor

        pollreactor.install()
    elif name == "select":
        from twisted.internet import selectreactor

        selectreactor.install()
    elif name == "asyncio":
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import reactor

    return type(reactor).__name__


def quiet_logs() -> None:
    """Warnings and errors to stderr, as a deployed service would keep; nothing buffered."""
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    observer = FilteringLogObserver(
        textFileLogObserver(sys.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)],
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
