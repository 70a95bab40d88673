"""Compressed (gzip, zstd, bzip2, xz) and Parquet inputs: each loads exactly as the plain CSV does
(table contents, rejects with their lines), through the CLI."""

from __future__ import annotations

import bz2
import datetime
import decimal
import gzip
import hashlib
import lzma
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline_helpers import make_pipeline

COMPRESS = {"gz": gzip.compress, "zst": lambda b: zstandard.ZstdCompressor().compress(b), "bz2": bz2.compress,
            "xz": lzma.compress}
COLS = "id bigint, name text, amount numeric(12,2), day date, ok boolean"


def mkds(conn, name, cols=COLS, key=("id",)):
    conn.execute("SELECT deltapipe.create_dataset(%s, %s, %s)", (name, list(key), cols))


def contents(conn, name, cols="id, name, amount, day, ok"):
    return sorted(conn.execute("SELECT %s FROM public.%s" % (cols, name)).fetchall(), key=repr)


def rejects(conn, name):
    return conn.execute("SELECT r.line_no, r.sqlstate, r.raw_line FROM deltapipe.reject r JOIN deltapipe.run u "
                        "ON u.id = r.run_id WHERE u.args->>'dataset' = %s ORDER BY line_no", (name,)).fetchall()


def last_run(conn, name):
    return conn.execute("SELECT n.status, n.rows_in, n.inserted, n.rejected, n.file_sha256, n.sqlstate, n.error "
                        "FROM deltapipe.node_run n WHERE n.node = %s ORDER BY n.id DESC LIMIT 1", (name,)).fetchone()


def big_csv(rows: int = 60000) -> bytes:
    """A CSV over several 4 MB blocks once decompressed: quoted delimiters, doubled quotes, records
    spanning lines, CRLF-free, with bad rows (a wrong field count, a bad number, a bad date) among them."""
    rnd = random.Random(7)
    out = ["id,name,amount,day,ok\n"]
    for i in range(1, rows + 1):
        name = rnd.choice(['plain', '"with, comma"', '"say ""hi"""', '"two\nlines"', '', '""', 'x' * 40])
        amount = "%d.%02d" % (rnd.randrange(10 ** 6), rnd.randrange(100))
        day = "2024-%02d-%02d" % (rnd.randrange(1, 13), rnd.randrange(1, 29))
        ok = rnd.choice(["true", "false", ""])
        if i % 9973 == 0:
            out.append("%d,%s,%s\n" % (i, name, amount))  # too few fields
        elif i % 7919 == 0:
            out.append("%d,%s,abc,%s,%s\n" % (i, name, day, ok))  # not a number
        else:
            out.append("%d,%s,%s,%s,%s\n" % (i, name, amount, day, ok))
    return "".join(out).encode()


@pytest.fixture(scope="module")
def data() -> bytes:
    return big_csv()


@pytest.mark.parametrize("ext", sorted(COMPRESS))
def test_each_compression_loads_as_the_plain_csv(cli, conn, write, data, ext):
    plain = write("plain.csv", data)
    packed = write("orders.csv." + ext, COMPRESS[ext](data))
    mkds(conn, "plain")
    mkds(conn, "packed")
    assert cli("load", "plain", plain).exit_code == 0
    r = cli("load", "packed", packed)
    assert r.exit_code == 0, r.output
    assert contents(conn, "packed") == contents(conn, "plain")
    assert len(contents(conn, "plain")) > 50000
    rej_plain, rej_packed = rejects(conn, "plain"), rejects(conn, "packed")
    assert rej_packed == rej_plain and len(rej_plain) == 13  # 6 wrong field counts + 7 bad numbers
    st, rows_in, inserted, rejected, sha, _, _ = last_run(conn, "packed")
    assert (st, rows_in, inserted + rejected) == ("done", 60000, 60000)
    # skip-unchanged goes by the SHA-256 of the compressed file, as it is on disk
    assert sha == hashlib.sha256(packed.read_bytes()).hexdigest()
    r = cli("load", "packed", packed)
    assert "skipped" in r.output and last_run(conn, "packed")[0] == "skipped"


