"""Docs are tested: the commands of README.md and docs/*.md run as written on a fresh clone.

The conventions, for whoever writes a doc (also in docs/architecture.md, "Docs are tested"):

- **Every fenced block says what it is.** ```` ```sh ```` (or ``bash``, ``shell``, ``console``)
  is a command a user pastes into a terminal: the test runs it. ```` ```python ```` is a
  program: the test runs it too, with the project's Python. Anything else is never run:
  ```` ```text ```` for output, usage synopses and lines a user does not type as they are;
  ```` ```conf ```` for Logstash and pipeline files (a runnable block writes a file it needs
  with a heredoc); ```` ```yaml ````, ```` ```json ````... An untagged fence (or an indented
  code block) holding what looks like a command is refused: tag it ``sh`` or ``text``.
- **A runnable block is pasteable**: no prompt (``$ ``), no output mixed in (show output in a
  ```` ```text ```` block after it). It only uses files that the blocks before it in the same
  file made (``make certs`` for ``certs/out/``, an events file, a password file), because each
  file is run on its own, from a fresh view of the project.
- **Markers**: an HTML comment right before a block (blank lines between are fine), several
  directives separated by ``;``:

  - ``<!-- docs-test: skip (REASON) -->``: not run (a Logstash or a Beat is needed, the block is
    a signature, ``make test`` itself...); the reason is required.
  - ``<!-- docs-test: background -->``: a program that keeps running (an input a later block
    sends to; a shell or a Python block). The test starts it, waits until every port the
    block names (below) accepts a connection on 127.0.0.1 (at most 30 s; it fails with the
    program's output if the program ends first), runs the next blocks and, at the end of the
    block's section (the next heading of the same or a higher level, or the end of the file; a
    block under the title: the first ``##``),
    stops it with SIGINT, as Ctrl+C in its terminal would (SIGKILL after 20 s). A background
    program that ends by itself before that fails the test.
  - ``<!-- docs-test: ready "REGEX" -->``: a background program is also waited for until
    what it printed matches REGEX (``worker 2 .* input listening``: the port alone is bound
    before the workers start).
  - ``<!-- docs-test: needs COMMAND -->``: the block is left out where COMMAND (``openssl``,
    ``curl``) is not installed, as a user without it would leave it out.
  - ``<!-- docs-test: timeout SECONDS -->``: a block's deadline (default 30 s).
  - ``<!-- docs-test: expect "TEXT" -->``: what the block prints (stdout or stderr) contains
    TEXT (a background block: by the time it was stopped).

  Whatever the markers, a block passes only if it exits 0 and prints no traceback (nor does a
  background program until it is stopped): a user would take either for a failure.

- **Ports**: the documented ports are replaced, in every runnable block of a file, by free
  ports of 127.0.0.1 (below the kernel's ephemeral range, which other tests' ``--port 0`` and
  connections draw from), the same free port for the same number within the file: ``PORTS``
  below (9800 the native wire, 5044 the framed wire, 5000 a ``tcp:`` source, 9600 to 9602
  metrics). So a runnable block names every port it listens on or connects to (``--port
  9800``, never the default alone) and listens on 127.0.0.1 only (``--host 127.0.0.1``,
  ``host => "127.0.0.1"``). Add a number to ``PORTS`` when a doc uses another one.
- **Two twistd programs in one directory** need ``--pidfile=`` (twistd writes ``twistd.pid``
  and refuses to start a second one next to it).

How a file runs: in a temporary directory that looks like a fresh clone (symbolic links to the
project's sources, ``Makefile`` and ``.venv``; its own ``certs/`` without ``out/``), with
``.venv/bin`` first on ``PATH`` (``twistd`` and ``python`` are the project's), blocks in order,
each a ``bash -e -o pipefail`` script (or ``python FILE``) in its own process group, within its
deadline. A block that fails names the file and line of its fence, shows the block as run and
what it and the background programs printed.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_twisted
from support_programs import Program, ProgramError
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectError

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: documented port numbers that runnable blocks name; each becomes a free port of 127.0.0.1
PORTS = (9800, 5044, 5000, 9600, 9601, 9602)
SHELL = frozenset({"sh", "bash", "shell", "console"})
PYTHON = frozenset({"python", "python3", "py"})
TIMEOUT = 30.0
BACKGROUND_READY = 30.0
BACKGROUND_STOP = 20.0
#: what a block (or a background program) must not print
TRACEBACKS = ("Traceback (most recent call last)", "Unhandled Error")

#: what the view of the project links to (a fresh clone has these, and .venv once make ran)
LINKED = (
    ".ci",
    ".gitignore",
    "Makefile",
    "README.md",
    "bench",
    "docs",
    "pyproject.toml",
    "setup.cfg",
    "setup.py",
    "tests",
    "twisted",
    "twisted_logstash",
)
#: the files the Makefile's stamp depends on (a block running make must not reinstall .venv)
STAMP_SOURCES = ("setup.cfg", "setup.py", "pyproject.toml")

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^\s`{]*)")
HEADING = re.compile(r"^(#{1,6})\s")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
LOOKS_LIKE_A_COMMAND = re.compile(
    r"^\s*(\$ |twistd\b|make\b|python3?\b|\.venv/|\. \.venv|openssl\b|mv\b|cp\b|cat\b|curl\b"
    r"|printf\b|echo\b|bin/|pip\b|bash\b|cd\b|export\b|kill\b)"
)


def shown(doc: Path) -> str:
    """``doc`` as a failure names it: relative to the project."""
    return str(doc.relative_to(ROOT)) if doc.is_relative_to(ROOT) else str(doc)


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    directives: list[str] = field(default_factory=list)
    section_end: float = float("inf")  # line of the heading that ends the block's section

    @property
    def where(self) -> str:
        return f"{shown(self.doc)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.lang in SHELL | PYTHON and self.skip is None

    @property
    def skip(self) -> str | None:
        for directive in self.directives:
            match = re.fullmatch(r"skip\s*\((.+)\)", directive)
            if match:
                return match.group(1)
        return None

    @property
    def background(self) -> bool:
        return "background" in self.directives

    @property
    def timeout(self) -> float:
        for directive in self.directives:
            match = re.fullmatch(r"timeout\s+(\d+(?:\.\d+)?)", directive)
            if match:
                return float(match.group(1))
        return TIMEOUT

    @property
    def needs(self) -> list[str]:
        return [m.group(1) for d in self.directives if (m := re.fullmatch(r"needs\s+(\S+)", d))]

    @property
    def ready(self) -> list[str]:
        return [m.group(1) for d in self.directives if (m := re.fullmatch(r'ready\s+"(.*)"', d))]

    @property
    def expected(self) -> list[str]:
        return [m.group(1) for d in self.directives if (m := re.fullmatch(r'expect\s+"(.*)"', d))]


DIRECTIVE = re.compile(
    r'skip\s*\(.+\)|background|timeout\s+\d+(?:\.\d+)?|expect\s+".*"|ready\s+".*"|needs\s+\S+'
)


@dataclass
class Parsed:
    blocks: list[Block]
    problems: list[str]


def parse(doc: Path) -> Parsed:
    """The fenced blocks of ``doc`` with their markers, and what breaks the conventions."""
    lines = doc.read_text().splitlines()
    name = shown(doc)
    blocks: list[Block] = []
    problems: list[str] = []
    headings: list[tuple[int, int]] = []  # (line, level)
    pending: list[str] = []
    pending_line = 0
    previous_blank = True
    i = 0
    while i < len(lines):
        line = lines[i]
        number = i + 1
        fence = FENCE.match(line)
        marker = MARKER.match(line)
        if fence:
            indent, chars, lang = len(fence.group(1)), fence.group(2), fence.group(3).lower()
            body: list[str] = []
            i += 1
            closing = re.compile(rf"^ {{0,3}}{re.escape(chars[0])}{{{len(chars)},}}\s*$")
            while i < len(lines) and not closing.match(lines[i]):
                body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
                i += 1
            block = Block(doc, number, lang, "\n".join(body) + "\n", pending)
            blocks.append(block)
            for directive in pending:
                if directive.startswith("skip") and not DIRECTIVE.fullmatch(directive):
                    problems.append(f"{name}:{pending_line}: `skip` needs a reason: skip (REASON)")
                elif not DIRECTIVE.fullmatch(directive):
                    problems.append(
                        f"{name}:{pending_line}: unknown docs-test directive {directive!r} "
                        '(skip (REASON), background, ready "REGEX", needs COMMAND, '
                        'timeout SECONDS, expect "TEXT")'
                    )
            first = next((b for b in body if b.strip() and not b.lstrip().startswith("#")), "")
            if not lang and LOOKS_LIKE_A_COMMAND.match(first):
                problems.append(
                    f"{name}:{number}: an untagged block that looks like a command: tag it "
                    "```sh (the docs test runs it) or ```text (output, a synopsis: not run)"
                )
            if lang in SHELL and block.skip is None:
                for offset, text in enumerate(body, start=1):
                    if text.startswith("$ "):
                        problems.append(
                            f"{name}:{number + offset}: a prompt in a runnable block: write the "
                            "command alone, and its output in a ```text block after it"
                        )
            pending = []
            previous_blank = False
        elif marker:
            if not pending:
                pending_line = number
            pending = pending + [d.strip() for d in marker.group(1).split(";") if d.strip()]
        elif not line.strip():
            previous_blank = True
            i += 1
            continue
        else:
            if pending:
                problems.append(
                    f"{name}:{pending_line}: a docs-test marker must come right before a fenced "
                    "block"
                )
                pending = []
            heading = HEADING.match(line)
            if heading:
                headings.append((number, len(heading.group(1))))
            elif previous_blank and line.startswith("    ") and LOOKS_LIKE_A_COMMAND.match(line):
                problems.append(
                    f"{name}:{number}: an indented code block that looks like a command: write "
                    "it as a fenced ```sh block (the docs test runs it) or ```text"
                )
            previous_blank = False
        i += 1
    for block in blocks:
        above = [lvl for at, lvl in headings if at < block.line]
        level = max(above[-1] if above else 0, 2)  # the title's section: its introduction
        block.section_end = next(
            (at for at, lvl in headings if at > block.line and lvl <= level), float("inf")
        )
    return Parsed(blocks, problems)


PARSED = {doc: parse(doc) for doc in DOCS}
RUNNABLE = [doc for doc, parsed in PARSED.items() if any(b.runnable for b in parsed.blocks)]


def test_docs_follow_the_conventions():
    """Every block says whether it runs; markers are well-formed and placed right."""
    problems = [problem for parsed in PARSED.values() for problem in parsed.problems]
    assert not problems, "\n".join(problems)


def test_the_quick_starts_are_run():
    """The extractor finds the quick starts' commands and Python (a regression guard: a
    change of convention that silently skips them would otherwise pass)."""
    for name, langs in {
        "README.md": {"sh", "python"},
        "docs/quickstart.md": {"sh", "python"},
    }.items():
        found = {b.lang for b in PARSED[ROOT / name].blocks if b.runnable}
        assert langs <= found, f"{name}: runnable blocks found: {sorted(found)}"


def test_the_extractor_reads_the_conventions(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n\n## One\n\n<!-- docs-test: background -->\n\n```sh\ntwistd -n x\n```\n\n"
        "### Sub\n\n<!-- docs-test: skip (needs a Beat); timeout 5 -->\n```bash\nfilebeat\n```\n"
        '\n<!-- docs-test: expect "hi"; needs python3; ready "h." -->\n'
        '```python\nprint("hi")\n```\n\n'
        "```\ntwistd -n untagged\n```\n\n```text\ntwistd output\n```\n\n"
        "    make indented\n\n<!-- docs-test: skip -->\n\nprose\n\n"
        "<!-- docs-test: sometimes; skip -->\n```console\n$ twistd\n```\n\n## Two\n"
    )
    parsed = parse(doc)
    background, skipped, program, untagged, text, console = parsed.blocks
    assert (background.line, background.background, background.runnable) == (7, True, True)
    assert background.section_end == 42  # "## Two": the end of "## One", "### Sub" included
    assert (skipped.skip, skipped.timeout, skipped.runnable) == ("needs a Beat", 5.0, False)
    assert (program.lang, program.expected, program.text) == ("python", ["hi"], 'print("hi")\n')
    assert (program.needs, program.ready) == (["python3"], ["h."])
    assert not untagged.runnable and not text.runnable and console.runnable
    where = shown(doc)
    assert parsed.problems == [
        f"{where}:23: an untagged block that looks like a command: tag it ```sh (the docs test "
        "runs it) or ```text (output, a synopsis: not run)",
        f"{where}:31: an indented code block that looks like a command: write it as a fenced "
        "```sh block (the docs test runs it) or ```text",
        f"{where}:33: a docs-test marker must come right before a fenced block",
        f"{where}:37: unknown docs-test directive 'sometimes' (skip (REASON), background, "
        'ready "REGEX", needs COMMAND, timeout SECONDS, expect "TEXT")',
        f"{where}:37: `skip` needs a reason: skip (REASON)",
        f"{where}:39: a prompt in a runnable block: write the command alone, and its output in "
        "a ```text block after it",
    ]


# -- running ------------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """``count`` ports of 127.0.0.1 nothing is bound to, below the kernel's ephemeral range.

    The documented ports are replaced before the programs bind them, so a port chosen here
    stays free only if nothing else takes it meanwhile: the kernel hands out ports of its
    ephemeral range to every outgoing connection and every ``--port 0`` of the other tests
    running on the machine, never one below it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = random.sample(range(20000, max(low, 20000 + 4 * count)), 4 * count + 40)
    ports: list[int] = []
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise AssertionError(f"no {count} free ports of 127.0.0.1 among {candidates}")


