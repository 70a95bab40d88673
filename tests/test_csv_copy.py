"""CSV exactly as PostgreSQL reads it: a differential test against COPY (FORMAT csv).

Hypothesis writes odd CSV files (quotes mid-field, spaces around quotes, doubled quotes,
CR and LF inside quotes, a CR outside quotes, control bytes, NUL and Latin-1 bytes, empty
vs quoted-empty fields, the NULL string, no final newline, an unterminated quote on the last
line, a delimiter, quote and NULL string given as options). Each record is given to COPY on
its own (with the header line, into a table of text columns, on the same server): every
record COPY accepts must land with exactly COPY's values, every record COPY refuses must be
rejected on its own line, and rows read = landed + rejected.
"""

from __future__ import annotations

import itertools

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from deltapipe.load.loader import LoadOptions, load_file

_seq = itertools.count()
TOKENS = ["a", "Z", "0", " ", "  ", ",", ";", "|", "\t", '"', "'", "é", "€", "\r", "\n", "\r\n", "\x01", "\x1f",
          "\x7f", "NULL", "\\N", b"\x00", b"\xe9", b"\xff", b"\xc3"]


def _token(t, d: bytes, q: bytes, nul: bytes) -> bytes:
    if t == "D":
        return d
    if t == "Q":
        return q
    if t == "QQ":
        return q + q
    if t == "N":
        return nul
    return t if isinstance(t, bytes) else t.encode()


tokens = st.lists(st.sampled_from(TOKENS + ["D", "Q", "QQ", "N"]), max_size=5)
field = st.tuples(st.sampled_from(["raw", "raw", "quoted", "spaced", "mixed", "empty", "null"]), tokens, tokens)


@st.composite
def csv_files(draw):
    d = draw(st.sampled_from([b",", b";", b"\t", b"|"]))
    q = draw(st.sampled_from([b'"', b"'"]))
    nul = draw(st.sampled_from([b"", b"NULL", b"\\N"]))
    ncols = draw(st.integers(2, 4))
    nrec = draw(st.integers(1, 8))
    records = []
    for i in range(nrec):
        n = ncols - 1 + draw(st.sampled_from([0, 0, 0, 0, 0, -1, 1]))
        out = []
        for style, a, b in draw(st.lists(field, min_size=n, max_size=n)):
            ta = b"".join(_token(t, d, q, nul) for t in a)
            tb = b"".join(_token(t, d, q, nul) for t in b)
            if style == "raw":
                out.append(ta)
            elif style == "quoted":
                out.append(q + ta.replace(q, q + q) + q)
            elif style == "spaced":
                out.append(b" " + q + ta.replace(q, q + q) + q + b"  ")
            elif style == "mixed":
                out.append(ta + q + tb.replace(q, q + q) + q + ta)
            elif style == "empty":
                out.append(q + q)
            else:
                out.append(nul)
        rec = d.join([b"%d" % (i + 1)] + out)  # the first field: a plain key, unique
        # a newline outside quotes would end the record: keep records whole (the last
        # may end inside a quoted field: unterminated)
        fixed, inq = bytearray(), False
        for c in rec:
            if c == q[0]:
                inq = not inq
            fixed.append(ord("n") if c == 0x0A and not inq else c)
        if inq and i < nrec - 1:
            fixed += q
        records.append(bytes(fixed))
    final_newline = draw(st.booleans())
    return d, q, nul, ncols, records, final_newline


def _copy_one(conn, cols, header: bytes, rec: bytes, d, q, nul):
    """COPY's reading of one record: its values, or None when COPY refuses it."""
    stmt = sql.SQL("COPY cmp ({}) FROM STDIN (FORMAT csv, HEADER true, DELIMITER {}, QUOTE {}, NULL {})").format(
        sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Literal(d.decode()), sql.Literal(q.decode()),
        sql.Literal(nul.decode()))
    try:
        with conn.transaction(force_rollback=True):
            with conn.cursor().copy(stmt) as cp:
                cp.write(header + rec)
            rows = conn.execute(sql.SQL("SELECT {} FROM cmp").format(
                sql.SQL(", ").join(map(sql.Identifier, cols)))).fetchall()
    except psycopg.Error:
        return None
    return rows[0] if rows else ()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(case=csv_files())
def test_every_record_as_copy_reads_it(dsn, tmp_path_factory, case):
    d, q, nul, ncols, records, final_newline = case
    cols = ["c%d" % i for i in range(ncols)]
    header = d.join(c.encode() for c in cols) + b"\n"
    body = b"\n".join(records) + (b"\n" if final_newline else b"")
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    path.write_bytes(header + body)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS cmp")
        conn.execute("CREATE TABLE cmp (%s)" % ", ".join("%s text" % c for c in cols))
        expect, refused, line = {}, set(), 2
        for rec in records:
            got = _copy_one(conn, cols, header, rec + b"\n", d, q, nul)
            if got is None:
                refused.add(line)
            else:
                expect[got[0]] = tuple(got)
            line += rec.count(b"\n") + 1
        name = "t%d" % next(_seq)
        conn.execute("SELECT deltapipe.create_dataset(%s, ARRAY['c0'], %s)",
                     (name, ", ".join("%s text" % c for c in cols)))
        r = load_file(dsn, name, path, LoadOptions(format="csv", delimiter=d.decode(), quote=q.decode(),
                                                   null=nul.decode()), progress=False)
        landed = {row[0]: tuple(row) for row in conn.execute(
            sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, cols)),
                                                sql.Identifier(name))).fetchall()}
        rejected = {x[0] for x in conn.execute("SELECT line_no FROM deltapipe.reject WHERE run_id = %s",
                                               (r["run_id"],)).fetchall()}
    assert landed == expect
    assert rejected == refused
    assert r["rows_in"] == r["inserted"] + r["rejected"] == len(records)
