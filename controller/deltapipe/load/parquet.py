"""Parquet inputs, read with pyarrow one record batch at a time (row group by row group).

Each batch is written as CSV lines, already escaped for COPY's text format (one record per line: a
newline inside a string travels as COPY's ``\\n``), and streamed into the staging table like any CSV
file: the database validates, casts, diffs and rejects exactly as for the CSV, and the line number of
a reject is the Parquet row number + 1 (line 1 is the header). The controller holds one batch at a
time, so its memory stays flat whatever the file's size.

The column types of ``deltapipe dataset create --from file.parquet`` come from the Parquet schema
(see ``pg_type``). pyarrow is imported only here, only when a Parquet file is read.
"""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterator

from deltapipe.errors import DeltapipeError

BATCH_ROWS = 16384  # rows per record batch: pyarrow decodes a row group batch by batch, whatever its size


def _pa():
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
        import pyarrow.csv  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as e:
        raise DeltapipeError("reading Parquet needs the pyarrow package", sqlstate="DP016",
                             hint="pip install 'pyarrow>=26,<27'") from e
    return pyarrow


def pg_type(t) -> str | None:
    """The PostgreSQL type of a column of Arrow type ``t``; None when deltapipe does not load it."""
    pa = _pa()
    T = pa.types
    if T.is_dictionary(t):
        return pg_type(t.value_type)
    if T.is_boolean(t):
        return "boolean"
    if T.is_int8(t) or T.is_int16(t) or T.is_uint8(t):
        return "smallint"
    if T.is_int32(t) or T.is_uint16(t):
        return "integer"
    if T.is_int64(t) or T.is_uint32(t):
        return "bigint"
    if T.is_uint64(t):
        return "numeric(20,0)"
    if T.is_float16(t) or T.is_float32(t):
        return "real"
    if T.is_float64(t):
        return "double precision"
    if T.is_decimal(t):
        return "numeric(%d,%d)" % (t.precision, t.scale) if 0 <= t.scale <= t.precision else "numeric"
    if T.is_string(t) or T.is_large_string(t) or T.is_string_view(t) or T.is_null(t):
        return "text"
    if T.is_binary(t) or T.is_large_binary(t) or T.is_fixed_size_binary(t) or T.is_binary_view(t):
        return "bytea"
    if T.is_date(t):
        return "date"
    if T.is_time(t):
        return "time"
    if T.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp"
    if T.is_list(t) or T.is_large_list(t) or T.is_fixed_size_list(t) or T.is_list_view(t) or \
            T.is_large_list_view(t) or T.is_struct(t) or T.is_map(t):
        return "jsonb"
    return None  # durations, intervals, unions, extension types...


def _open(path: Path):
    pa = _pa()
    try:
        # no pre-buffering of whole row groups: column pages are read 1 MB at a time (flat memory)
        return pa.parquet.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    except (pa.ArrowException, OSError) as e:
        raise DeltapipeError("%s: not a readable Parquet file: %s" % (path, str(e).splitlines()[0] if str(e) else e),
                             sqlstate="DP016") from e


def _check(path: Path, schema) -> list[tuple[str, str]]:
    cols, bad = [], []
    for f in schema:
        typ = pg_type(f.type)
        if typ is None:
            bad.append("%s (%s)" % (f.name, f.type))
        cols.append((f.name, typ))
    if bad:
        raise DeltapipeError("%s: column(s) of a Parquet type deltapipe does not load: %s" % (path, ", ".join(bad)),
                             hint="cast them in the file (a duration to int64, an interval to text) or leave them out",
                             sqlstate="DP016")
    return cols


def columns(path: Path) -> list[tuple[str, str]]:
    """(name, PostgreSQL type) of each column of the Parquet file, from its schema."""
    return _check(path, _open(path).schema_arrow)