def make_view(view: Path) -> Path:
    """A directory that looks like a fresh clone with ``.venv`` built: links to the sources,
    its own ``certs/`` holding the script (so that ``make certs`` writes here)."""
    view.mkdir()
    for name in LINKED:
        if (ROOT / name).exists():
            (view / name).symlink_to(ROOT / name)
    (view / ".venv").symlink_to(Path(sys.prefix))
    (view / "certs").mkdir()
    for item in (ROOT / "certs").iterdir():
        if item.name != "out":
            (view / "certs" / item.name).symlink_to(item)
    return view


def venv_is_current() -> str | None:
    """Why running ``make`` in the view would reinstall .venv (from the view!), or None."""
    stamp = Path(sys.prefix) / ".installed"
    if not stamp.exists():
        return f"{stamp} is missing: run the tests through `make test` (or `make lint` first)"
    for name in STAMP_SOURCES:
        if (ROOT / name).stat().st_mtime > stamp.stat().st_mtime:
            return f"{name} is newer than {stamp}: run `make lint` to bring .venv up to date"
    return None


@defer.inlineCallbacks
def wait_listening(port: int, program: Program, seconds: float):
    """Fires once 127.0.0.1:``port`` accepts a connection (tried every 0.1 s); fails with
    ProgramError when ``program`` ends first or after ``seconds``."""
    deadline = reactor.seconds() + seconds
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2)
    while True:
        if not program.running:
            raise ProgramError(f"ended ({program.status}) before port {port} listened")
        try:
            connected = yield endpoint.connect(protocol.Factory.forProtocol(protocol.Protocol))
        except ConnectError:
            if reactor.seconds() > deadline:
                raise ProgramError(f"did not listen on {port} within {seconds} s") from None
            yield task.deferLater(reactor, 0.1)
            continue
        connected.transport.loseConnection()
        return