@pytest.mark.parametrize("ext", ["gz", "zst"])
def test_compressed_ndjson_and_tsv(cli, conn, write, ext):
    mkds(conn, "nd", "id bigint, name text, tags jsonb")
    nd = b'{"id": 1, "name": "a\\tb", "tags": [1]}\n{"id": 2, "name": "back\\\\slash"}\nnot json\n'
    write("e.ndjson", nd)
    r = cli("load", "nd", write("e.ndjson." + ext, COMPRESS[ext](nd)))
    assert r.exit_code == 0, r.output
    assert contents(conn, "nd", "id, name, tags") == [(1, "a\tb", [1]), (2, "back\\slash", None)]
    assert [x[0] for x in rejects(conn, "nd")] == [3]
    mkds(conn, "tsv", "id bigint, name text")
    r = cli("load", "tsv", write("t.tsv." + ext, COMPRESS[ext](b"id\tname\n1\tx y\n2\t\n")))
    assert r.exit_code == 0, r.output
    assert contents(conn, "tsv", "id, name") == [(1, "x y"), (2, None)]


def test_compression_is_found_by_content_not_by_name(cli, conn, write):
    mkds(conn, "a")
    text = b"\xef\xbb\xbfid,name,amount,day,ok\r\n1,x,1.5,2024-01-01,true\r\n2,y,,2024-01-02,\r\n"
    disguised = write("really_gzip.csv", gzip.compress(text))  # a BOM and CRLF inside, as for a plain file
    r = cli("load", "a", disguised)
    assert r.exit_code == 0, r.output
    assert contents(conn, "a") == [(1, "x", decimal.Decimal("1.50"), datetime.date(2024, 1, 1), True),
                                   (2, "y", None, datetime.date(2024, 1, 2), None)]
    mkds(conn, "b")
    r = cli("load", "b", write("not_really.csv.gz", text))  # a plain file named .gz
    assert r.exit_code == 0, r.output
    assert contents(conn, "b") == contents(conn, "a")
    # and the columns of `dataset create --from` are read through the decompression too
    r = cli("dataset", "create", "c", "--key", "id", "--from", write("c.ndjson.xz", lzma.compress(
        b'{"id": 1, "when": "2024-01-01", "n": 2.5}\n')))
    assert r.exit_code == 0, r.output
    cols = conn.execute("SELECT columns FROM deltapipe.dataset WHERE name = 'c'").fetchone()[0]
    assert [(c["name"], c["type"]) for c in cols] == [("id", "bigint"), ("when", "date"), ("n", "numeric")]


