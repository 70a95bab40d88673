"""Audits declared in a model's header or in models/NAME.audits.sql: parsed and compiled to SQL."""

from __future__ import annotations

import re
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from deltapipe.pipeline.model import Model, _err
from deltapipe.pipeline.parse import tables_read


AUDITS_SUFFIX = ".audits.sql"
_AUDIT = re.compile(r"^\s*--\s*audit\s*(?:\[\s*(warn|block|blocking|error)\s*\])?\s*:\s*(.*?)\s*$", re.I)
_BUILTIN = re.compile(r"^(unique|not_null|accepted_values|relationships)\s*\((.*)\)$", re.I | re.S)
_CUSTOM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,62})\s*:\s*(.*)$", re.S)
_COL = re.compile(r'^(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")$')


def parse_audits(path: Path, rel: str, text: str) -> tuple[list[dict], list[tuple[str, str, int]]]:
    """Audits of a model: `-- audit: SPEC` / `-- audit[warn]: SPEC` lines of its header, and models/NAME.audits.sql
    (the same lines; there a custom audit's SELECT may go on over the following lines).
    SPEC is unique(col, ...), not_null(col, ...), accepted_values(col, value, ...), relationships(col, table.col)
    or NAME: SELECT ... (offending rows of the new result, named `this`)."""
    found: list[tuple[str, int, str | None, str]] = []  # (file, line, severity, spec)
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if not line.lstrip().startswith("--"):
            break
        m = _AUDIT.match(line)
        if m:
            found.append((rel, i, m.group(1), m.group(2)))
    side = path.with_name(path.stem + AUDITS_SUFFIX)
    if side.exists():
        srel = str(Path(rel).with_name(side.name))
        cur = None
        for i, line in enumerate(side.read_text().splitlines(), 1):
            m = _AUDIT.match(line)
            if m:
                if cur:
                    found.append(cur)
                cur = (srel, i, m.group(1), m.group(2))
            elif cur is not None:
                body = re.sub(r"^\s*--.*$", "", line)
                if body.strip():
                    cur = (cur[0], cur[1], cur[2], cur[3] + "\n" + body)
            elif line.strip() and not line.lstrip().startswith("--"):
                raise _err("%s:%d: expected an audit line (-- audit: SPEC)" % (srel, i), "DP503",
                           "start each audit with -- audit: or -- audit[warn]:")
        if cur:
            found.append(cur)
    audits: list[dict] = []
    reads: list[tuple[str, str, int]] = []
    for frel, line, sev, spec in found:
        a, r = _compile_audit(frel, line, spec.strip().rstrip(";").strip())
        a["blocking"] = (sev or "").lower() != "warn"
        a["line"] = "%s:%d" % (frel, line)
        if any(x["name"] == a["name"] for x in audits):
            raise _err("%s:%d: audit %s is declared twice" % (frel, line, a["name"]), "DP503",
                       "give custom audits distinct names")
        audits.append(a)
        reads += [(s_, t, line) for s_, t, _ in r]
    return audits, reads


def _split_args(text: str) -> list[str]:
    out, cur, q = [], "", None
    for ch in text:
        if q:
            cur += ch
            if ch == q:
                q = None
        elif ch in "'\"":
            q = ch
            cur += ch
        elif ch == ",":
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip() or out:
        out.append(cur.strip())
    return out


def _col(frel: str, line: int, spec: str, c: str) -> str:
    if not _COL.match(c):
        raise _err("%s:%d: audit %s: %r is not a column name" % (frel, line, spec, c), "DP503")
    return c if c.startswith('"') else '"%s"' % c.lower()


def _unq(c: str) -> str:
    return c[1:-1].replace('""', '"')


def check_audit_columns(m: Model, columns: list[str] | None) -> None:
    """Built-in audits must name output columns of their model (when these are known)."""
    if not columns:
        return
    for a in m.audits:
        known = {x.lower() for x in columns}  # sqlglot may keep the case of unquoted names
        missing = [c for c in a.get("columns", []) if c.lower() not in known]
        if missing:
            raise _err("%s: audit %s: %s is not a column of model %s" % (a["line"], a["spec"], missing[0], m.name),
                       "DP503", "columns: %s" % ", ".join(columns))


