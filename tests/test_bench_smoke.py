"""Smoke test of the benchmark harness (bench/): the codec measurement runs in-process for a
fraction of a second, and the workload every process builds is the same. No speed is
asserted: the figures belong to `make bench`, not to the test suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import codec
    import run
    import workload

    return codec, workload, run


def test_codec_measurement_runs_and_decodes_every_event(bench):
    codec, workload, _ = bench
    result = codec.run(warmup=0.01, window=0.05, repeats=2)
    assert len(result["windows"]) == 2
    assert all(w["events"] > 0 and w["events_per_s"] > 0 for w in result["windows"])
    # Whole bodies only: every window counts a whole number of batches.
    assert all(w["events"] % workload.BATCH_SIZE == 0 for w in result["windows"])
    assert result["digest"] == workload.digest(workload.make_bodies())


def test_reference_decoding_gives_back_the_events(bench):
    codec, workload, _ = bench
    batch = workload.make_batches(count=2)[1]
    assert codec.decode_body(workload.gzip_body(batch)) == batch


def test_workload_is_the_same_in_every_process(bench):
    _, workload, _ = bench
    first = workload.make_bodies(count=3)
    assert workload.make_bodies(count=3) == first
    shape = workload.describe(first, workload.make_batches(count=3))
    assert 250 <= shape["mean_event_bytes"] <= 350


def test_only_rejects_unknown_names_and_selects_groups(bench):
    _, _, run = bench
    assert {m.group for m in run.select_measurements(["senders"])} == {"senders"}
    assert [m.name for m in run.select_measurements(["codec,native"])] == [
        "codec",
        "codec-framed",
        "native",
    ]
    with pytest.raises(SystemExit):
        run.select_measurements(["no-such-row"])


def test_external_rows_take_a_name_a_wire_and_a_command(bench):
    _, _, run = bench
    [row] = run.select_measurements(["external"], ["beats:framed-tls=java -jar b.jar {port}"])
    assert (row.name, row.wire, row.tls, row.command) == (
        "beats",
        "framed",
        True,
        "java -jar b.jar {port}",
    )
    assert row.measured == "peer_cpu" and row.launch == "external"
    for bad in ("beats=cmd", "beats:udp=cmd", "beats:framed=", "native:native=cmd"):
        with pytest.raises(SystemExit):
            run.select_measurements([], [bad])


def test_new_rows_are_listed_by_name_and_group(bench):
    _, _, run = bench
    names = {m.name for m in run.select_measurements([])}
    assert {"codec-framed", "framed", "framed-tls", "native-tls", "send-output-framed"} <= names
    assert {"native-w1", "native-w2", "framed-w1", "framed-w2"} <= names
    workers = run.select_measurements(["workers"])
    assert all(m.launch == "twistd" and not m.pin for m in workers)


def test_summary_reports_median_range_and_other_load(bench):
    _, _, run = bench
    windows = [
        {"events_per_s": r, "self_cpu": 0.5, "peer_cpu": 1.0, "system_cpu": 1.6}
        for r in (10.0, 30.0, 20.0)
    ]
    summary = run.summarize({"windows": windows}, "peer_cpu")
    assert (summary["median"], summary["min"], summary["max"]) == (20, 10, 30)
    assert summary["other_cpu"] == pytest.approx(0.1)
    assert summary["per_cpu_s"] == 20
    assert summary["clean"] == "3/3"


def test_summary_sets_aside_windows_disturbed_by_other_work(bench):
    _, _, run = bench
    quiet = {"events_per_s": 100.0, "self_cpu": 0.5, "peer_cpu": 1.0, "system_cpu": 1.5}
    busy = {"events_per_s": 10.0, "self_cpu": 0.1, "peer_cpu": 0.2, "system_cpu": 2.0}
    summary = run.summarize({"windows": [dict(quiet), dict(busy), dict(quiet)]}, "peer_cpu")
    assert (summary["median"], summary["min"], summary["clean"]) == (100, 100, "2/3")
    all_busy = run.summarize({"windows": [dict(busy), dict(busy)]}, "peer_cpu")
    assert (all_busy["median"], all_busy["clean"]) == (10, "0/2")


@pytest.fixture(autouse=True)
def _forget_bench_modules():
    """bench/ modules have plain names; do not leave them importable by other tests."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name in {
            "codec",
            "run",
            "workload",
            "measure",
            "tlscert",
            "harness",
            "rows",
            "table",
            "cloadgen",
        }:
            del sys.modules[name]


def test_receivers_are_read_against_their_wire_ceiling_and_senders_against_aiohttp(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import table

    def row(name, group, per_cpu_s, wire="native"):
        return {"name": name, "group": group, "status": "ok", "per_cpu_s": per_cpu_s, "wire": wire}

    lines = table.against_ceilings(
        [
            row("codec", "codec", 1000),
            row("codec-framed", "codec", 800, "framed"),
            row("native", "receivers", 500),
            row("framed-w2", "workers", 400, "framed"),
            row("send-aiohttp", "senders", 100),
            row("send-output-framed", "senders", 150),
        ]
    )
    assert "native 0.50x, framed-w2 0.50x" in lines[0]
    assert "send-output-framed 1.50x" in lines[2]
    sys.modules.pop("table", None)
