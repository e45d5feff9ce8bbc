"""The programs' ``--help``, grouped: one group table per program.

twisted's ``usage.Options`` lists every flag in one alphabetical block; with some fifty flags
that hides what belongs together. ``grouped_usage`` renders the same entries (in twisted's layout)
under the groups of the program's table, in the table's order. A flag that
no group names is listed under "Other" rather than lost (and a test fails for it); a name in a
table that is not (yet) a flag is skipped, so a table may name flags being added elsewhere.
"""

from __future__ import annotations

import os
import textwrap

from twisted.python import usage

#: the groups, in this order, for both programs ("Listen" is the input's, "Connect" the output's)
GROUPS = (
    "Listen",
    "Connect",
    "TLS",
    "Authentication",
    "Source and sink",
    "Batching and queue",
    "Limits and timeouts",
    "Per wire",
    "Operation",
)

_TLS_SHARED = (
    "ssl-enabled",
    "ssl-certificate",
    "ssl-key",
    "ssl-key-passphrase",
    "ssl-keystore-path",
    "ssl-keystore-password",
    "ssl-certificate-authorities",
)
_AUTHENTICATION = ("username", "password", "password-file")
_OPERATION = (
    "metrics-port",
    "metrics-host",
    "stats-interval",
    "log-level",
    "log-format",
    "log-rotate-length",
    "log-max-rotated",
)
_ALWAYS = ("help", "version")

INPUT_GROUPS: dict[str, tuple[str, ...]] = {
    "Listen": ("protocol", "host", "port", "endpoint", "workers"),
    "TLS": (
        *_TLS_SHARED,
        "ssl-client-authentication",
        "ssl-handshake-timeout",
        "ssl-supported-protocols",
        "ssl-cipher-suites",
    ),
    "Authentication": _AUTHENTICATION,
    "Source and sink": (
        "sink",
        "sink-fsync",
        "type",
        "tags",
        "add-field",
        "enrich",
        "ecs-compatibility",
    ),
    "Limits and timeouts": ("max-connections", "max-held-bytes"),
    "Per wire": (
        "max-pending-requests",
        "max-content-length",
        "sink-timeout",
        "header-timeout",
        "body-timeout",
        "idle-timeout",
        "client-inactivity-timeout",
    ),
    "Operation": (*_OPERATION, *_ALWAYS),
}

OUTPUT_GROUPS: dict[str, tuple[str, ...]] = {
    "Connect": ("protocol", "hosts"),
    "TLS": (
        *_TLS_SHARED,
        "ssl-truststore-path",
        "ssl-truststore-password",
        "ssl-verification-mode",
        "ssl-supported-protocols",
        "ssl-cipher-suites",
    ),
    "Authentication": _AUTHENTICATION,
    "Source and sink": ("source", "dead-letter"),
    "Batching and queue": (
        "batch-size",
        "batch-max-bytes",
        "batch-delay",
        "max-in-flight",
        "queue",
        "queue-max-events",
        "queue-max-bytes",
        "queue-retry-timeout",
        "queue-sync",
    ),
    "Limits and timeouts": ("timeout", "cooloff", "stop-timeout"),
    "Per wire": ("compression", "compression-level"),
    "Operation": (*_OPERATION, "on-refused", "progress", *_ALWAYS),
}


def flags_of(options: usage.Options) -> list[str]:
    """Every long flag ``options`` takes (``--help`` and ``--version`` too), without ``--``."""
    return [opt[:-1] if opt.endswith("=") else opt for opt in options.longOpt]


def grouped(options: usage.Options, groups: dict[str, tuple[str, ...]]) -> list[tuple[str, list]]:
    """``(group, flags)`` for every group holding at least one of ``options``' flags, in
    ``GROUPS`` order, then "Other" for flags no group names."""
    real = flags_of(options)
    placed: set[str] = set()
    result = []
    for name in sorted(groups, key=GROUPS.index):
        flags = [flag for flag in groups[name] if flag in real and flag not in placed]
        placed.update(flags)
        if flags:
            result.append((name, flags))
    other = [flag for flag in real if flag not in placed]
    if other:
        result.append(("Other", other))
    return result


def grouped_usage(
    options: usage.Options, groups: dict[str, tuple[str, ...]], width: int | None = None
) -> str:
    """The options part of ``--help``: each group's flags in the table's order (twisted's
    layout, one column of flags aligned over every group), then the program's description."""
    if not width:
        width = int(os.environ.get("COLUMNS", "80"))
    shorts = {
        long: short for short, long in options.synonyms.items() if short != long and len(short) == 1
    }
    takes = {opt[:-1] for opt in options.longOpt if opt.endswith("=")}
    # the flags one wire alone has (the programs' ONLY tables), marked as such
    only = {
        name.replace("_", "-"): wire
        for wire, names in (getattr(options, "wire_only", None) or {}).items()
        for name in names
    }
    sections = grouped(options, groups)
    heads = {
        flag: (f"  -{shorts[flag]}, " if flag in shorts else "      ")
        + f"--{flag}"
        + ("=" if flag in takes else "")
        for _, flags in sections
        for flag in flags
    }
    column = max(len(head) for head in heads.values()) + 2
    chunks = []
    for name, flags in sections:
        lines = [f"{name}:"]
        for flag in flags:
            doc = " ".join((options.docs.get(flag) or "").split())
            wire = only.get(flag)
            if wire:
                doc = f"{doc} ({wire} only)"
            wrapped = textwrap.wrap(doc, max(20, width - column), break_on_hyphens=False) or [""]
            lines.append(heads[flag].ljust(column) + wrapped[0])
            lines.extend(" " * column + more for more in wrapped[1:])
        chunks.append("\n".join(lines) + "\n")
    text = "\n".join(chunks)
    longdesc = getattr(options, "longdesc", None) or ""
    if longdesc:
        text += "\n" + "\n".join(textwrap.wrap(longdesc, width)).strip() + "\n"
    return text