def test_a_truncated_compressed_file_is_one_error_and_changes_nothing(cli, conn, write, data):
    mkds(conn, "t")
    assert cli("load", "t", write("v1.csv.gz", gzip.compress(b"id,name,amount,day,ok\n1,a,1,2024-01-01,true\n"))).exit_code == 0
    whole = gzip.compress(data)
    r = cli("load", "t", write("v2.csv.gz", whole[: len(whole) // 2]))
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and "corrupt or truncated gzip stream" in r.output, r.output
    st, *_, sqlstate, err = last_run(conn, "t")
    assert (st, sqlstate) == ("failed", "DP016") and "truncated" in err
    assert contents(conn, "t") == [(1, "a", decimal.Decimal("1.00"), datetime.date(2024, 1, 1), True)]


def test_options_that_cannot_apply_are_refused_in_one_line(cli, conn, write):
    mkds(conn, "t")
    r = cli("load", "t", write("v.csv.zst", COMPRESS["zst"](b"id,name\n1,a\n")), "--commit-every", "10")
    assert r.exit_code == 1 and r.output.count("\n") == 1
    assert "zstd-compressed file" in r.output and "--commit-every" in r.output
    path = write("v.parquet", b"")
    pq.write_table(pa.table({"id": [1]}), str(path))
    for extra in (["--commit-every", "10"], ["--delimiter", ";"], ["--no-header"], ["--encoding", "latin1"]):
        r = cli("load", "t", path, *extra)
        assert r.exit_code == 1 and r.output.count("\n") == 1 and "Parquet file" in r.output, (extra, r.output)
        assert extra[0] in r.output
    # refused before anything ran
    assert conn.execute("SELECT count(*) FROM deltapipe.run").fetchone()[0] == 0


# ---------------------------------------------------------------- Parquet

# every Arrow type deltapipe accepts: (Arrow type, values, PostgreSQL type, the values as PostgreSQL returns them)
UTC = datetime.timezone.utc
TYPES = [
    (pa.bool_(), [True, False, None], "boolean", [True, False, None]),
    (pa.int8(), [-128, 127, None], "smallint", [-128, 127, None]),
    (pa.int16(), [-32768, 32767, None], "smallint", [-32768, 32767, None]),
    (pa.int32(), [-2 ** 31, 2 ** 31 - 1, None], "integer", [-2 ** 31, 2 ** 31 - 1, None]),
    (pa.int64(), [-2 ** 63, 2 ** 63 - 1, None], "bigint", [-2 ** 63, 2 ** 63 - 1, None]),
    (pa.uint8(), [0, 255, None], "smallint", [0, 255, None]),
    (pa.uint16(), [0, 65535, None], "integer", [0, 65535, None]),
    (pa.uint32(), [0, 2 ** 32 - 1, None], "bigint", [0, 2 ** 32 - 1, None]),
    (pa.uint64(), [0, 2 ** 64 - 1, None], "numeric(20,0)", [0, 2 ** 64 - 1, None]),
    (pa.float16(), [1.5, -0.25, None], "real", [1.5, -0.25, None]),
    (pa.float32(), [0.1, 3.4e38, None], "real", [pytest.approx(0.1), pytest.approx(3.4e38), None]),
    (pa.float64(), [0.1, float("inf"), None], "double precision", [0.1, float("inf"), None]),
    (pa.decimal128(12, 2), [decimal.Decimal("1234567890.12"), decimal.Decimal("-0.05"), None], "numeric(12,2)",
     [decimal.Decimal("1234567890.12"), decimal.Decimal("-0.05"), None]),
    (pa.decimal256(40, 10), [decimal.Decimal("123456789012345678901234567890.0123456789"), None, None],
     "numeric(40,10)", [decimal.Decimal("123456789012345678901234567890.0123456789"), None, None]),
    (pa.string(), ['a,b "q"', "two\nlines\\ \t tab", ""], "text", ['a,b "q"', "two\nlines\\ \t tab", ""]),
    (pa.large_string(), ["x", None, "é"], "text", ["x", None, "é"]),
    (pa.string_view(), ["v", None, ""], "text", ["v", None, ""]),
    (pa.binary(), [b"\x00\x01\\", None, b""], "bytea", [b"\x00\x01\\", None, b""]),
    (pa.large_binary(), [b"ab", None, None], "bytea", [b"ab", None, None]),
    (pa.binary(2), [b"\xff\x00", None, b"zz"], "bytea", [b"\xff\x00", None, b"zz"]),
    (pa.date32(), [datetime.date(2024, 2, 29), None, datetime.date(1, 1, 1)], "date",
     [datetime.date(2024, 2, 29), None, datetime.date(1, 1, 1)]),
    (pa.date64(), [datetime.date(1999, 12, 31), None, None], "date", [datetime.date(1999, 12, 31), None, None]),
    (pa.time32("s"), [datetime.time(23, 59, 59), None, None], "time", [datetime.time(23, 59, 59), None, None]),
    (pa.time64("us"), [datetime.time(1, 2, 3, 456789), None, None], "time",
     [datetime.time(1, 2, 3, 456789), None, None]),
    (pa.timestamp("us"), [datetime.datetime(2024, 1, 2, 3, 4, 5, 123456), None, None], "timestamp",
     [datetime.datetime(2024, 1, 2, 3, 4, 5, 123456), None, None]),
    (pa.timestamp("s"), [datetime.datetime(1970, 1, 1), None, None], "timestamp",
     [datetime.datetime(1970, 1, 1), None, None]),
    (pa.timestamp("ms", tz="UTC"), [datetime.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), None, None],
     "timestamp with time zone", [datetime.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), None, None]),
    (pa.timestamp("us", tz="America/New_York"), [datetime.datetime(2024, 7, 1, 12, 0, tzinfo=UTC), None, None],
     "timestamp with time zone", [datetime.datetime(2024, 7, 1, 12, 0, tzinfo=UTC), None, None]),
    (pa.null(), [None, None, None], "text", [None, None, None]),
    (pa.dictionary(pa.int32(), pa.string()), ["red", "blue", None], "text", ["red", "blue", None]),
    (pa.list_(pa.int64()), [[1, 2], [], None], "jsonb", [[1, 2], [], None]),
    (pa.large_list(pa.string()), [["a\nb"], None, None], "jsonb", [["a\nb"], None, None]),
    (pa.struct([("a", pa.int32()), ("b", pa.string())]), [{"a": 1, "b": "x\\y"}, None, {"a": None, "b": None}],
     "jsonb", [{"a": 1, "b": "x\\y"}, None, {"a": None, "b": None}]),
    (pa.map_(pa.string(), pa.int32()), [[("k", 1)], None, None], "jsonb", [[["k", 1]], None, None]),
]

PG_NAMES = {"time": "time without time zone", "timestamp": "timestamp without time zone"}


def _col(i: int) -> str:
    return "c%02d" % i


def test_parquet_type_mapping_for_every_accepted_arrow_type(cli, conn, write, tmp_path):
    arrays = {"id": pa.array([1, 2, 3], pa.int64())}
    for i, (typ, values, _pg, _out) in enumerate(TYPES):
        arrays[_col(i)] = pa.array(values, typ)
    path = tmp_path / "types.parquet"
    pq.write_table(pa.table(arrays), str(path))
    r = cli("dataset", "create", "ty", "--key", "id", "--from", path)
    assert r.exit_code == 0, r.output
    cols = {c["name"]: c["type"] for c in conn.execute("SELECT columns FROM deltapipe.dataset WHERE name = 'ty'").fetchone()[0]}
    for i, (typ, _v, pg, _o) in enumerate(TYPES):
        assert cols[_col(i)] == PG_NAMES.get(pg, pg), (typ, cols[_col(i)])
    r = cli("load", "ty", path)
    assert r.exit_code == 0, r.output
    assert "rejected             0" in r.output
    # the types of the table's columns (format_type), and every value landed
    got = dict(conn.execute("SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                            "WHERE attrelid = 'public.ty'::regclass AND attnum > 0 AND NOT attisdropped").fetchall())
    for i, (typ, _v, pg, _o) in enumerate(TYPES):
        assert got[_col(i)] == PG_NAMES.get(pg, pg.split("(")[0]), typ
    rows = conn.execute("SELECT %s FROM public.ty ORDER BY id" % ", ".join(_col(i) for i in range(len(TYPES)))).fetchall()
    for i, (typ, _v, _pg, out) in enumerate(TYPES):
        assert [row[i] if not isinstance(row[i], memoryview) else bytes(row[i]) for row in rows] == out, typ


def test_arrow_types_without_a_mapping():
    from deltapipe.load.parquet import pg_type
    for typ in (pa.duration("s"), pa.month_day_nano_interval(), pa.dense_union([pa.field("a", pa.int32())])):
        assert pg_type(typ) is None, typ
    assert [pg_type(t) for t, *_ in TYPES] == [pg for _t, _v, pg, _o in TYPES]


def test_parquet_types_without_a_mapping_are_one_clear_error(cli, conn, write, tmp_path):
    col = pa.array([datetime.timedelta(seconds=5)], pa.duration("s"))
    path = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"id": [1], "odd": col}), str(path))
    for args in (("dataset", "create", "o", "--key", "id", "--from", path),):
        r = cli(*args)
        assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
        assert "odd (" in r.output and "does not load" in r.output
    mkds(conn, "o", "id bigint, odd text")
    r = cli("load", "o", path)
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "does not load" in r.output
    assert last_run(conn, "o")[5] == "DP016"


