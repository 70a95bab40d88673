"""Multi-line CSV records glued while streaming, and large files COPY'd over two connections.

The three ways a file reaches its staging table must give the same rows, line
numbers and rejects: one connection with the records glued by the controller,
two connections (each half glued), and --commit-every chunks (glued by SQL).
"""

from __future__ import annotations

import random

import pytest

from deltapipe.errors import DeltapipeError
from deltapipe.load.glue import glue_records
from deltapipe.load.loader import LoadOptions, load_file
from deltapipe.load.parallel_copy import record_boundary


def csv_text(n: int, seed: int, bad: bool = False) -> str:
    rnd = random.Random(seed)
    out = ["id,name,note,amount\n"]
    for i in range(1, n + 1):
        k = rnd.randrange(10)
        if k == 0:
            note = '"multi\nline ""q"" %d"' % i
        elif k == 1:
            note = '"a, b\n\nc"'
        elif k == 2:
            note = '"say ""hi"""'
        elif k == 3:
            note = '""'
        else:
            note = "plain %d" % i
        name = '"x\ny"' if rnd.randrange(25) == 0 else "n%d" % i
        amount = "%d.5" % i
        if bad and k == 4 and rnd.randrange(3) == 0:
            amount = "oops"
        if bad and rnd.randrange(40) == 0:
            out.append("%d,only,three\n" % i)
            continue
        out.append("%d,%s,%s,%s\n" % (i, name, note, amount))
    return "".join(out)


@pytest.mark.parametrize("seed", range(5))
def test_glue_same_for_any_block_size_and_keeps_line_numbers(seed):
    data = csv_text(300, seed).encode()
    whole = b"".join(glue_records([data], b'"'))
    rnd = random.Random(seed)
    for _ in range(5):
        blocks, i = [], 0
        while i < len(data):
            n = rnd.choice([1, 2, 3, 7, 64, 1000])
            blocks.append(data[i:i + n])
            i += n
        assert b"".join(glue_records(blocks, b'"')) == whole
    # same number of lines; every non-empty row is one whole record starting on its own line
    assert whole.count(b"\n") == data.count(b"\n")
    lines = data.split(b"\n")
    for no, row in enumerate(whole.split(b"\n")):
        if row:
            assert row.replace(b"\\n", b"\n").startswith(lines[no])
            assert row.count(b'"') % 2 == 0


def test_glue_last_record_without_newline_and_unterminated_quote():
    assert b"".join(glue_records([b'a,"x\ny"'], b'"')) == b'a,"x\\ny"\n'
    # a quote open at the end of the file: the record runs to the end (as COPY reads it), sent as
    # one line followed by one empty line per newline it holds (the database rejects it)
    assert b"".join(glue_records([b"h\n1,ok\n", b'2,"open\n3,x\n'], b'"')) == b'h\n1,ok\n2,"open\\n3,x\\n\n\n'
    assert b"".join(glue_records([b"h\n1,ok\n", b'2,"open'], b'"')) == b'h\n1,ok\n2,"open'


def reference_glue(data: bytes, quote: bytes = b'"') -> bytes | int:
    """The glue, one byte at a time: the glued stream (a quote left open runs to the end of the file)."""
    out, pending, inside, line, opened = bytearray(), 0, False, 1, 0
    for b in data:
        c = bytes([b])
        if c == quote:
            inside = not inside
            opened = line
        if c == b"\n":
            line += 1
            if inside:
                out += b"\\n"
                pending += 1
                continue
            out += b"\n" * (1 + pending)
            pending = 0
            continue
        out += c
    return bytes(out + b"\n" * pending)


