"""How a run is reported (twisted_logstash/progress.py): the lines as pure functions, the
periodic line on a Clock, the progress line on a stream, and the output program's final line and
exit status in process."""

import io

import pytest
from support_transmitter import HANG, FakeTransmitter
from twisted.internet.task import Clock

from twisted_logstash.errors import ConfigurationError
from twisted_logstash.pipeline.deadletter import DeadLetterFile
from twisted_logstash.pipeline.output import Output
from twisted_logstash.pipeline.sources import FileSource, GeneratorSource
from twisted_logstash.progress import (
    InputCounts,
    OutputCounts,
    PeriodicReport,
    ProgressLine,
    duration,
    input_counts,
    input_interval_line,
    input_summary,
    output_counts,
    output_interval_line,
    output_summary,
    progress_position,
    progress_text,
    stats_interval_of,
    wants_progress,
)
from twisted_logstash.tap.output import EXIT_DEAD_LETTERED, EXIT_UNDELIVERED, OutputProgram
from twisted_logstash.transport.hosts import Host
from twisted_logstash.transport.inputstats import InputStats

HOST = Host("127.0.0.1", 9800)


# -- the final lines --------------------------------------------------------------------------


def test_output_summary_says_counts_elapsed_rate_dead_letters_and_retries():
    counts = OutputCounts(read=1000, acknowledged=990, dead_lettered=10, retries=1)
    assert output_summary(counts, 2.0) == (
        "sent: 990 events acknowledged in 2.0 s (495 events/s), 10 dead-lettered, 1 retry"
    )


def test_output_summary_names_hosts_isolated_and_why():
    counts = OutputCounts(read=10, acknowledged=10, retries=3)
    isolations = [("a:9800", 2, "connection refused"), ("b:9800", 1, "timed out")]
    line = output_summary(counts, 75.0, isolations)
    assert line == (
        "sent: 10 events acknowledged in 1 min 15 s (0.1 events/s), 0 dead-lettered, 3 retries;"
        " hosts isolated: a:9800 (2 times, last: connection refused),"
        " b:9800 (1 time, last: timed out)"
    )


def test_output_summary_says_what_was_lost_or_left():
    counts = OutputCounts(read=500, acknowledged=0, dropped=5, undelivered=495)
    line = output_summary(counts, 0.0)
    assert line.startswith("sent: 0 events acknowledged in 0.0 s (0 events/s)")
    assert "5 refused and lost" in line
    assert "495 not delivered (of 500 read)" in line


def test_input_summary_says_events_batches_elapsed_and_rate():
    assert input_summary(InputCounts(events=1000, batches=8), 4.0) == (
        "received: 1000 events acknowledged (8 batches) in 4.0 s (250 events/s)"
    )
    assert input_summary(InputCounts(events=1, batches=1, connections_total=1), 3600.0) == (
        "received: 1 events acknowledged (1 batch, 1 connection) in 1 h 0 min (0.0 events/s)"
    )


def test_interval_lines_give_the_rate_over_the_interval():
    before = OutputCounts(read=100, acknowledged=100)
    now = OutputCounts(read=400, acknowledged=400, undelivered=0, events_total=800)
    assert output_interval_line(before, now, 30.0) == (
        "sending: 400 events acknowledged (+300 in 30 s, 10 events/s), 400 read,"
        " 0 waiting or in flight, 0 dead-lettered, 0 retries, 50 % done"
    )
    file_counts = OutputCounts(read=1, acknowledged=0, bytes_read=250, bytes_total=1000)
    assert output_interval_line(before, file_counts, 1.0).endswith(", 25 % of the file read")
    assert input_interval_line(
        InputCounts(10, 1, 0), InputCounts(70, 3, 2), 2.0
    ) == "receiving: 70 events acknowledged in 3 batches (+60 in 2.0 s, 30 events/s), " + (
        "2 connections open"
    )


# -- counts ----------------------------------------------------------------------------------


