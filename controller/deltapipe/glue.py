"""Glue CSV records that span lines while the file streams to COPY.

A quoted CSV field may hold newlines, but the staging table gets one physical
line per row (COPY text format). Left as is, such a record arrives as several
rows that the database would have to find and glue back together, rewriting
staging rows. Here the newlines inside quotes are sent as COPY's ``\\n`` escape
instead, so the record arrives as one row under the line number of its first
line, and the record is followed by one empty line per newline it held: the
line numbers of the rows after it stay those of the file (empty lines are
skipped by the load anyway).

Quoted spans are found with one regular expression run in C; only the rare
spans holding a newline are handled in Python. A block is cut after its last
record that is complete, the rest waits for the next block.
"""

from __future__ import annotations

import bisect
import re
from typing import Iterable, Iterator

from .errors import DeltapipeError
from .linecount import LineCount, has_empty_line

MAX_RECORD = 32 << 20  # a quoted field this long is taken for an unterminated quote


def _unterminated(line: int, detail: str) -> DeltapipeError:
    return DeltapipeError("unterminated quoted field starting at line %d" % line, detail=detail,
                          hint="check the quoting of that line, or give the right --quote / --format",
                          sqlstate="DP012")


def glue_records(blocks: Iterable[bytes], quote: bytes, first_line: int = 1,
                 count: LineCount | None = None) -> Iterator[bytes]:
    """Yield ``blocks`` (already escaped for COPY text format) with multi-line records glued.

    ``first_line`` is the file's line number of the first block's first line (for errors);
    ``count`` is given what is yielded (see linecount.py).
    """
    span = re.compile(re.escape(quote) + b"[^" + re.escape(quote) + b"]*" + re.escape(quote))
    carry = b""
    lines = first_line - 1  # lines yielded so far
    for block in blocks:
        buf = carry + block if carry else block
        carry = b""
        cut, spans, open_at = _scan(buf, quote, span)
        if cut < len(buf):
            carry = buf[cut:]
            if open_at >= 0 and len(carry) > MAX_RECORD:
                line = lines + buf.count(b"\n", 0, open_at) + 1
                raise _unterminated(line, "no closing quote in the next %d MB" % (MAX_RECORD >> 20))
            buf = buf[:cut]
        if not buf:
            continue
        out = _glue(buf, spans) if spans else buf
        n = out.count(b"\n")
        lines += n
        if count is not None:
            # each newline of a quoted span became two bytes (\\n) and added one empty line
            count.add(out, n, None if has_empty_line(buf) else (len(out) - len(buf)) // 2)
        yield out
    if carry:
        cut, spans, open_at = _scan(carry + b"\n", quote, span)
        if open_at >= 0:
            raise _unterminated(lines + carry.count(b"\n", 0, open_at) + 1, "the file ends inside a quoted field")
        out = _glue(carry, spans) if spans else carry
        if count is not None:
            count.add(out)
        yield out


def _scan(buf: bytes, quote: bytes, span: re.Pattern) -> tuple[int, list[tuple[int, int]], int]:
    """(end of the last complete record, quoted spans holding a newline before it, start of an open quote or -1)."""
    if quote not in buf:
        return buf.rfind(b"\n") + 1, [], -1
    spans = []
    last = 0
    for m in span.finditer(buf):
        s, e = m.span()
        last = e
        if buf.find(b"\n", s, e) >= 0:
            spans.append((s, e))
    open_at = buf.find(quote, last)
    cut = _record_end(buf, len(buf) if open_at < 0 else open_at, spans)
    while spans and spans[-1][1] > cut:
        spans.pop()
    return cut, spans, open_at


def _record_end(buf: bytes, limit: int, spans: list[tuple[int, int]]) -> int:
    """Just after the last newline before ``limit`` that is not inside a quoted span (0 if none)."""
    starts = [s for s, _ in spans]
    while True:
        nl = buf.rfind(b"\n", 0, limit)
        if nl < 0:
            return 0
        i = bisect.bisect_left(starts, nl) - 1  # the last span starting before the newline
        if i < 0 or spans[i][1] <= nl:
            return nl + 1
        limit = spans[i][0]


def _glue(buf: bytes, spans: list[tuple[int, int]]) -> bytes:
    """``buf`` with the newlines of ``spans`` escaped and as many newlines added after each record's end."""
    out = []
    pos = 0
    pending = 0
    end_nl = -1  # the newline ending the record of the pending spans
    for s, e in spans:
        if pending and end_nl < s:
            out.append(buf[pos:end_nl + 1])
            out.append(b"\n" * pending)
            pos, pending = end_nl + 1, 0
        out.append(buf[pos:s])
        part = buf[s:e]
        pending += part.count(b"\n")
        out.append(part.replace(b"\n", b"\\n"))
        pos = e
        end_nl = buf.find(b"\n", e)
    if pending:
        if end_nl < 0:  # the last record of the file, without a final newline
            end_nl = len(buf) - 1
            out.append(buf[pos:])
            out.append(b"\n" * pending)
            return b"".join(out)
        out.append(buf[pos:end_nl + 1])
        out.append(b"\n" * pending)
        pos = end_nl + 1
    out.append(buf[pos:])
    return b"".join(out)
