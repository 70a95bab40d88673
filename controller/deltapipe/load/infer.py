"""Column names from a file's header and types inferred from a sample of its rows."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from deltapipe.errors import DeltapipeError
from deltapipe.load.formats import text_stream

SAMPLE_ROWS = 1000
_INT = re.compile(r"^[+-]?\d{1,18}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")
_TSTZ = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)$")
_BOOL = {"true", "false", "t", "f", "yes", "no"}
# most specific first; a column takes the first type every sampled value fits
_ORDER = ["boolean", "bigint", "numeric", "date", "timestamp", "timestamp with time zone", "text"]


def _fits(value: str, typ: str) -> bool:
    v = value.strip()
    if typ == "bigint":
        return bool(_INT.match(v))
    if typ == "numeric":
        try:
            Decimal(v)
            return v.lower() not in ("nan", "inf", "-inf", "infinity", "-infinity", "snan")
        except InvalidOperation:
            return False
    if typ == "boolean":
        return v.lower() in _BOOL
    if typ == "date":
        return bool(_DATE.match(v))
    if typ == "timestamp":
        return bool(_TS.match(v))
    if typ == "timestamp with time zone":
        return bool(_TSTZ.match(v)) or bool(_TS.match(v))
    return True


def infer_type(values: list[str]) -> str:
    seen = [v for v in values if v is not None and v != ""]
    if not seen:
        return "text"
    for typ in _ORDER:
        if all(_fits(v, typ) for v in seen):
            return typ
    return "text"


def sample(path: Path, fmt: str, delimiter: str | None = None, quote: str | None = None,
           encoding: str = "utf8", header: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header names and up to SAMPLE_ROWS rows of the file, read without loading it whole."""
    try:
        enc = "utf-8-sig" if encoding.lower().replace("-", "").replace("_", "") == "utf8" else encoding
        with text_stream(path) as raw:  # decompressed if need be
            f = io.TextIOWrapper(raw, encoding=enc, errors="strict", newline="")
            if fmt == "ndjson":
                names: list[str] = []
                rows: list[dict] = []
                for line in f:
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError as e:
                        raise DeltapipeError("cannot infer columns: line %d is not JSON (%s)" % (len(rows) + 1, e))
                    if isinstance(obj, dict):
                        for k in obj:
                            if k not in names:
                                names.append(k)
                        rows.append(obj)
                    if len(rows) >= SAMPLE_ROWS:
                        break
                return names, [[None if r.get(n) is None else (json.dumps(r[n]) if isinstance(r[n], (dict, list))
                                else str(r[n]).lower() if isinstance(r[n], bool) else str(r[n]))
                                for n in names] for r in rows]
            d = delimiter or ("\t" if fmt == "tsv" else ",")
            if fmt == "tsv" and quote is None:
                reader = csv.reader(f, delimiter=d, quoting=csv.QUOTE_NONE)
            else:
                reader = csv.reader(f, delimiter=d, quotechar=quote or '"')
            head = next(reader, None)
            if head is None:
                raise DeltapipeError("%s is empty" % path)
            names = [h.strip() for h in head] if header else ["c%d" % (i + 1) for i in range(len(head))]
            rows = [] if header else [head]
            for row in reader:
                rows.append(row)
                if len(rows) >= SAMPLE_ROWS:
                    break
            return names, rows
    except UnicodeDecodeError as e:
        raise DeltapipeError("%s is not valid %s: %s" % (path, encoding, e.reason), hint="give --encoding")
    except csv.Error as e:
        raise DeltapipeError("cannot read %s as %s: %s" % (path, fmt, e))


def infer_columns(path: Path, fmt: str, **kw) -> list[tuple[str, str]]:
    if fmt == "parquet":  # typed by the file's schema
        from deltapipe.load.parquet import columns
        return columns(path)
    names, rows = sample(path, fmt, **kw)
    if not names:
        raise DeltapipeError("no columns found in %s" % path)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DeltapipeError("the header repeats column(s) %s" % ", ".join(dup))
    out = []
    for i, name in enumerate(names):
        values = [r[i] if i < len(r) else None for r in rows]
        out.append((name, infer_type(values)))
    return out


def columns_spec(cols: list[tuple[str, str]]) -> str:
    def q(name: str) -> str:
        return name if re.match(r"^[a-z_][a-z0-9_]*$", name) else '"%s"' % name.replace('"', '""')
    return ", ".join("%s %s" % (q(n), t) for n, t in cols)


__all__ = ["infer_columns", "columns_spec", "infer_type", "sample", "io"]
