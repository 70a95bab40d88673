"""One bad record never sinks a file: an invalid byte for the encoding, a NUL byte, a quote
opened and never closed. Only the record holding it is rejected (line number, reason, its raw
bytes kept), every other record lands, rows read = landed + rejected; --max-rejects still
guards publish. Each case in a small file, in the middle of a large one (two COPY
connections), inside a multi-line quoted record, on the last line without a final newline;
through the CLI and through CALL deltapipe.load."""

from __future__ import annotations

import psycopg
import pytest

COLS = "id bigint, name text, note text"
HEAD = b"id,name,note"

# what makes a record bad, the reject's SQLSTATE, a word of its message, whether the raw bytes are kept
BAD = {
    "latin1": (b"caf\xe9", "22021", "invalid byte sequence", True),
    "nul": (b"a\x00b", "22021", "0x00", True),
    "invalid_utf8": (b"\xc3\x28\xff", "22021", "invalid byte sequence", True),
}
PLACES = ["middle", "large", "multiline", "last_no_newline"]


def build(kind: str, place: str):
    """(file bytes, the bad record's first line, its bytes, ids expected to land, records in the file)."""
    n = 50000 if place == "large" else 9
    at = n // 2 if place != "last_no_newline" else n
    records = [b"%d,name%d,plain" % (i, i) for i in range(1, n + 1)]
    if kind == "unterminated":
        bad = b'%d,"never closed, ' % at
        if place == "multiline":
            bad += b"it goes on\nand on"
        # the record runs to the end of the file, as COPY reads it
        records = records[:at - 1] + [bad + b"\n" + b"\n".join(records[at:]) if at < n else bad]
        body = b"\n".join(records) + (b"" if place == "last_no_newline" else b"\n")
        raw = records[-1] + (b"" if place == "last_no_newline" else b"\n")
        return HEAD + b"\n" + body, at + 1, raw, set(range(1, at)), at
    frag = BAD[kind][0]
    bad = b'%d,"two\nlines, %s",x' % (at, frag) if place == "multiline" else b"%d,%s,x" % (at, frag)
    records[at - 1] = bad
    if place == "multiline":  # a good multi-line record after it: the line numbers stay right
        records[at] = b'%d,"also\ntwo lines",y' % (at + 1)
    body = b"\n".join(records) + (b"" if place == "last_no_newline" else b"\n")
    return HEAD + b"\n" + body, at + 1, bad, set(range(1, n + 1)) - {at}, n


def check(conn, run_id, table, kind, line, raw, ids, nrec):
    got = {r[0] for r in conn.execute("SELECT id FROM %s" % table).fetchall()}
    assert got == ids
    rj = conn.execute("SELECT line_no, sqlstate, message, raw_bytes, raw_line FROM deltapipe.reject "
                      "WHERE run_id = %s", (run_id,)).fetchall()
    assert len(rj) == 1, rj
    line_no, state, msg, raw_bytes, raw_line = rj[0]
    assert line_no == line
    if kind == "unterminated":
        assert (state, raw_bytes) == ("DP103", None) and "not closed" in msg
        assert raw_line.encode() == raw.rstrip(b"\n") or raw_line.encode() == raw
    else:
        assert state == BAD[kind][1] and BAD[kind][2] in msg
        assert bytes(raw_bytes) == raw  # losslessly, NUL and all
        assert "\\" in raw_line  # the bytes shown escaped
    nr = conn.execute("SELECT rows_in, inserted, rejected, status FROM deltapipe.node_run n "
                      "WHERE run_id = %s", (run_id,)).fetchone()
    assert nr == (nrec, len(ids), 1, "done")
    assert nr[0] == nr[1] + nr[2]


@pytest.mark.parametrize("kind", list(BAD) + ["unterminated"])
@pytest.mark.parametrize("place", PLACES)
def test_cli_rejects_only_the_bad_record(cli, conn, write, monkeypatch, kind, place):
    if place == "large":  # the file goes over two COPY connections: the bad record is in the second half
        monkeypatch.setenv("DELTAPIPE_PARALLEL_COPY_MIN", "1")
    data, line, raw, ids, nrec = build(kind, place)
    cli("dataset", "create", "t", "--key", "id", "--columns", COLS)
    f = write("f.csv", data)
    # --max-rejects 0: nothing is published, the bad record is named
    r = cli("load", "t", f, "--max-rejects", "0")
    assert r.exit_code != 0 and "nothing was published" in r.output, r.output
    assert "line %d" % line in r.output or "lines %d" % line in r.output, r.output
    assert conn.execute("SELECT to_regclass('public.t')").fetchone()[0] is None
    r = cli("load", "t", f, "--force")
    assert r.exit_code == 0, r.output
    run_id = conn.execute("SELECT max(id) FROM deltapipe.run").fetchone()[0]
    check(conn, run_id, "t", kind, line, raw, ids, nrec)
    # the same file again: nothing changes, the bad record is rejected again
    r = cli("load", "t", f, "--force")
    assert r.exit_code == 0, r.output
    run_id = conn.execute("SELECT max(id) FROM deltapipe.run").fetchone()[0]
    assert conn.execute("SELECT unchanged, rejected FROM deltapipe.node_run WHERE run_id = %s",
                        (run_id,)).fetchone() == (len(ids), 1)


