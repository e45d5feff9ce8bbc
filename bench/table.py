"""The printed table of ``make bench``: Markdown, so that docs/benchmarks.md can take it as is."""

from __future__ import annotations

GROUP_TITLES = {
    "codec": "a. codec ceilings (one core, no network, the very bytes the receivers get)",
    "receivers": "b. receivers under the C load generator (bench/cloadgen.c: pre-encoded bytes, "
    "one request or window in flight on each of 4 connections)",
    "workers": "c. twistd -n logstash-input --workers N, null sink (receiver CPU: the parent and "
    "all its workers; unpinned)",
    "external": "d. receivers from outside the project (--external), same load",
    "senders": "e. senders end to end (native wire: into the aiohttp reference receiver; framed "
    "wire: into the C ACKing receiver; e2e-*: into ours)",
    "queues": "f. the output's queue alone: put(125) + get(125) + ack, one core, no network",
}

#: the codec ceiling each wire's receivers are read against
CEILINGS = {"native": "codec", "framed": "codec-framed"}
#: the sender every sender is read against (issue 12: ours at >= 1.5x of it, on both wires)
SENDER_REFERENCE = "send-aiohttp"


def table(rows: list[dict]) -> str:
    lines = []
    for group, title in GROUP_TITLES.items():
        members = [r for r in rows if r["group"] == group]
        if not members:
            continue
        lines += [f"**{title}**", ""]
        lines += [
            "| name | what | events/s median | range (min-max) | events per CPU-s "
            "| client CPU | receiver CPU | other CPU | clean windows |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in members:
            if r["status"] != "ok":
                lines.append(
                    f"| {r['name']} | {r['title']} | {r['status']}: {r['reason']} | | | | | | |"
                )
                continue
            flag = " (!)" if r["problems"] else (" (~)" if r.get("warnings") else "")
            lines.append(
                f"| {r['name']} | {r['title']} | {r['median']:,}{flag} | "
                f"{r['min']:,}-{r['max']:,} | {num(r['per_cpu_s'])} | {pct(r['client_cpu'])} | "
                f"{pct(r['receiver_cpu'])} | {pct(r['other_cpu'])} | {r['clean']} |"
            )
        lines.append("")
    lines += against_ceilings(rows)
    notes = [
        (r["name"], "driven by bench/loadgen.py (Python): see its client CPU")
        for r in rows
        if "loadgen.py" in r.get("client", "")
    ]
    for key, title in (("problems", "Problems (rows marked (!))"), ("warnings", "Warnings (~)")):
        notes_of = [(r["name"], p) for r in rows for p in r.get(key, [])]
        if notes_of:
            lines.append(title + ":")
            lines += [f"- {name}: {p}" for name, p in notes_of]
            lines.append("")
    if notes:
        lines.append("Notes:")
        lines += [f"- {name}: {p}" for name, p in notes]
        lines.append("")
    return "\n".join(lines)


def against_ceilings(rows: list[dict]) -> list[str]:
    """Each receiver's events per CPU-second as a share of its wire's codec ceiling (the
    figure issue 12 asks >= 0.8x of), and each sender's against the aiohttp sender's."""
    by_name = {r["name"]: r for r in rows if r["status"] == "ok" and r.get("per_cpu_s")}
    out = []
    for r in rows:
        wire = r.get("wire")
        ceiling = by_name.get(CEILINGS.get(wire, ""))
        if r["group"] in ("receivers", "workers", "external") and ceiling and r.get("per_cpu_s"):
            out.append(f"{r['name']} {r['per_cpu_s'] / ceiling['per_cpu_s']:.2f}x")
    lines = []
    if out:
        lines += ["Events per CPU-second against the codec ceiling of the wire: " + ", ".join(out)]
        lines.append("")
    reference = by_name.get(SENDER_REFERENCE)
    senders = [
        f"{r['name']} {r['per_cpu_s'] / reference['per_cpu_s']:.2f}x"
        for r in rows
        if reference and r["group"] == "senders" and r.get("per_cpu_s") and r is not reference
    ]
    if senders:
        lines += [f"Sender events per CPU-second against {SENDER_REFERENCE}: " + ", ".join(senders)]
        lines.append("")
    return lines


def num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def machine_line(m: dict, v: dict) -> str:
    return (
        f"machine: {m['platform']}; CPU {m['cpu']}; os.cpu_count()={m['cpu_count']}; "
        f"{m['implementation']} {m['python']}; {m['date']}; "
        + ", ".join(f"{k} {val}" for k, val in v.items())
    )