def _same_rows_csv_and_parquet(write, tmp_path):
    """The same rows as a CSV file and as a Parquet file of several row groups."""
    rnd = random.Random(3)
    ids, names, amounts, days, oks, when, whenz, ns = [], [], [], [], [], [], [], []
    lines = ["id,name,amount,day,ok,n,at,atz\n"]
    for i in range(1, 3001):
        name = rnd.choice(["plain", "with, comma", 'say "hi"', "two\nlines", "", None, "back\\slash\ttab", "é"])
        amount = None if i % 11 == 0 else decimal.Decimal(rnd.randrange(-10 ** 8, 10 ** 8)) / 100
        day = None if i % 13 == 0 else datetime.date(2020, 1, 1) + datetime.timedelta(days=rnd.randrange(2000))
        ok = rnd.choice([True, False, None])
        n = "x%d" % i if i % 97 == 0 else str(rnd.randrange(1000))  # a string column, into an integer column
        at = datetime.datetime(2024, 1, 1) + datetime.timedelta(microseconds=rnd.randrange(10 ** 14))
        atz = at.replace(tzinfo=UTC)
        ids.append(i), names.append(name), amounts.append(amount), days.append(day), oks.append(ok)
        when.append(at), whenz.append(atz), ns.append(n)
        q = "" if name is None else '"%s"' % name.replace('"', '""')
        lines.append("%d,%s,%s,%s,%s,%s,%s,%s\n" % (i, q, "" if amount is None else amount, day or "",
                                                   "" if ok is None else str(ok).lower(), n, at.isoformat(" "),
                                                   atz.isoformat(" ")))
    csv_path = write("same.csv", "".join(lines))
    table = pa.table({"id": pa.array(ids, pa.int64()), "name": pa.array(names, pa.string()),
                      "amount": pa.array(amounts, pa.decimal128(12, 2)), "day": pa.array(days, pa.date32()),
                      "ok": pa.array(oks, pa.bool_()), "n": pa.array(ns, pa.string()),
                      "at": pa.array(when, pa.timestamp("us")), "atz": pa.array(whenz, pa.timestamp("us", tz="UTC"))})
    pq_path = tmp_path / "same.parquet"
    pq.write_table(table, str(pq_path), row_group_size=700)
    return csv_path, pq_path