def _compile_audit(frel: str, line: int, spec: str) -> tuple[dict, list[tuple[str, str, int]]]:
    """One audit -> {name, sql, spec} where sql selects the offending rows of `this`; and the tables it reads."""
    b = _BUILTIN.match(spec)
    if b:
        kind, args = b.group(1).lower(), _split_args(b.group(2))
        if not args or not args[0]:
            raise _err("%s:%d: audit %s needs a column" % (frel, line, spec), "DP503")
        if kind in ("unique", "not_null"):
            cols = [_col(frel, line, spec, c) for c in args]
            name = "%s(%s)" % (kind, ", ".join(c.strip('"') for c in cols))
            if kind == "not_null":
                sql = "SELECT * FROM this WHERE %s" % " OR ".join("%s IS NULL" % c for c in cols)
            else:
                cl = ", ".join(cols)
                sql = ("SELECT * FROM this WHERE (%s) IN (SELECT %s FROM this WHERE %s GROUP BY %s HAVING count(*) > 1) "
                       "ORDER BY %s" % (cl, cl, " AND ".join("%s IS NOT NULL" % c for c in cols), cl, cl))
            return {"name": name, "sql": sql, "spec": spec, "columns": [_unq(c) for c in cols]}, []
        if kind == "accepted_values":
            col = _col(frel, line, spec, args[0])
            vals = []
            for v in args[1:]:
                try:
                    lit = sqlglot.parse_one(v, read="postgres")
                except (ParseError, TokenError):
                    lit = None
                if not isinstance(lit, (exp.Literal, exp.Boolean)) and not (
                        isinstance(lit, exp.Neg) and isinstance(lit.this, exp.Literal)):
                    raise _err("%s:%d: audit %s: %s is not a literal value" % (frel, line, spec, v), "DP503",
                               "quote text values: accepted_values(status, 'new', 'paid')")
                vals.append(lit.sql(dialect="postgres"))
            if not vals:
                raise _err("%s:%d: audit %s lists no values" % (frel, line, spec), "DP503",
                           "accepted_values(col, 'a', 'b', ...)")
            name = "accepted_values(%s)" % col.strip('"')
            return {"name": name, "sql": "SELECT * FROM this WHERE %s IS NOT NULL AND %s NOT IN (%s)"
                    % (col, col, ", ".join(vals)), "spec": spec, "columns": [_unq(col)]}, []
        # relationships(col, [schema.]table.col)
        if len(args) != 2:
            raise _err("%s:%d: audit %s: give relationships(col, table.col)" % (frel, line, spec), "DP503")
        col = _col(frel, line, spec, args[0])
        parts = [x.strip() for x in re.findall(r'"(?:[^"]|"")+"|[^.]+', args[1])]
        if len(parts) not in (2, 3):
            raise _err("%s:%d: audit %s: %s is not table.column" % (frel, line, spec, args[1]), "DP503",
                       "give relationships(customer_id, customers.id)")
        qparts = [_col(frel, line, spec, x) for x in parts]
        table = ".".join(qparts[:-1])
        name = "relationships(%s, %s)" % (col.strip('"'), ".".join(x.strip('"') for x in qparts))
        sql = ("SELECT * FROM this _dp_t WHERE _dp_t.%s IS NOT NULL AND NOT EXISTS "
               "(SELECT 1 FROM %s _dp_r WHERE _dp_r.%s = _dp_t.%s)" % (col, table, qparts[-1], col))
        ident = [x.strip('"') if x.startswith('"') else x.lower() for x in parts[:-1]]
        return ({"name": name, "sql": sql, "spec": spec, "columns": [_unq(col)]},
                [(ident[0] if len(ident) == 2 else "", ident[-1], line)])
    c = _CUSTOM.match(spec)
    if not c:
        raise _err("%s:%d: audit %s: not an audit" % (frel, line, spec), "DP503",
                   "use unique(col), not_null(col), accepted_values(col, 'a', ...), relationships(col, table.col) "
                   "or NAME: SELECT ... FROM this WHERE <offending>")
    name, sql = c.group(1).lower(), c.group(2).strip().rstrip(";").strip()
    try:
        stmts = [x for x in sqlglot.parse(sql, read="postgres") if x is not None]
    except (ParseError, TokenError) as e:
        raise _err("%s:%d: audit %s: parse error: %s" % (frel, line, name, str(e).splitlines()[0]), "DP503") from e
    if len(stmts) != 1 or not isinstance(stmts[0], exp.Query):
        raise _err("%s:%d: audit %s: give one SELECT returning the offending rows of this" % (frel, line, name), "DP503")
    reads = [(s_, t, ln) for s_, t, ln in tables_read(stmts[0], sql) if (s_, t) != ("", "this")]
    return {"name": name, "sql": sql, "spec": spec}, reads


