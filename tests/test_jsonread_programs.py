"""Issue 11, with the real programs: an output reading a file with events nested 255..5000 deep
and integers beyond 64 bits, through a real input into a file sink, with the memory queue and
the disk queue. Every event arrives (the deep one either whole or, past what the policy writes,
as one line of text), none of its batch-mates is dropped, and the output exits 0."""

from __future__ import annotations

import orjson
import pytest
import pytest_twisted
from support_programs import programs_fixture  # noqa: F401 - the `programs` fixture
from test_programs import PLAIN, expect_clean_exit, expect_stopped, read_ndjson, start_input

from twisted_logstash.codecs import jsonpolicy


def deep_line(levels: int) -> bytes:
    return b'{"id":"deep%d","d":' % levels + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


@pytest.mark.parametrize("queue", ["memory", "disk"])
@pytest_twisted.inlineCallbacks
def test_deep_and_big_events_do_not_take_their_batch_with_them(programs, tmp_path, queue):
    sink = tmp_path / "received.ndjson"
    receiver, port = yield start_input(programs, *PLAIN, f"--sink=file:{sink}")
    source = tmp_path / "events.ndjson"
    lines = [b'{"id":%d}' % n for n in range(300)]
    deep = {levels: deep_line(levels) for levels in (255, 600, 1000, 1010, 1024, 5000)}
    for n, line in enumerate(deep.values()):
        lines.insert(40 * n + 7, line)
    lines.insert(150, b'{"id":"big","n":%d}' % 10**30)
    source.write_bytes(b"\n".join(lines) + b"\n")
    args = [f"--hosts=127.0.0.1:{port}", "--ssl-enabled=false", f"--source=file:{source}"]
    args.append("--queue=memory" if queue == "memory" else f"--queue=disk:{tmp_path / 'q'}")
    sender = programs.output(*args, "--batch-size=64")
    yield expect_clean_exit(sender)
    received = read_ndjson(sink)
    assert len(received) == len(lines)
    ids = {e.get("id") for e in received if "id" in e}
    assert {n for n in range(300)} <= ids
    by_id = {e["id"]: e for e in received if "id" in e}
    assert by_id["big"]["n"] == str(10**30)  # exact, as its decimal text
    for levels in (255, 600, 1000):
        got = by_id[f"deep{levels}"]
        assert jsonpolicy.dumps(got["d"]) == jsonpolicy.dumps(orjson.loads(deep[levels])["d"])
    # past what the policy writes, the source took the line as text: it arrives as sent
    texts = {e["message"] for e in received if "id" not in e}
    assert texts == {deep[levels].decode() for levels in (1010, 1024, 5000)}
    yield expect_stopped(receiver)
