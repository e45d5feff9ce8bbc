"""A twistd log observer on standard error: ``twistd --logger=support_stderrlog.observer``.

For a program whose standard output is its sink: its log lines then never share (or wait for)
that pipe. The child needs this directory on PYTHONPATH.
"""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, textFileLogObserver


def observer() -> ILogObserver:
    return textFileLogObserver(sys.stderr)