class Run:
    """One doc's blocks, in order, in one view of the project."""

    def __init__(self, doc: Path, tmp_path: Path):
        self.doc = doc
        self.view = make_view(tmp_path / "project")
        self.scripts = tmp_path / "blocks"
        self.scripts.mkdir()
        self.ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
        bindir = self.view / ".venv" / "bin"
        env = {k: v for k, v in os.environ.items() if k != "LOGSTASH_PASSWORD"}
        env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        self.env = env
        self.python = str(bindir / "python")
        self.background: list[tuple[Block, Program]] = []
        self.started: list[Program] = []

    def substituted(self, text: str) -> str:
        for documented, free in self.ports.items():
            text = re.sub(rf"(?<![\d.]){documented}(?!\d)", str(free), text)
        return text

    def spawn(self, block: Block) -> Program:
        text = self.substituted(block.text)
        stem = f"{self.doc.stem}-{block.line}"
        if block.lang in PYTHON:
            script = self.scripts / f"{stem}.py"
            argv = ["setsid", self.python, str(script)]
        else:
            script = self.scripts / f"{stem}.sh"
            argv = ["setsid", "bash", "-e", "-o", "pipefail", str(script)]
        script.write_text(text)
        program = Program(block.where, argv, self.view, self.env)
        process = reactor.spawnProcess(program, argv[0], argv, env=self.env, path=str(self.view))
        program.group = process.pid  # setsid: the group's id is its leader's pid
        self.started.append(program)
        return program

    def failed(self, block: Block, what: str, program: Program | None = None) -> AssertionError:
        parts = [f"{block.where}: the ```{block.lang} block {what}"]
        parts.append(
            f"--- the block as run (ports: {self.ports}) ---\n{self.substituted(block.text)}"
        )
        if program is not None:
            parts.append(program.output)
        for other, running in self.background:
            if running is not program:
                parts.append(f"=== background from {other.where} ===\n{running.output}")
        return AssertionError("\n".join(parts))

    def check_printed(self, block: Block, program: Program) -> None:
        """What ``program`` printed holds what the block expects, and no traceback (a user
        would take one for a failure, whatever the exit status)."""
        printed = (bytes(program.stdout) + bytes(program.stderr)).decode(errors="replace")
        for sign in TRACEBACKS:
            if sign in printed:
                raise self.failed(block, f"printed {sign!r}", program)
        for text in block.expected:
            if text not in printed:
                raise self.failed(block, f"did not print {text!r}", program)

    @staticmethod
    def signal_group(program: Program, number: int, ended_too: bool = False) -> None:
        """Signal the block's process group (bash or python and what it started)."""
        if program.running or ended_too:
            try:
                os.killpg(program.group, number)
            except (ProcessLookupError, PermissionError):
                pass

    @defer.inlineCallbacks
    def listening(self, block: Block, program: Program):
        """Fires once every port ``block`` names accepts a connection on 127.0.0.1."""
        for documented, free in self.ports.items():
            if re.search(rf"(?<![\d.]){documented}(?!\d)", block.text):
                try:
                    yield wait_listening(free, program, BACKGROUND_READY)
                except ProgramError as e:
                    raise self.failed(block, str(e), program) from None
        for pattern in block.ready:
            try:
                yield program.wait_for(pattern, BACKGROUND_READY)
            except ProgramError:
                raise self.failed(
                    block,
                    f"printed nothing matching {pattern!r} within {BACKGROUND_READY} s",
                    program,
                ) from None

    @defer.inlineCallbacks
    def stop(self, block: Block, program: Program):
        """Ctrl+C for a background program at the end of its section."""
        if not program.running:
            raise self.failed(
                block,
                f"ended by itself ({program.status}) before the end of its section "
                "(a background program must keep running)",
                program,
            )
        self.signal_group(program, signal.SIGINT)
        try:
            yield program.ended(BACKGROUND_STOP)
        except ProgramError:
            self.signal_group(program, signal.SIGKILL)
            raise self.failed(block, f"did not stop within {BACKGROUND_STOP} s of Ctrl+C", program)
        self.check_printed(block, program)

    @defer.inlineCallbacks
    def stop_backgrounds(self, before: float | None = None):
        """Stop the background programs whose section ended before line ``before`` (all of
        them without it)."""
        for block, program in list(self.background):
            if before is None or block.section_end < before:
                self.background.remove((block, program))
                yield self.stop(block, program)

    @defer.inlineCallbacks
    def run(self, blocks: list[Block]):
        try:
            for block in blocks:
                yield self.stop_backgrounds(before=block.line)
                if not block.runnable or any(shutil.which(tool) is None for tool in block.needs):
                    continue
                for other, running in self.background:
                    if not running.running:
                        raise self.failed(
                            other,
                            f"ended by itself ({running.status}) before {block.where}",
                            running,
                        )
                program = self.spawn(block)
                if block.background:
                    self.background.append((block, program))
                    yield self.listening(block, program)
                    continue
                try:
                    status = yield program.ended(block.timeout)
                except ProgramError:
                    self.signal_group(program, signal.SIGKILL)
                    raise self.failed(block, f"did not end within {block.timeout} s", program)
                if status != 0:
                    raise self.failed(block, f"exited with status {status}", program)
                self.check_printed(block, program)
            yield self.stop_backgrounds()
        finally:
            for program in self.started:
                running = program.running
                # the whole group: what a block left behind (a `&`) too
                self.signal_group(program, signal.SIGKILL, ended_too=True)
                if running:
                    try:
                        yield program.ended(10.0)
                    except ProgramError:
                        pass


