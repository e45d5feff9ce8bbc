"""What recording the sender in ``@metadata`` costs per event (``--enrich``, issue 13 item 4).

Times, with ``timeit``, the per-connection applier of ``codecs.events.Enrichment`` on a batch of
125 fresh events (the batch a Logstash output sends), for the settings that matter: the framed
wire's default (``source_metadata``, ECS ``v8``), its ECS-less names, and every field with
mutual TLS; on events without ``@metadata`` (a Logstash sender) and with the ``@metadata`` a
Beat sends. The copy of the batch the timing needs is timed alone and taken off.

    python bench/enrichcost.py [--repeat 7] [--number 2000]
"""

from __future__ import annotations

import argparse
import timeit

from twisted_logstash.codecs.events import Enrichment
from twisted_logstash.security.failures import TLSPeer

BATCH = 125
PEER = TLSPeer(
    True, "TLSv1.3", "CN=logstash-client,O=twisted-logstash test", "TLS_AES_256_GCM_SHA384"
)
CASES = [
    ("source_metadata, ECS v8 (the framed wire's default)", Enrichment(True, False, "v8"), None),
    ("source_metadata, ECS disabled", Enrichment(True, False, "disabled"), None),
    ("all, mutual TLS, ECS v8", Enrichment(True, True, "v8"), PEER),
    ("all, mutual TLS, ECS disabled", Enrichment(True, True, "disabled"), PEER),
]


def events(beats: bool) -> list[dict]:
    event = {"@timestamp": "2026-12-03T10:00:00.000Z", "@version": "1", "message": "x" * 100}
    if beats:
        return [
            {**event, "@metadata": {"beat": "filebeat", "type": "_doc", "version": "8.15.0"}}
            for _ in range(BATCH)
        ]
    return [dict(event) for _ in range(BATCH)]


def best(statement, repeat: int, number: int) -> float:
    """Seconds per call, the best of ``repeat`` runs of ``number`` calls."""
    return min(timeit.repeat(statement, repeat=repeat, number=number)) / number


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    for beats in (False, True):
        template = events(beats)
        if beats:  # each event's own @metadata, as decoded from its frame

            def copy(template=template):
                return [{**event, "@metadata": dict(event["@metadata"])} for event in template]

        else:

            def copy(template=template):
                return [dict(event) for event in template]

        base = best(copy, args.repeat, args.number)
        print("events with a Beat's @metadata" if beats else "events without @metadata")
        for name, enrichment, tls in CASES:
            apply = enrichment.applier("10.1.2.3", tls)
            cost = best(lambda apply=apply: apply(copy()), args.repeat, args.number) - base
            print(f"  {name}: {cost / BATCH * 1e9:.0f} ns per event ({cost * 1e6:.1f} µs a batch)")


if __name__ == "__main__":
    main()