def test_input_counts_read_the_input_stats():
    class Factory:
        stats = InputStats()

    Factory.stats.events_acknowledged, Factory.stats.batches = 12, 2
    Factory.stats.connections_open, Factory.stats.connections_total = 3, 5
    assert input_counts(Factory()) == InputCounts(
        events=12, batches=2, connections=3, connections_total=5
    )
    assert input_counts(None) == InputCounts()


def test_output_counts_know_a_file_source_size_and_a_generator_count(tmp_path):
    clock = Clock()
    output = Output(FakeTransmitter(clock), [HOST], clock)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b'{"a": 1}\n' * 10)
    source = FileSource(str(path), clock)
    counts = output_counts(output, source)
    assert (counts.bytes_read, counts.bytes_total, counts.events_total) == (0, 90, None)
    counts = output_counts(output, GeneratorSource(500, clock))
    assert (counts.bytes_total, counts.events_total) == (None, 500)
    assert output_counts(output, GeneratorSource(0, clock)).events_total is None


@pytest.mark.parametrize(("value", "seconds"), [(None, 30.0), ("0", 0.0), ("1.5", 1.5)])
def test_stats_interval_takes_seconds(value, seconds):
    assert stats_interval_of(value) == seconds


@pytest.mark.parametrize("value", ["-1", "soon", "nan", "inf"])
def test_a_bad_stats_interval_names_the_flag(value):
    with pytest.raises(ConfigurationError, match="--stats-interval"):
        stats_interval_of(value)


# -- the periodic line -----------------------------------------------------------------------


def test_periodic_report_logs_every_interval_and_stops():
    clock = Clock()
    counts = [InputCounts()]
    lines = []
    report = PeriodicReport(clock, 30, lambda: counts[0], input_interval_line, emit=lines.append)
    report.start()
    clock.advance(29)
    assert lines == []
    counts[0] = InputCounts(events=300, batches=3)
    clock.advance(1)
    assert lines == ["receiving: 300 events acknowledged in 3 batches (+300 in 30 s, 10 events/s)"]
    counts[0] = InputCounts(events=310, batches=4)
    clock.advance(30)
    assert lines[-1].startswith("receiving: 310 events acknowledged in 4 batches (+10 in 30 s")
    report.stop()
    clock.advance(300)
    assert len(lines) == 2
    assert clock.getDelayedCalls() == []


def test_periodic_report_with_interval_zero_does_nothing():
    clock = Clock()
    report = PeriodicReport(clock, 0, InputCounts, input_interval_line, emit=print)
    report.start()
    assert clock.getDelayedCalls() == []
    report.stop()


# -- the progress line -----------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(
    ("choice", "finite", "stream", "shown"),
    [
        ("auto", True, Terminal(), True),
        ("auto", False, Terminal(), False),
        ("auto", True, io.StringIO(), False),
        ("always", False, io.StringIO(), True),
        ("never", True, Terminal(), False),
    ],
)
def test_progress_is_shown_for_a_finite_source_on_a_terminal(choice, finite, stream, shown):
    assert wants_progress(choice, finite, stream) is shown


def test_progress_position_is_bytes_of_a_file_else_events_acknowledged():
    assert progress_position(OutputCounts(acknowledged=7, bytes_read=90, bytes_total=100)) == 90
    assert progress_position(OutputCounts(acknowledged=7, events_total=10)) == 7
    assert progress_text(OutputCounts(read=9, acknowledged=7, dead_lettered=1, retries=2)) == (
        "9 read, 7 acknowledged, 1 dead-lettered, 2 retries"
    )


def test_progress_line_draws_counts_and_a_percentage_on_the_stream():
    clock = Clock()
    stream = Terminal()
    counts = [OutputCounts(events_total=1000)]
    line = ProgressLine(clock, lambda: counts[0], stream)
    line.start()
    counts[0] = OutputCounts(read=600, acknowledged=500, events_total=1000)
    clock.advance(0.5)
    drawn = stream.getvalue()
    assert "50%" in drawn
    assert "500/1000" in drawn
    assert "600 read, 500 acknowledged" in drawn
    line.stop()
    assert clock.getDelayedCalls() == []