def test_parquet_loads_exactly_as_the_equivalent_csv(cli, conn, write, tmp_path, monkeypatch):
    import deltapipe.load.parquet as parquet
    monkeypatch.setattr(parquet, "BATCH_ROWS", 256)  # many batches per row group
    csv_path, pq_path = _same_rows_csv_and_parquet(write, tmp_path)
    cols = COLS + ", n integer, at timestamp, atz timestamptz"
    mkds(conn, "from_csv", cols)
    mkds(conn, "from_pq", cols)
    assert cli("load", "from_csv", csv_path).exit_code == 0
    r = cli("load", "from_pq", pq_path)
    assert r.exit_code == 0, r.output
    allcols = "id, name, amount, day, ok, n, at, atz"
    assert contents(conn, "from_pq", allcols) == contents(conn, "from_csv", allcols)
    assert len(contents(conn, "from_csv", allcols)) == 3000 - 30
    assert conn.execute("SELECT count(*) FROM from_pq WHERE name = ''").fetchone()[0] > 0  # '' is not NULL
    assert conn.execute("SELECT count(*) FROM from_pq WHERE name IS NULL").fetchone()[0] > 0
    # the wrong-typed values are rejected per row, the same rows for the same reasons; the line of a
    # Parquet reject is its row + 1 (the CSV's lines differ: some of its records span two lines)
    rej_csv = [(raw.split(",")[0], st) for _line, st, raw in rejects(conn, "from_csv")]
    rej_pq = rejects(conn, "from_pq")
    assert [(raw.split(",")[0], st) for _line, st, raw in rej_pq] == rej_csv
    assert [line for line, _st, _raw in rej_pq] == [i + 1 for i in range(97, 3001, 97)]
    assert all(raw.startswith("%d," % (line - 1)) for line, _st, raw in rej_pq)
    st, rows_in, inserted, rejected, sha, *_ = last_run(conn, "from_pq")
    assert (st, rows_in, inserted, rejected) == ("done", 3000, 2970, 30)
    assert sha == hashlib.sha256(pq_path.read_bytes()).hexdigest()
    # a changed row, then the same file again: skipped
    r = cli("load", "from_pq", pq_path)
    assert "skipped" in r.output


def test_parquet_source_in_a_pipeline(cli, conn, tmp_path):
    root = make_pipeline(tmp_path / "p", {"totals": "SELECT customer, sum(amount) AS total FROM orders GROUP BY customer"},
                         sources='[[sources]]\ndataset = "orders"\nfile = "data/orders.parquet"\nkey = "id"\n')
    (root / "data").mkdir()
    t = pa.table({"id": pa.array([1, 2, 3], pa.int32()), "customer": ["ann", "bob", "ann"],
                  "amount": pa.array([decimal.Decimal("10.50"), decimal.Decimal("5"), decimal.Decimal("7")],
                                     pa.decimal128(8, 2))})
    pq.write_table(t, str(root / "data" / "orders.parquet"))
    r = cli("deploy", root)
    assert r.exit_code == 0, r.output
    r = cli("run", root)
    assert r.exit_code == 0, r.output
    assert sorted(conn.execute("SELECT customer, total FROM totals").fetchall()) == [
        ("ann", decimal.Decimal("17.50")), ("bob", decimal.Decimal("5.00"))]
    cols = conn.execute("SELECT columns FROM deltapipe.dataset WHERE name = 'orders'").fetchone()[0]
    assert [(c["name"], c["type"]) for c in cols] == [("id", "integer"), ("customer", "text"),
                                                      ("amount", "numeric(8,2)")]
