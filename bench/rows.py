"""The rows of ``make bench``: what each measures, which processes it runs, in printed order.

A row is a client process (a load generator, a sender, a codec loop) and, for most, a receiver
process. How the processes are started, measured and stopped is bench/harness.py's business;
this module only says what they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: the C load generator (bench/cloadgen.c), replaying the row's wire's payloads
CLOADGEN = ["cloadgen"]
#: which receiver CPU is the figure of a group ("peer_cpu") or the client's ("self_cpu")
RECEIVER_GROUPS = ("receivers", "workers", "external")
EXTERNAL_WIRES = ("native", "framed", "native-tls", "framed-tls")

NATIVE_INPUT = ("twisted_logstash.wires.native.server",)
FRAMED_INPUT = ("twisted_logstash.wires.lumberjack.server",)
NATIVE_OUTPUT = ("twisted_logstash.wires.native.client", "twisted_logstash.pipeline.output")
FRAMED_OUTPUT = ("twisted_logstash.wires.lumberjack.client", "twisted_logstash.pipeline.output")


@dataclass
class Measurement:
    """One row of the table: an optional receiver process and one client process."""

    name: str
    group: str
    title: str
    client: list[str]
    """a script of bench/ and its arguments, or CLOADGEN"""
    receiver: list[str] | None = None
    """bench/receivers.py's arguments (launch "receivers"); None: no receiver"""
    tls: bool = False
    needs: tuple[str, ...] = ()
    wire: str = "native"
    """whose bytes: "native" (the gzip bodies) or "framed" (the Lumberjack windows); it
    picks the C load generator's payloads and the digest the client must report"""
    launch: str = "receivers"
    """how the receiver runs: "receivers" (bench/receivers.py), "cserve" (the C program's
    ACKing framed receiver), "twistd" (``twistd -n logstash-input``), "external" (--external)"""
    workers: int | None = None
    """twistd: the ``--workers`` value"""
    flags: tuple[str, ...] = ("--enrich=none",)
    """twistd: more flags; by default the input records nothing about the sender, as the
    single-process rows (a factory built directly) do, so that the rows compare"""
    command: str | None = None
    """external: the command line, with {port} {cert} {key} {ca} {certdir}"""
    pin: bool = True
    """client and receiver on distinct cores (when --no-pin is not given)"""

    @property
    def measured(self) -> str:
        """The CPU figure events per CPU-second is taken from."""
        return "peer_cpu" if self.group in RECEIVER_GROUPS else "self_cpu"


def measurements(externals: list[str] | None = None) -> list[Measurement]:
    """The default run, in the order printed; ``externals`` are --external values."""
    ms = [
        Measurement("codec", "codec", "isal gunzip + orjson per line, no network", ["codec.py"]),
        Measurement(
            "codec-framed",
            "codec",
            "inflate (isal) + walk J frames + orjson each, no network",
            ["codec.py", "--wire", "framed"],
            wire="framed",
        ),
    ]
    for tls in (False, True):
        suffix, label = ("-tls", " over TLS") if tls else ("", "")
        ms += [
            Measurement(
                "aiohttp" + suffix,
                "receivers",
                "aiohttp.web reference" + label,
                CLOADGEN,
                ["aiohttp"],
                tls,
            ),
            Measurement(
                "native" + suffix,
                "receivers",
                "our native input (HttpInputFactory)" + label,
                CLOADGEN,
                ["native"],
                tls,
                NATIVE_INPUT,
            ),
        ]
        if not tls:
            ms.append(
                Measurement(
                    "native-asyncio",
                    "receivers",
                    "our native input on the asyncio reactor",
                    CLOADGEN,
                    ["native", "--reactor", "asyncio"],
                    needs=NATIVE_INPUT,
                )
            )
        ms += [
            Measurement(
                "twistedweb" + suffix,
                "receivers",
                "twisted.web Resource reference" + label,
                CLOADGEN,
                ["twistedweb"],
                tls,
            ),
            Measurement(
                "framed" + suffix,
                "receivers",
                "our framed input (LumberjackInputFactory)" + label,
                CLOADGEN,
                ["framed"],
                tls,
                FRAMED_INPUT,
                wire="framed",
            ),
        ]
    ms += workers_rows()
    ms += [external(spec) for spec in externals or ()]
    ms += sender_rows()
    # the output's queue alone, put(125)+get(125)+ack (bench/diskqueue.py has the full table)
    ms += [
        Measurement(
            f"queue-{kind}",
            "queues",
            title,
            ["diskqueue.py", "--row", kind],
            needs=("twisted_logstash.pipeline.diskqueue",),
        )
        for kind, title in (
            ("memory", "MemoryQueue cycle of 125, no network"),
            ("normal", "DiskQueue sync=normal (kill -9 safe) cycle of 125"),
            ("full", "DiskQueue sync=full (fsync per put and ack) cycle of 125"),
        )
    ]
    return ms