# -- the output program: final line and exit status ------------------------------------------


def program_of(clock, transmitter, tmp_path, count=30, **kwargs):
    dead = DeadLetterFile(str(tmp_path / "dead.ndjson"), clock)
    output = Output(transmitter, [HOST], clock, batch_size=10, dead_letter=dead, **kwargs)
    codes = []
    program = OutputProgram(output, GeneratorSource(count, clock), clock, exit=codes.append)
    return program, codes


def run_to_end(clock, program):
    program.startService()
    for _ in range(100):
        clock.advance(0.1)
    stopped = program.stopService()
    clock.advance(11)
    assert stopped.called


def test_dead_lettered_events_exit_3_and_the_final_line_says_so(tmp_path):
    clock = Clock()
    fake = FakeTransmitter(clock)
    fake.script(HOST, "terminal")  # the first batch is refused, the others acknowledged
    program, codes = program_of(clock, fake, tmp_path)
    run_to_end(clock, program)
    assert codes == [EXIT_DEAD_LETTERED]
    assert program.summary.startswith("sent: 20 events acknowledged in ")
    assert "10 dead-lettered" in program.summary


def test_everything_acknowledged_exits_0(tmp_path):
    clock = Clock()
    program, codes = program_of(clock, FakeTransmitter(clock), tmp_path)
    run_to_end(clock, program)
    assert codes == []
    assert program.exit_code == 0
    assert "30 events acknowledged" in program.summary


def test_undelivered_outranks_dead_lettered(tmp_path):
    clock = Clock()
    fake = FakeTransmitter(clock)
    fake.script(HOST, "terminal", HANG, HANG, HANG)
    program, codes = program_of(clock, fake, tmp_path, count=100)
    run_to_end(clock, program)
    assert codes == [EXIT_UNDELIVERED]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_stop_the_program_without_dead_letters(tmp_path, status):
    clock = Clock()
    fake = FakeTransmitter(clock, default=HANG)
    program, codes = program_of(clock, fake, tmp_path, count=1000, on_refused="stop")
    program.startService()
    clock.advance(0.1)
    assert len(fake.attempts) == 4  # max_in_flight
    fake.attempts[0].refuse(f"HTTP {status}", status)
    fake.attempts[1].refuse(f"HTTP {status}", status)
    fake.attempts[2].succeed()
    for _ in range(20):
        clock.advance(0.1)
    assert len(fake.attempts) == 4  # no batch taken after the refusal
    assert program.refused is not None and program.refused.status == status
    fake.attempts[3].refuse(f"HTTP {status}", status)
    stopped = program.stopService()
    clock.advance(11)
    assert stopped.called
    assert codes == [EXIT_UNDELIVERED]
    assert program.output.stats.dead_lettered == 0
    assert not (tmp_path / "dead.ndjson").exists()
    assert program.output.stats.acknowledged == 10
    assert "not delivered" in program.summary


def test_refused_credentials_with_continue_dead_letter_as_before(tmp_path):
    clock = Clock()
    fake = FakeTransmitter(clock)
    fake.script(HOST, "terminal")
    program, codes = program_of(clock, fake, tmp_path, on_refused="continue")
    program.startService()
    clock.advance(0.1)
    run_to_end(clock, program)
    assert program.refused is None
    assert codes == [EXIT_DEAD_LETTERED]


def test_on_refused_takes_stop_or_continue():
    with pytest.raises(ConfigurationError, match="on_refused"):
        Output(FakeTransmitter(), [HOST], Clock(), on_refused="retry")


def test_a_short_run_is_not_said_to_take_no_time():
    assert duration(0.045) == "0.045 s"
    assert duration(0.4) == "0.4 s"
    assert duration(0) == "0.0 s"
