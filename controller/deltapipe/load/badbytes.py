"""Records that are not valid text: set aside while the file streams, so one bad byte rejects one record.

COPY refuses a whole file for one byte that is invalid in its encoding (a Latin-1
byte in a UTF-8 file) or for a NUL byte (PostgreSQL text cannot hold one). The
loader streams a file with a plain COPY first: a clean file costs nothing more.
Only when that COPY fails for such a byte is the file streamed again through
``set_aside``: each record (one line of the stream, multi-line records glued) that
does not decode is sent as an empty line (the line numbers of the others stay the
file's) and kept with its line number and its bytes as in the file; they are
staged afterwards as bytea (``_dp_bytes``), and deltapipe.validate rejects them.
"""

from __future__ import annotations

import codecs
import re
from typing import Callable, Iterable, Iterator

# the errors of a COPY that met a byte it cannot read as text
BAD_BYTES_SQLSTATES = ("22021", "22P05")  # invalid byte sequence (NUL included), untranslatable character

_UNESCAPE = {b"\\": b"\\", b"t": b"\t", b"r": b"\r", b"n": b"\n"}
_ESCAPED = re.compile(rb"\\(.)")


def _python_codec(encoding: str) -> str | None:
    """Python's codec for a PostgreSQL encoding name, None when there is none."""
    name = encoding.lower().replace("-", "").replace("_", "")
    name = {"sqlascii": "", "win866": "cp866", "win874": "cp874", "alt": "cp866", "mskanji": "shift_jis",
            "sjis": "shift_jis", "shiftjis2004": "shift_jis_2004", "unicode": "utf8"}.get(name, name)
    if name.startswith("win"):
        name = "cp" + name[3:]
    try:
        return codecs.lookup(name).name if name else None
    except LookupError:
        return None


def checker(encoding: str) -> Callable[[bytes], bool]:
    """A test of one stretch of the stream: True when PostgreSQL reads it as text in ``encoding``."""
    codec = _python_codec(encoding)
    if codec in ("latin-1", "iso8859-1") or codec is None:
        return lambda b: b"\x00" not in b  # every byte is a character: only NUL is refused

    def ok(b: bytes) -> bool:
        if b"\x00" in b:
            return False
        if b.isascii():
            return True
        try:
            b.decode(codec)
        except UnicodeDecodeError:
            return False
        return True
    return ok


def unescape(line: bytes) -> bytes:
    """The bytes of a record as in the file, from its line as sent to COPY (see files.escape_blocks, glue.py)."""
    return _ESCAPED.sub(lambda m: _UNESCAPE.get(m.group(1), m.group(0)), line)


def set_aside(chunks: Iterable[bytes], first_line: int, encoding: str, bad: list) -> Iterator[bytes]:
    """Yield ``chunks`` (the stream for COPY, text format) with each record that is not valid text
    replaced by an empty line; append ``(line number, bytes as in the file)`` of each to ``bad``.
    ``first_line`` is the file's line number of the stream's first line."""
    ok = checker(encoding)
    carry = b""
    line = first_line
    for chunk in chunks:
        buf = carry + chunk if carry else chunk
        end = buf.rfind(b"\n") + 1
        carry, body = buf[end:], buf[:end]
        if not body:
            continue
        if not ok(body):
            body = _clean(body, line, ok, bad)
        line += body.count(b"\n")
        yield body
    if carry:
        yield carry if ok(carry) else _clean(carry, line, ok, bad)


def _clean(body: bytes, line: int, ok: Callable[[bytes], bool], bad: list) -> bytes:
    lines = body.split(b"\n")
    for i, text in enumerate(lines):
        if text and not ok(text):
            bad.append((line + i, unescape(text)))
            lines[i] = b""
    return b"\n".join(lines)