@pytest.mark.parametrize("doc", RUNNABLE, ids=lambda doc: str(doc.relative_to(ROOT)))
@pytest_twisted.inlineCallbacks
def test_doc_runs_as_written(doc, tmp_path):
    blocks = PARSED[doc].blocks
    if any(b.runnable and re.search(r"^\s*make\b", b.text, re.M) for b in blocks):
        stale = venv_is_current()
        assert stale is None, f"{doc.relative_to(ROOT)} runs make, but {stale}"
    yield Run(doc, tmp_path).run(blocks)


# -- the demo's commands ------------------------------------------------------------------------


def printed_commands(stdout: str) -> dict[str, list[str]]:
    """The commands the demo printed, by program, as a shell would read them pasted."""
    commands: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("demo:"):
            current = None
            for name, header in (
                ("input", "demo: input  on "),
                ("output", "demo: output sending "),
            ):
                if line.startswith(header):
                    current = commands[name] = []
        elif current is not None:
            current.append(line)
    # a shell drops a backslash-newline (shlex would keep the newline)
    return {
        name: shlex.split("\n".join(lines).replace("\\\n", "")) for name, lines in commands.items()
    }


@pytest_twisted.inlineCallbacks
def test_the_demo_prints_commands_that_can_be_pasted(tmp_path):
    """`make demo` prints the commands it ran; pasted as printed (the input in one terminal,
    the output in another, any directory), they send the events again."""
    python = str(Path(sys.executable))
    demo = Program("demo", [python, "-m", "twisted_logstash.demo"], tmp_path, dict(os.environ))
    reactor.spawnProcess(demo, python, demo.argv, env=demo.env, path=str(tmp_path))
    status = yield demo.ended(60.0)
    assert status == 0, demo.failure(f"exited with {status}")
    commands = printed_commands(demo.stdout.decode())
    assert set(commands) == {"input", "output"}, demo.output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "LOGSTASH_PASSWORD"}
    server = Program("pasted input", commands["input"], elsewhere, env)
    reactor.spawnProcess(
        server, commands["input"][0], commands["input"], env=env, path=str(elsewhere)
    )
    try:
        port = int(re.search(r"--port=(\d+)", " ".join(commands["input"])).group(1))
        try:
            yield wait_listening(port, server, 30.0)
        except ProgramError as e:
            raise server.failure(str(e)) from None
        client = Program("pasted output", commands["output"], elsewhere, env)
        argv = commands["output"]
        reactor.spawnProcess(client, argv[0], argv, env=env, path=str(elsewhere))
        status = yield client.ended(60.0)
        assert status == 0, client.failure(f"exited with {status}")
        received = tmp_path / "demo-run" / "received.ndjson"
        assert len(received.read_text().splitlines()) == 8  # the demo's 4, then the same 4
    finally:
        server.signal(signal.SIGTERM)
        try:
            yield server.ended(20.0)
        except ProgramError:
            server.signal(signal.SIGKILL)
