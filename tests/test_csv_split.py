"""Behaviour of deltapipe._csv_split (sql/functions/deltapipe._csv_split.sql).

Standalone: needs a PostgreSQL server given by DELTAPIPE_TEST_DSN, skipped otherwise.
The schema and function are created inside one transaction that is rolled back at
the end, so the database of the DSN is left as it was.
"""
import csv
import io
import os
import random
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg")

DSN = os.environ.get("DELTAPIPE_TEST_DSN")
SQL_FILE = Path(__file__).parents[1] / "sql/functions/deltapipe._csv_split.sql"

pytestmark = pytest.mark.skipif(not DSN, reason="DELTAPIPE_TEST_DSN is not set")


@pytest.fixture(scope="module")
def conn():
    with psycopg.connect(DSN) as c:
        with c.transaction(force_rollback=True):
            c.execute("CREATE SCHEMA IF NOT EXISTS deltapipe")
            c.execute(SQL_FILE.read_text())
            yield c


def split(conn, line, *args):
    params = ", ".join(["%s"] * (1 + len(args)))
    with conn.transaction():  # a savepoint: a failing test does not spoil the others
        return conn.execute(f"SELECT deltapipe._csv_split({params})", (line, *args)).fetchone()[0]


def split_many(conn, lines, delim=",", quote='"', null_str=""):
    with conn.transaction():
        rows = conn.execute(
            "SELECT deltapipe._csv_split(l, %s, %s, %s) FROM unnest(%s::text[]) WITH ORDINALITY u(l, o) ORDER BY o",
            (delim, quote, null_str, lines)).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("line, expected", [
    ('1,"x, y","he said ""hi""",,""', ["1", "x, y", 'he said "hi"', None, ""]),
    ('"a",b', ["a", "b"]),
    ('"",b,', ["", "b", None]),
    ('""""', ['"']),
    ('""', [""]),
    ('"a","b","c"', ["a", "b", "c"]),
    ('"a,b","",",c"', ["a,b", "", ",c"]),
    ('"a""",""""', ['a"', '"']),
    (',"x",', [None, "x", None]),
    ('"x",,"y"', ["x", None, "y"]),
    ('1,"multi\nline",3', ["1", "multi\nline", "3"]),
    ('"two\n\nnewlines, ""and"" quotes"', ['two\n\nnewlines, "and" quotes']),
    ("1,2,3", ["1", "2", "3"]),
])
def test_examples(conn, line, expected):
    assert split(conn, line) == expected


@pytest.mark.parametrize("line, expected", [
    # as COPY (FORMAT csv) reads them: a quote opens a quoted part anywhere in a field
    ('col1, "005 45 works"', ["col1", " 005 45 works"]),   # pgloader's test file
    ('1,"x"y,3', ["1", "xy", "3"]),
    ('1,x"y,z"w,3', ["1", "xy,zw", "3"]),
    ('"a" ,b', ["a ", "b"]),
    ('a "b",c', ["a b", "c"]),
    ('a""b,', ["ab", None]),          # an empty quoted part: the field saw a quote, never NULL
    ('"""a",b', ['"a', "b"]),
    ('"a""""b"', ['a""b']),
    ('x"a""b"y"c",', ['xa"byc', None]),
    ('"a\rb",c', ["a\rb", "c"]),
])
def test_quotes_anywhere_as_copy_reads_them(conn, line, expected):
    assert split(conn, line) == expected


@pytest.mark.parametrize("line", [
    '1,"x,3',        # odd number of quotes: a quoted part not closed
    '"a"b"',
    '"',
    '1,a\rb,3',      # a carriage return outside quotes
    '1,"a"\r,3',
    '"a","b"\r',
    'a\r',
])
def test_refused_is_null(conn, line):
    assert split(conn, line) is None


def test_tab_delimiter(conn):
    assert split(conn, '1\t"a\tb"\t\t"x,y"', "\t") == ["1", "a\tb", None, "x,y"]
    assert split(conn, '1,2\t"3"', "\t") == ["1,2", "3"]


def test_other_quote_and_null(conn):
    assert split(conn, "1;'it''s';;'';NULL;'NULL'", ";", "'", "NULL") == ["1", "it's", "", "", None, "NULL"]
    # a quoted field is never NULL, whatever null_str is
    assert split(conn, '"\\N",\\N,"",', ",", '"', "\\N") == ["\\N", None, "", ""]
    # null_str NULL: no field is NULL
    assert split(conn, '"",,x', ",", '"', None) == ["", "", "x"]


def _random_field(rnd):
    alphabet = ['a', 'b', 'Z', '1', ' ', ',', '"', '""', '\n', '\t', ';', "'", '\\', 'é', 'NULL']
    return "".join(rnd.choice(alphabet) for _ in range(rnd.choice([0, 0, 1, 2, 5, 12])))


def _encode(fields, delim, quoting):
    buf = io.StringIO()
    csv.writer(buf, delimiter=delim, quotechar='"', quoting=quoting, lineterminator="").writerow(fields)
    return buf.getvalue()


@pytest.mark.parametrize("delim", [",", "\t", ";"])
def test_round_trip_quote_all(conn, delim):
    rnd = random.Random(f"quote-all{delim}")
    records = [[_random_field(rnd) for _ in range(rnd.randint(1, 10))] for _ in range(2000)]
    lines = [_encode(r, delim, csv.QUOTE_ALL) for r in records]
    assert split_many(conn, lines, delim) == records


@pytest.mark.parametrize("delim", [",", "\t"])
def test_round_trip_quote_minimal(conn, delim):
    rnd = random.Random(f"minimal{delim}")
    records = [[_random_field(rnd) for _ in range(rnd.randint(1, 10))] for _ in range(2000)]
    lines = [_encode(r, delim, csv.QUOTE_MINIMAL) for r in records]
    # csv writes '' unquoted (so it reads back as NULL), except a record of one
    # empty field, which it writes as "" (nothing else could tell it from an empty line)
    expected = [r if r == [""] else [None if f == "" else f for f in r] for r in records]
    assert split_many(conn, lines, delim) == expected