def worker_counts() -> list[int]:
    """1, 2, then powers of two up to the cores, and the cores."""
    top = max(2, os.cpu_count() or 1)
    counts = [1]
    while counts[-1] * 2 <= top:
        counts.append(counts[-1] * 2)
    return counts if counts[-1] == top else [*counts, top]


def workers_rows() -> list[Measurement]:
    """``twistd -n logstash-input --workers N`` on each wire, null sink. Unpinned: N workers
    need N cores, so the load generator shares them (it takes a few % of one core); events per
    CPU-second of the parent and all its workers is the figure, events/s shows the scaling."""
    return [
        Measurement(
            f"{wire}-w{n}",
            "workers",
            f"twistd logstash-input --protocol {protocol} --workers {n} --enrich none",
            CLOADGEN,
            tls=False,
            needs=NATIVE_INPUT if wire == "native" else FRAMED_INPUT,
            wire=wire,
            launch="twistd",
            workers=n,
            pin=False,
        )
        for wire, protocol in (("native", "http"), ("framed", "lumberjack"))
        for n in worker_counts()
    ] + [
        Measurement(
            "framed-w1-enrich",
            "workers",
            "the same, recording the sender as Logstash's beats input does by default "
            "(enrich source_metadata, ECS v8)",
            CLOADGEN,
            tls=False,
            needs=FRAMED_INPUT,
            wire="framed",
            launch="twistd",
            workers=1,
            flags=(),
            pin=False,
        )
    ]


def sender_rows() -> list[Measurement]:
    """Senders, each into a receiver that is not its bottleneck: the aiohttp reference on the
    native wire, the C program's ACKing receiver (inflate, count, ACK) on the framed wire."""
    into = ["aiohttp"]
    return [
        Measurement(
            "send-aiohttp",
            "senders",
            "aiohttp client reference sender (native wire)",
            ["senders.py", "aiohttp"],
            into,
        ),
        Measurement(
            "send-transmitter",
            "senders",
            "our HttpTransmitter, 4 in flight",
            ["senders.py", "transmitter"],
            into,
            needs=NATIVE_OUTPUT[:1],
        ),
        Measurement(
            "send-output",
            "senders",
            "our Output service end to end (send()), native wire",
            ["senders.py", "output"],
            into,
            needs=NATIVE_OUTPUT,
        ),
        Measurement(
            "send-output-framed",
            "senders",
            "our Output, framed wire (zlib 3), into the C ACKing receiver",
            ["senders.py", "output-framed"],
            needs=FRAMED_OUTPUT,
            launch="cserve",
        ),
        Measurement(
            "e2e-native",
            "senders",
            "our Output into our native input (both ends ours)",
            ["senders.py", "output"],
            ["native"],
            needs=NATIVE_OUTPUT + NATIVE_INPUT,
        ),
        Measurement(
            "e2e-framed",
            "senders",
            "our Output into our framed input (both ends ours)",
            ["senders.py", "output-framed"],
            ["framed"],
            needs=FRAMED_OUTPUT + FRAMED_INPUT,
        ),
        Measurement(
            "send-agent",
            "senders",
            "twisted.web.client Agent reference sender",
            ["senders.py", "agent"],
            into,
        ),
    ]


def external(spec: str) -> Measurement:
    """A row for ``--external NAME:WIRE=COMMAND`` (see bench/run.py's docstring)."""
    head, sep, command = spec.partition("=")
    name, colon, wire = head.partition(":")
    name, wire, command = name.strip(), wire.strip(), command.strip()
    if not (sep and colon and name and command) or wire not in EXTERNAL_WIRES:
        raise SystemExit(
            f"--external takes NAME:WIRE=COMMAND with WIRE one of {', '.join(EXTERNAL_WIRES)}"
            f", not {spec!r}"
        )
    tls = wire.endswith("-tls")
    return Measurement(
        name,
        "external",
        f"external ({wire}): {command}",
        CLOADGEN,
        tls=tls,
        wire=wire.removesuffix("-tls"),
        launch="external",
        command=command,
        pin=False,
    )


def select(only: list[str], externals: list[str] | None = None) -> list[Measurement]:
    """The rows named in ``only`` (names or groups, comma lists), all when empty."""
    ms = measurements(externals)
    names = [m.name for m in ms]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise SystemExit(f"--external names must be new, not {', '.join(sorted(clash))}")
    wanted = {w.strip() for item in only for w in item.split(",") if w.strip()}
    if not wanted:
        return ms
    unknown = wanted - {m.name for m in ms} - {m.group for m in ms}
    if unknown:
        raise SystemExit(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    return [m for m in ms if m.name in wanted or m.group in wanted]
