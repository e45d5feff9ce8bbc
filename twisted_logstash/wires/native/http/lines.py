"""The line rule and the field syntax, the same for requests and responses.

Every line ends in CRLF; a bare CR or LF anywhere is refused rather than guessed at (a peer that
ends lines otherwise than the one it talks through is how request smuggling starts). A line, or a
head, may be exactly as long as its limit, decided the same however its CRLF is cut by the
network. A field name is a token: this one check also refuses obsolete line folding (a line
starting with SP or HTAB) and whitespace before the colon.

Everything raises :class:`ProtocolError`; ``what`` names the side in the words
("request"/"response").
"""

from __future__ import annotations

from twisted_logstash.wires.native.http.errors import ProtocolError

__all__ = [
    "HEAD_END",
    "HEX",
    "TCHAR",
    "VISIBLE",
    "field",
    "fields",
    "split_head",
    "take_line",
    "unended_head",
]

TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
HEX = b"0123456789abcdefABCDEF"
VISIBLE = bytes(range(0x21, 0x7F))
# bytes a line may hold: visible ASCII, SP, HTAB and obs-text (0x80-0xFF); a head adds its CRLFs
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)) + b"\t"
_HEAD_BYTES = _TEXT_BYTES + b"\r\n"
_CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"
"""What ends a head: the CRLF of its last line and an empty line."""


def unended_head(buffer: bytes, start: int, limit: int, what: str) -> None:
    """Refuse a head whose end (CRLF CRLF, searched for from ``start``) is not in ``buffer`` yet
    when it can never end well: a bare CR or LF, or more than ``limit`` bytes (the head without
    its blank line may be exactly ``limit`` bytes: past it, all that may still wait is the start
    of the CRLF CRLF, however the network cut it)."""
    if buffer.find(b"\n\n", start) >= 0 or buffer.find(b"\r\r", start) >= 0:
        raise ProtocolError(400, f"bare CR or LF in the {what} head")
    over = len(buffer) - limit
    if over > 0 and not any(buffer.endswith(HEAD_END[:k]) for k in range(over, 4)):
        raise ProtocolError(431, f"{what} head larger than {limit} bytes")


def split_head(block: bytes, what: str) -> list[bytes]:
    """The lines of a head without its blank line: CRLF only, no control characters."""
    lines = block.split(b"\r\n")
    # one pass: what is left once the text bytes are deleted must be the CRLFs of the split
    if block.translate(None, _TEXT_BYTES) != _CRLF * (len(lines) - 1):
        breaks = len(lines) - 1
        if block.count(b"\n") != breaks or block.count(b"\r") != breaks:
            raise ProtocolError(400, f"bare CR or LF in the {what} head")
        raise ProtocolError(400, f"control character in the {what} head")
    return lines


def fields(
    lines: list[bytes], wanted: frozenset[bytes]
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """The field lines after the start line (``lines[1:]``) as ``(lower-cased name, trimmed
    value)``: all of them, and those named in ``wanted`` (the few that decide framing). Checked
    after the start line, so that a head with several faults is named by its first."""
    headers: list[tuple[bytes, bytes]] = []
    chosen: list[tuple[bytes, bytes]] = []
    names: list[bytes] = []
    append = headers.append
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name:
            raise ProtocolError(400, f"bad header line {line[:80]!r}")
        names.append(name)
        pair = (name.lower(), value.strip(b" \t"))
        append(pair)
        if pair[0] in wanted:
            chosen.append(pair)
    # every name is a token, checked for all names at once (none is empty or holds a colon)
    if b"".join(names).translate(None, TCHAR):
        bad = next(name for name in names if name.translate(None, TCHAR))
        raise ProtocolError(400, f"bad header name {bad[:80]!r}")
    return headers, chosen


def field(line: bytes, what: str) -> tuple[bytes, bytes]:
    """One field line outside a head (a trailer) as ``(lower-cased name, trimmed value)``."""
    if line.translate(None, _HEAD_BYTES):
        raise ProtocolError(400, f"control character in a {what}")
    name, sep, value = line.partition(b":")
    if not sep or not name or name.translate(None, TCHAR):
        raise ProtocolError(400, f"bad header line {line[:80]!r}")
    return name.lower(), value.strip(b" \t")


def take_line(buffer: bytes, limit: int, what: str) -> bytes | None:
    """The first line of ``buffer`` without its CRLF, or None until it is all here.

    The line may be ``limit`` bytes; a CR just past the limit may still be followed by its LF.
    """
    end = buffer.find(b"\r\n", 0, limit + 2)
    if end < 0:
        if buffer.find(b"\n", 0, limit + 2) >= 0:
            raise ProtocolError(400, f"bare LF in a {what}")
        size = len(buffer)
        if size > limit and not (size == limit + 1 and buffer[limit] == 13):
            raise ProtocolError(400, f"{what} longer than {limit} bytes")
        return None
    line = buffer[:end]
    if b"\r" in line or b"\n" in line:
        raise ProtocolError(400, f"bare CR or LF in a {what}")
    return line