@pytest.mark.parametrize("seed", range(4))
def test_glue_equals_a_byte_by_byte_reference(seed):
    """Random soups of quotes, newlines and text, cut into random blocks: the same stream (or error) as the reference."""
    rnd = random.Random(seed)
    atoms = [b"a", b",", b'"', b"\n", b'""', b"\n\n", b'x"\n"y', b"\\\\", b'"q,\n"']
    for _ in range(1500):
        data = b"".join(rnd.choice(atoms) for _ in range(rnd.randrange(0, 30)))
        if rnd.random() < 0.3:
            data = csv_text(rnd.randrange(1, 30), rnd.randrange(1000)).encode()
        blocks, i = [], 0
        while i < len(data):
            n = rnd.choice([1, 2, 5, 64, 1 << 20])
            blocks.append(data[i:i + n])
            i += n
        want = reference_glue(data)
        if isinstance(want, int):
            with pytest.raises(DeltapipeError) as e:
                list(glue_records(blocks, b'"'))
            assert "line %d" % want in e.value.message, (data, e.value.message)
        else:
            assert b"".join(glue_records(blocks, b'"')) == want, data


@pytest.mark.parametrize("seed", range(3))
def test_record_boundary_is_a_record_start(tmp_path, seed):
    data = csv_text(500, seed).encode()
    p = tmp_path / "f.csv"
    p.write_bytes(data)
    for target in range(0, len(data), max(1, len(data) // 37)):
        off, lines = record_boundary(p, target, b'"')
        if off == 0:
            continue
        assert off >= target and data[off - 1:off] == b"\n"
        assert data[:off].count(b'"') % 2 == 0
        assert lines == data[:off].count(b"\n")


def _load_three_ways(dsn, conn, write, monkeypatch, text):
    path = write("f.csv", text)
    out = []
    for name, opts, parallel in (("g_one", {}, False), ("g_two", {}, True), ("g_sql", {"commit_every": 97}, False)):
        conn.execute("SELECT deltapipe.create_dataset(%s, ARRAY['id'], %s)",
                     (name, "id bigint, name text, note text, amount numeric"))
        monkeypatch.setenv("DELTAPIPE_PARALLEL_COPY_MIN", "1" if parallel else str(1 << 40))
        r = load_file(dsn, name, path, LoadOptions(**opts), progress=False)
        assert r["status"] == "done", r
        rows = conn.execute("SELECT id, name, note, amount FROM %s ORDER BY id" % name).fetchall()
        rej = conn.execute("SELECT line_no, raw_line, sqlstate FROM deltapipe.reject WHERE run_id = %s ORDER BY line_no",
                           (r["run_id"],)).fetchall()
        counts = (r["rows_in"], r["inserted"], r["rejected"])
        out.append((rows, rej, counts))
    assert out[0] == out[1] == out[2]
    assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'deltapipe_stage'").fetchone()[0] == 0
    return out[0]


def test_two_connections_and_sql_glue_give_the_same_load(dsn, conn, write, monkeypatch):
    rows, rej, counts = _load_three_ways(dsn, conn, write, monkeypatch, csv_text(3000, 7))
    assert len(rows) == 3000 and not rej
    assert any("\n" in r[2] for r in rows) and any('"' in r[2] for r in rows)


def test_two_connections_same_rejects_and_line_numbers(dsn, conn, write, monkeypatch):
    rows, rej, counts = _load_three_ways(dsn, conn, write, monkeypatch, csv_text(3000, 11, bad=True))
    assert rej and counts[2] == len(rej)
    assert {s for _, _, s in rej} == {"DP101", "22P02"}
    text = csv_text(3000, 11, bad=True).split("\n")
    for line_no, raw, _ in rej:  # the raw line is the file's line at that number
        assert raw.split("\n")[0] == text[line_no - 1]


def test_second_half_dropped_when_the_load_fails(dsn, conn, write, monkeypatch):
    # a header that does not match fails after both halves are staged
    path = write("bad.csv", "id,wrong\n" + "".join("%d,x\n" % i for i in range(2000)))
    conn.execute("SELECT deltapipe.create_dataset('g_fail', ARRAY['id'], 'id bigint, name text')")
    monkeypatch.setenv("DELTAPIPE_PARALLEL_COPY_MIN", "1")
    with pytest.raises(DeltapipeError):
        load_file(dsn, "g_fail", path, LoadOptions(), progress=False)
    assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'deltapipe_stage'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM deltapipe.staging").fetchone()[0] == 0


TRICKY = [
    "id,name,note,amount\n1,a,b,1\n\n2,c,d,2\n",                       # an empty line
    "\n\nid,name,note,amount\n1,a,b,1\n2,c,d,2",                       # leading empty lines, no final newline
    "id,name,note,amount\r\n1,a,b,1\r\n\r\n\r\n2,c,d,2\r\n",           # CRLF, empty lines
    'id,name,note,amount\n1,a,"x\n\n\ny",1\n\n\n2,c,"\n",2\n\n',      # empty lines inside quotes and after
    'id,name,note,amount\n1,a,"x\ny\nz",1\n2,"b\n","c\n",3\n3,d,e,4',    # glued records, no empty line
    "id,name,note,amount\n1,a,\\.,1\n2,\\,\\N,2\n\n",                  # backslashes, \. line
    "",
    "\n\n\n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_line_count_matches_the_staged_rows(conn, text):
    """The controller's count of non-empty staged lines (it spares the database a scan) is exact."""
    from deltapipe.load.linecount import LineCount
    from deltapipe.load.loader import escape_blocks
    rnd = random.Random(len(text))
    for how in ("glue counts", "glue", "no glue"):
        for size in (1, 2, 3, 5, 1 << 20):
            data = text.encode()
            blocks = [data[i:i + size] for i in range(0, len(data), size)]

            class F:  # a file object that returns those blocks
                def __init__(self):
                    self.it = iter(blocks)

                def read(self, n):
                    return next(self.it, b"")
            count = LineCount()
            chunks = escape_blocks(F())
            if how != "no glue":
                chunks = glue_records(chunks, b'"', 1, count if how == "glue counts" else None)
            conn.execute("CREATE TEMP TABLE lc (_dp_line bigint GENERATED BY DEFAULT AS IDENTITY, _dp_raw text)")
            with conn.cursor() as cur, cur.copy("COPY lc (_dp_raw) FROM STDIN") as cp:
                for chunk in chunks:
                    if how == "glue counts":
                        cp.write(chunk)
                        continue
                    if rnd.random() < 0.5 and len(chunk) > 1:  # chunks cut anywhere are counted the same
                        cp.write(count.add(chunk[:1]))
                        chunk = chunk[1:]
                    cp.write(count.add(chunk))
            staged = conn.execute("SELECT count(*) FROM lc WHERE _dp_raw <> ''").fetchone()[0]
            conn.execute("DROP TABLE lc")
            assert count.nonempty == staged, (text, how, size)


def test_snapshot_rows_read_with_empty_lines_and_crlf(dsn, conn, write, monkeypatch):
    """Rows read of a snapshot load (counted by the controller) reconcile, whatever the empty lines."""
    conn.execute("SELECT deltapipe.create_dataset('g_lc', ARRAY['id'], 'id bigint, name text, note text, amount numeric')")
    body = "".join('%d,n%d,"multi\n\nline %d",%d\n' % (i, i, i, i) for i in range(1, 200))
    load_file(dsn, "g_lc", write("a.csv", "id,name,note,amount\n" + body), LoadOptions(), progress=False)
    for parallel in (False, True):
        monkeypatch.setenv("DELTAPIPE_PARALLEL_COPY_MIN", "1" if parallel else str(1 << 40))
        text = ("\r\n\r\nid,name,note,amount\r\n" + body.replace("\n", "\r\n").replace("line 7\"", "line seven\"")
                + "\r\n\r\n500,new,x,1")
        r = load_file(dsn, "g_lc", write("b%d.csv" % parallel, text), LoadOptions(mode="snapshot", force=True),
                      progress=False)
        assert r["rows_in"] == 200, r
        assert r["rows_in"] == r["inserted"] + r["updated"] + r["unchanged"] + r["rejected"] + r["duplicates"]
        assert (r["inserted"], r["updated"], r["deleted"]) == ((1, 1, 0) if not parallel else (0, 0, 0)), r