def _json_default(o):
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, (datetime.date, datetime.time, datetime.datetime)):
        return o.isoformat()
    if isinstance(o, datetime.timedelta):
        return o.total_seconds()
    if isinstance(o, bytes):
        return "\\x" + o.hex()
    raise TypeError(type(o).__name__)


def _fix(pa, arr, pattern: str, fix) -> object:
    """``arr`` with ``fix`` applied to the (few) values matching ``pattern``."""
    pc = pa.compute
    mask = pc.fill_null(pc.match_substring_regex(arr, pattern), False)
    if not pc.any(mask).as_py():
        return arr
    return pc.replace_with_mask(arr, mask, fix(arr.filter(mask)))


def _quote(pa, sub):
    pc = pa.compute
    return pc.binary_join_element_wise("\"", pc.replace_substring(sub, "\"", "\"\""), "\"", "")


def _escape(pa, sub):
    for a, b in (("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        sub = pa.compute.replace_substring(sub, a, b)
    return sub


def _text_column(pa, arr):
    """The batch column as CSV fields escaped for COPY text: a string array without NULLs (a NULL is
    the empty field); a value is quoted only when it must be (it holds the delimiter, a quote or a
    line break, or is the empty string), as in the CSV a person writes: COPY's fast path for the rest."""
    T = pa.types
    t = arr.type
    if T.is_dictionary(t):
        arr, t = arr.dictionary_decode(), t.value_type
    text = True
    if T.is_binary(t) or T.is_large_binary(t) or T.is_fixed_size_binary(t) or T.is_binary_view(t):
        # bytea's hex input, \x...
        arr = pa.array([None if v is None else "\\x" + v.hex() for v in arr.to_pylist()], pa.string())
    elif pg_type(t) == "jsonb":
        arr = pa.array([None if v is None else json.dumps(v, default=_json_default, ensure_ascii=False,
                                                          separators=(",", ":")) for v in arr.to_pylist()], pa.string())
    elif T.is_null(t):
        arr = pa.nulls(len(arr), pa.string())
    elif not (T.is_string(t) or T.is_large_string(t) or T.is_string_view(t)):
        text = False  # numbers, decimals, booleans, dates, times, timestamps: as PostgreSQL reads them
    arr = arr.cast(pa.string())
    if text:
        arr = _fix(pa, arr, '[,"\n\r]|^$', lambda sub: _quote(pa, sub))
        arr = _fix(pa, arr, r"[\\\n\r\t]", lambda sub: _escape(pa, sub))
    return pa.compute.fill_null(arr, "")


def _header(names: list[str]) -> bytes:
    line = ",".join('"%s"' % n.replace('"', '""') for n in names)
    return (line.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "\n").encode()


def copy_blocks(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The file as CSV (a header line, then one line per row), escaped for COPY text format, batch by batch."""
    pa = _pa()
    pf = _open(path)
    schema = pf.schema_arrow
    _check(path, schema)
    yield _header(schema.names)
    total = max(pf.metadata.num_rows, 1)
    size = Path(path).stat().st_size
    done = sent = 0
    pc = pa.compute
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
            if batch.num_rows == 0:
                continue
            cols = [_text_column(pa, batch.column(i)) for i in range(batch.num_columns)]
            lines = pc.binary_join_element_wise(*cols, ",") if len(cols) > 1 else cols[0]
            lines = pc.binary_join_element_wise(lines, "\n", "")
            # the lines are the values buffer of that string array, end to end
            offsets = memoryview(lines.buffers()[1]).cast("i")
            start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
            yield lines.buffers()[2].slice(start, end - start).to_pybytes()
            if on_bytes:
                done += batch.num_rows
                now = size * done // total
                on_bytes(now - sent)
                sent = now
    except pa.ArrowException as e:
        raise DeltapipeError("%s: cannot read the Parquet file: %s" % (path, str(e).splitlines()[0] if str(e) else e),
                             sqlstate="DP016") from e


__all__ = ["columns", "copy_blocks", "pg_type", "BATCH_ROWS"]
