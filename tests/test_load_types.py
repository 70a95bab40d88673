"""Declared types are the table's types: a loaded target's columns are exactly the declared ones
(typmods included), for every kind of type the loader accepts, on a first load and after a swap."""

from __future__ import annotations

import pytest

from deltapipe.load.loader import LoadOptions, load_file

# (declared type, a value in the file) - every kind of type: typmods, arrays, domains aside
TYPES = [
    ("bigint", "1"), ("integer", "2"), ("smallint", "3"), ("numeric", "1.5"), ("numeric(12,2)", "1.25"),
    ("numeric(5,0)", "12"), ("real", "1.5"), ("double precision", "2.5"), ("money", "3.50"),
    ("text", "x"), ("character varying", "y"), ("character varying(20)", "vc"), ("character(3)", "abc"),
    ("\"char\"", "c"), ("name", "nm"), ("bit(4)", "1010"), ("bit varying(8)", "101"),
    ("boolean", "true"), ("date", "2024-01-02"), ("time without time zone", "12:00"),
    ("time(2) without time zone", "12:00:01.123"), ("time(3) with time zone", "12:00+02"),
    ("timestamp without time zone", "2024-01-02 03:04:05"), ("timestamp(0) without time zone", "2024-01-02 03:04:05.6"),
    ("timestamp(3) with time zone", "2024-01-02 03:04:05.123456+00"), ("interval", "1 day"),
    ("interval(2)", "1.234 seconds"), ("interval day to second(1)", "1 day 00:00:01.5"), ("interval year", "2 years"),
    ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), ("jsonb", "{}"), ("json", "[]"), ("bytea", "\\\\x00ff"),
    ("inet", "10.0.0.1"), ("cidr", "10.0.0.0/8"), ("macaddr", "08:00:2b:01:02:03"), ("xml", "<a/>"),
    ("tsvector", "a b"), ("point", "(1,2)"), ("int4range", "[1,3)"),
    ("integer[]", "{1,2}"), ("numeric(6,2)[]", "{1.5}"), ("character varying(4)[]", "{ab}"),
    ("timestamp(1) without time zone[]", "{\"\"2024-01-01 00:00:00.12\"\"}"),
]


def _declared(conn, name):
    return [(c["name"], c["type"]) for c in
            conn.execute("SELECT columns FROM deltapipe.dataset WHERE name = %s", (name,)).fetchone()[0]]


def _actual(conn, table):
    return conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND attname <> '_dp_hash' "
                        "ORDER BY attnum", (table,)).fetchall()


@pytest.mark.parametrize("strategy", ["merge", "swap"])
def test_target_columns_are_the_declared_types(dsn, conn, write, strategy):
    cols = ", ".join("c%d %s" % (i, t) for i, (t, _) in enumerate(TYPES))
    conn.execute("SELECT deltapipe.create_dataset('t', ARRAY['id'], %s)", ("id bigint, " + cols,))
    declared = _declared(conn, "t")
    # the declared types as PostgreSQL spells them (format_type), typmods and all
    assert [t for _, t in declared[1:]] == [t for t, _ in TYPES]
    head = "id," + ",".join("c%d" % i for i in range(len(TYPES))) + "\n"
    row = ",".join('"%s"' % v.replace("\\\\", "\\") for _, v in TYPES)
    f = write("a.csv", head + "1," + row + "\n2," + row + "\n")
    r = load_file(dsn, "t", f, LoadOptions(), progress=False)
    assert (r["inserted"], r["rejected"]) == (2, 0), conn.execute("SELECT * FROM deltapipe.reject").fetchall()
    assert _actual(conn, "public.t") == declared
    # a later load that rebuilds the table (swap) or merges into it keeps them
    f2 = write("b.csv", head + "1," + row + "\n3," + row + "\n4," + row + "\n")
    r = load_file(dsn, "t", f2, LoadOptions(strategy=strategy, force=True), progress=False)
    assert r["rejected"] == 0 and r["strategy"] == strategy
    assert _actual(conn, "public.t") == declared
    # and the typmods hold: numeric(12,2) rounded, timestamp(0) rounded
    got = conn.execute("SELECT c4::text, c23::text FROM t WHERE id = 1").fetchone()
    assert got == ("1.25", "2024-01-02 03:04:06")