@pytest.mark.parametrize("kind", list(BAD) + ["unterminated"])
@pytest.mark.parametrize("place", PLACES)
def test_sql_api_rejects_only_the_bad_record(dsn, kind, place):
    """Another application stages the file's lines itself; a record that is not valid text
    goes into _dp_bytes under its first line number."""
    data, line, raw, ids, nrec = build(kind, place)
    with psycopg.connect(dsn) as c:
        c.execute("SELECT deltapipe.create_dataset('t', ARRAY['id'], %s)", (COLS,))
        stg = c.execute("SELECT deltapipe.stage('t')").fetchone()[0]
        lines = data.split(b"\n")
        if data.endswith(b"\n"):
            lines.pop()
        skip = set(range(line, line + raw.count(b"\n") + 1)) if kind != "unterminated" else set()
        with c.cursor().copy("COPY %s (_dp_line, _dp_raw) FROM STDIN" % stg) as cp:
            for i, text in enumerate(lines, 1):
                if i not in skip:
                    cp.write_row((i, text.decode()))
        if kind != "unterminated":
            c.execute("INSERT INTO %s (_dp_line, _dp_bytes) VALUES (%%s, %%s)" % stg, (line, raw))
        res = c.execute("CALL deltapipe.load('t', %s, '{}')", (stg,)).fetchone()[0]
        c.commit()
        assert res["status"] == "done"
        with psycopg.connect(dsn, autocommit=True) as conn:
            check(conn, res["run_id"], "t", kind, line, raw, ids, nrec)


def test_a_latin1_file_loaded_as_utf8_rejects_its_lines_and_loads_as_latin1(cli, conn, write):
    f = write("l.csv", HEAD + b"\n1,caf\xe9,x\n2,plain,y\n3,na\xefve,z\n")
    cli("dataset", "create", "t", "--key", "id", "--columns", COLS)
    r = cli("load", "t", f)
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT array_agg(id) FROM t").fetchone()[0] == [2]
    assert conn.execute("SELECT array_agg(line_no ORDER BY line_no) FROM deltapipe.reject").fetchone()[0] == [2, 4]
    r = cli("load", "t", f, "--encoding", "latin1", "--force")
    assert r.exit_code == 0, r.output
    assert conn.execute("SELECT name FROM t ORDER BY id").fetchall() == [("café",), ("plain",), ("naïve",)]


def test_a_bad_header_fails_the_file(cli, conn, write):
    cli("dataset", "create", "t", "--key", "id", "--columns", COLS)
    r = cli("load", "t", write("h.csv", b"id,na\xffme,note\n1,a,b\n"))
    assert r.exit_code != 0 and "the header line (line 1) is not valid UTF8 text" in r.output, r.output
    assert conn.execute("SELECT to_regclass('public.t')").fetchone()[0] is None


@pytest.mark.parametrize("kind", list(BAD))
def test_resumable_load_rejects_only_the_bad_line(cli, conn, write, kind):
    data, line, raw, ids, nrec = build(kind, "middle")
    cli("dataset", "create", "t", "--key", "id", "--columns", COLS)
    r = cli("load", "t", write("f.csv", data), "--commit-every", "3")
    assert r.exit_code == 0, r.output
    run_id = conn.execute("SELECT max(id) FROM deltapipe.run").fetchone()[0]
    check(conn, run_id, "t", kind, line, raw, ids, nrec)


def test_a_clean_file_is_streamed_once(cli, conn, write, monkeypatch):
    """Bad bytes cost a clean file nothing: no second pass, no check of its bytes."""
    import deltapipe.load.loader as loader
    calls = []
    real = loader.set_aside

    def spy(*args):
        calls.append(args[1])
        return real(*args)
    monkeypatch.setattr(loader, "set_aside", spy)
    cli("dataset", "create", "t", "--key", "id", "--columns", COLS)
    data, *_ = build("latin1", "middle")
    assert cli("load", "t", write("clean.csv", data.replace(b"caf\xe9", b"cafe"))).exit_code == 0
    assert calls == []
    assert cli("load", "t", write("bad.csv", data)).exit_code == 0
    assert calls == [1]
