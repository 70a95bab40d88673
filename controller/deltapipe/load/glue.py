"""Glue CSV records that span lines while the file streams to COPY.

A quoted CSV field may hold newlines, but the staging table gets one physical
line per row (COPY text format). Left as is, such a record arrives as several
rows that the database would have to find and glue back together, rewriting
staging rows. Here the newlines inside quotes are sent as COPY's ``\\n`` escape
instead, so the record arrives as one row under the line number of its first
line, and the record is followed by one empty line per newline it held: the
line numbers of the rows after it stay those of the file (empty lines are
skipped by the load anyway).

A quoted field still open at the end of the file makes one record of the rest
of the file, as COPY reads it; the database rejects it (malformed quoting).

Records are found with regular expressions run in C: one skips whole stretches
of records without a newline inside quotes, and stops only at the records that
have one (the rare ones), which are glued in Python. A block is cut after its
last complete record, the rest waits for the next block.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

from deltapipe.errors import DeltapipeError
from deltapipe.load.linecount import LineCount, has_empty_line

MAX_RECORD = 32 << 20  # a quoted field this long is taken for an unterminated quote


def _unterminated(line: int, detail: str) -> DeltapipeError:
    return DeltapipeError("unterminated quoted field starting at line %d" % line, detail=detail,
                          hint="check the quoting of that line, or give the right --quote / --format",
                          sqlstate="DP012")


def _patterns(quote: bytes) -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    q = re.escape(quote)
    # text outside quotes, and quoted spans without a newline: skipped in one go (possessive: no backtracking)
    skip = b"(?:[^" + q + b"]++|" + q + b"[^" + q + b"\n]*+" + q + b")*+"
    # then a record holding a newline inside quotes: from its first such span to the newline that ends it
    record = q + b"[^" + q + b"]*+" + q + b"(?:[^" + q + b"\n]++|" + q + b"[^" + q + b"]*+" + q + b")*+"
    # and text outside quotes with any closed quoted span: it stops at a quote that is not closed
    closed = b"(?:[^" + q + b"]++|" + q + b"[^" + q + b"]*+" + q + b")*+"
    return re.compile(skip + b"(" + record + b")\n"), re.compile(skip), re.compile(closed)


def glue_records(blocks: Iterable[bytes], quote: bytes, first_line: int = 1,
                 count: LineCount | None = None) -> Iterator[bytes]:
    """Yield ``blocks`` (already escaped for COPY text format) with multi-line records glued.

    ``first_line`` is the file's line number of the first block's first line (for errors);
    ``count`` is given what is yielded (see linecount.py).
    """
    pats = _patterns(quote)
    carry = b""
    lines = first_line - 1  # lines yielded so far
    for block in blocks:
        buf = carry + block if carry else block
        out, cut, open_at = _glue(buf, *pats)
        carry = buf[cut:]
        if open_at >= 0 and len(carry) > MAX_RECORD:
            line = lines + buf.count(b"\n", 0, open_at) + 1
            raise _unterminated(line, "no closing quote in the next %d MB" % (MAX_RECORD >> 20))
        if not out:
            continue
        n = out.count(b"\n")
        lines += n
        if count is not None:
            # each newline of a quoted span became two bytes (\\n) and added one empty line
            count.add(out, n, None if has_empty_line(buf, cut) else (len(out) - cut) // 2)
        yield out
    if carry:
        out, cut, open_at = _glue(carry + b"\n", *pats)
        if open_at >= 0:
            # the file ends inside a quoted field: as COPY reads it, the record runs to the end
            # of the file. It goes as one line (rejected: its quoting is malformed), followed by
            # one empty line per newline it holds, as a glued record.
            rest = (carry + b"\n")[cut:-1]
            out = out + rest.replace(b"\n", b"\\n") + b"\n" * rest.count(b"\n")
        else:
            out = out[:-1]  # the newline added above
        if count is not None:
            count.add(out)
        yield out


def _glue(buf: bytes, multi: re.Pattern, skip: re.Pattern, closed: re.Pattern) -> tuple[bytes, int, int]:
    """(the complete records at the start of ``buf``, glued; their length in ``buf``; start of an open quote or -1).

    A record holding newlines inside quotes is sent as one line, those newlines escaped
    (COPY's \\n), and followed by as many empty lines: the next records keep their line numbers.
    """
    out = []
    pos = 0
    while True:
        m = multi.match(buf, pos)
        if m is None:
            break
        s, e = m.span(1)
        out.append(buf[pos:s])
        rec = buf[s:e]
        out.append(rec.replace(b"\n", b"\\n"))
        out.append(b"\n" * (rec.count(b"\n") + 1))
        pos = e + 1
    stop = skip.match(buf, pos).end()
    if stop == len(buf):  # no open quote: the records end at the last newline
        cut, open_at = buf.rfind(b"\n", pos) + 1 or pos, -1
    else:  # the record holding the quote at stop is not complete: cut before it
        cut = buf.rfind(b"\n", pos, stop) + 1 or pos
        open_at = closed.match(buf, stop).end()
        if open_at == len(buf):
            open_at = -1
    if not out:
        return buf[:cut], cut, open_at
    out.append(buf[pos:cut])
    return b"".join(out), cut, open_at
