"""A pipeline directory: pipeline.toml (name, sources) and models/*.sql (one SELECT per file).

Parsing, dependency inference with sqlglot, fingerprints, deploy into the
catalog, plan (what would run and why) and DAG rendering.
"""

from __future__ import annotations

import glob as globmod
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import sqlglot
from psycopg.types.json import Jsonb
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.scope import traverse_scope

from .errors import DeltapipeError, from_db

MODES = ("snapshot", "upsert", "append", "changes")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
_DATASET = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,47}$")


@dataclass
class Source:
    dataset: str
    files: str            # a file or a glob, relative to the pipeline directory
    key: list[str]
    mode: str = "snapshot"
    columns: str | None = None
    schema: str = "public"
    table: str = ""
    options: dict = field(default_factory=dict)

    def paths(self, root: Path) -> list[Path]:
        pattern = str(root / self.files)
        if any(ch in self.files for ch in "*?["):
            return [Path(p) for p in sorted(globmod.glob(pattern))]
        return [Path(pattern)]


@dataclass
class Model:
    name: str
    path: Path
    rel: str              # path shown in messages, relative to the pipeline directory
    text: str
    sql: str              # the SELECT as written, without comments' header or trailing semicolon
    key: list[str]
    depends_on: list[str]
    fingerprint: str = ""
    reads: list[tuple[str, str, int]] = field(default_factory=list)  # (schema or '', table, line)
    upstreams: dict[str, str] = field(default_factory=dict)           # name -> model|source|external
    audits: list[dict] = field(default_factory=list)                  # compiled audits (see parse_audits)
    audit_reads: list[tuple[str, str, int]] = field(default_factory=list)  # tables the audits read


@dataclass
class Pipeline:
    name: str
    root: Path
    schema: str
    sources: dict[str, Source]
    models: dict[str, Model]

    def edges(self) -> list[tuple[str, str, str]]:
        return [(m.name, up, kind) for m in self.models.values() for up, kind in sorted(m.upstreams.items())]

    def config(self) -> dict:
        return {"sources": [{"dataset": s.dataset, "file": s.files, "key": s.key, "mode": s.mode,
                             "columns": s.columns, "schema": s.schema, "table": s.table, "options": s.options}
                            for s in self.sources.values()]}


def _err(msg: str, code: str, hint: str | None = None) -> DeltapipeError:
    return DeltapipeError(msg, hint=hint, sqlstate=code)


# ------------------------------------------------------------------ reading the directory
def read_pipeline(directory: str | Path) -> Pipeline:
    """Read and check a pipeline directory (no database needed)."""
    root = Path(directory)
    toml_path = root / "pipeline.toml"
    if not root.is_dir():
        raise _err("%s is not a directory" % root, "DP214", "give a pipeline directory (create one with `deltapipe new DIR`)")
    if not toml_path.exists():
        raise _err("%s: no pipeline.toml" % root, "DP214", "create one with `deltapipe new DIR`")
    try:
        cfg = tomllib.loads(toml_path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise _err("%s: %s" % (toml_path, e), "DP214") from e
    name = cfg.get("name") or root.resolve().name
    if not isinstance(name, str) or not _DATASET.match(name):
        raise _err("%s: invalid pipeline name %r" % (toml_path, name), "DP214",
                   "use letters, digits, _ and -, starting with a letter or _")
    schema = cfg.get("schema", "public")
    sources: dict[str, Source] = {}
    for i, s in enumerate(cfg.get("sources", []) or []):
        where = "%s: sources[%d]" % (toml_path, i)
        if not isinstance(s, dict) or "dataset" not in s:
            raise _err("%s: needs dataset = NAME" % where, "DP214")
        ds = s["dataset"]
        files = s.get("file") or s.get("glob")
        if not files:
            raise _err("%s (%s): needs file = PATH or glob = PATTERN" % (where, ds), "DP214")
        key = s.get("key")
        if not key:
            raise _err("%s (%s): needs key = COLUMN or [COLUMNS]" % (where, ds), "DP214")
        key = [key] if isinstance(key, str) else list(key)
        mode = s.get("mode", "snapshot")
        if mode not in MODES:
            raise _err("%s (%s): unknown mode %s" % (where, ds, mode), "DP214", "use " + ", ".join(MODES))
        table = s.get("table") or ds
        sch = "public"
        if "." in table:
            sch, table = table.split(".", 1)
        if ds in sources:
            raise _err("%s: dataset %s is declared twice" % (toml_path, ds), "DP214")
        sources[ds] = Source(ds, files, key, mode, s.get("columns"), sch, table,
                             {k: v for k, v in s.items() if k in ("format", "delimiter", "quote", "null", "encoding",
                                                                  "op_column", "order_column")})
    mdir = root / "models"
    models: dict[str, Model] = {}
    targets: dict[str, str] = {}
    for path in sorted(mdir.rglob("*.sql")) if mdir.is_dir() else []:
        if path.name.lower().endswith(AUDITS_SUFFIX):
            continue  # the audits of the model next to it
        rel = str(path.relative_to(root))
        mname = path.stem.lower()
        if not _IDENT.match(mname):
            raise _err("%s: invalid model name %s (the file name is the table name)" % (rel, path.stem), "DP214",
                       "use letters, digits and _, starting with a letter or _")
        if mname in targets:
            raise _err("%s and %s both write table %s.%s" % (targets[mname], rel, schema, mname), "DP213",
                       "rename one of the files")
        clash = [s.dataset for s in sources.values() if (s.schema, s.table) == (schema, mname) or s.dataset == mname]
        if clash:
            raise _err("%s writes table %s.%s, which is source dataset %s" % (rel, schema, mname, clash[0]), "DP213",
                       "rename the model file")
        targets[mname] = rel
        models[mname] = parse_model(path, rel)
    if not models:
        raise _err("%s: no models (models/*.sql)" % root, "DP214", "add SELECT statements as models/NAME.sql")
    p = Pipeline(name, root, schema, sources, models)
    return p


_HEADER = re.compile(r"^\s*--\s*(key|depends_on|depends-on)\s*:\s*(.*?)\s*$", re.I)


def parse_model(path: Path, rel: str) -> Model:
    text = path.read_text()
    key: list[str] = []
    deps: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.lstrip().startswith("--"):
            break
        m = _HEADER.match(line)
        if m:
            vals = [v.strip() for v in m.group(2).split(",") if v.strip()]
            if m.group(1).lower() == "key":
                key = vals
            else:
                deps += [v.lower() for v in vals]
    try:
        stmts = [s for s in sqlglot.parse(text, read="postgres") if s is not None]
    except (ParseError, TokenError) as e:
        raise _parse_error(rel, e) from e
    if len(stmts) != 1:
        raise _err("%s: %s" % (rel, "empty model (no SELECT)" if not stmts else "one SELECT per model file, found %d statements" % len(stmts)),
                   "DP212")
    tree = stmts[0]
    if not isinstance(tree, exp.Query):
        raise _err("%s:%d: a model is one SELECT, not %s" % (rel, _first_code_line(text), tree.key.upper()), "DP212")
    sql = text.strip()
    while sql.endswith(";"):
        sql = sql[:-1].rstrip()
    model = Model(path.stem.lower(), path, rel, text, sql, key, deps)
    normalized = tree.sql(dialect="postgres", comments=False, normalize=True)
    model.audits, model.audit_reads = parse_audits(path, rel, text)
    audits = "".join("\naudit=%s|%s|%s" % (a["name"], a["blocking"], a["sql"]) for a in model.audits)
    model.fingerprint = hashlib.sha256(("%s\nkey=%s%s" % (normalized, ",".join(key), audits)).encode()).hexdigest()[:32]
    model.reads = tables_read(tree, text)
    return model


# ------------------------------------------------------------------ audits
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


def _first_code_line(text: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("--"):
            return i
    return 1


def _parse_error(rel: str, e: Exception) -> DeltapipeError:
    errs = getattr(e, "errors", None) or []
    if errs:
        first = errs[0]
        msg = re.sub(r"<Token token_type: TokenType\.\w+, text: ([^,]*), line.*?>", r"'\1'", first.get("description", str(e)))
        return _err("%s:%s: parse error: %s" % (rel, first.get("line") or "?", msg), "DP212")
    line = re.search(r"[Ll]ine (\d+)", str(e))
    return _err("%s:%s: parse error: %s" % (rel, line.group(1) if line else "?", str(e).splitlines()[0]), "DP212")


def _ident(node) -> str:
    """An identifier as PostgreSQL sees it: unquoted names fold to lower case."""
    if node is None:
        return ""
    if isinstance(node, exp.Identifier):
        return node.name if node.quoted else node.name.lower()
    return node.name.lower() if hasattr(node, "name") else str(node).lower()


def tables_read(tree: exp.Expression, text: str) -> list[tuple[str, str, int]]:
    """(schema or '', table, line) of every table the query reads; CTE names are not tables."""
    found: dict[tuple[str, str], int] = {}
    for scope in traverse_scope(tree):
        for _alias, (_node, source) in scope.selected_sources.items():
            if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier) and source.name:
                key = (_ident(source.args.get("db")), _ident(source.this))
                if key not in found:
                    found[key] = _line_of(text, source)
        # tables in scopes that are not selected (e.g. only referenced in a lateral join) are covered above
    return [(s, t, ln) for (s, t), ln in found.items()]


def _line_of(text: str, table: exp.Table) -> int:
    ident = table.this
    line = (ident.meta or {}).get("line") if hasattr(ident, "meta") else None
    if line:
        return int(line)
    name = re.escape(table.name)
    pat = r'"%s"' % name if ident.quoted else r"(?<![\w\"])%s(?![\w\"])" % name
    body_start = 0
    for m in re.finditer(pat, text, re.I):
        if m.start() >= body_start:
            return text.count("\n", 0, m.start()) + 1
    return 1


# ------------------------------------------------------------------ resolving dependencies
def resolve(p: Pipeline, conn: psycopg.Connection | None) -> list[str]:
    """Classify every table read by every model; returns the external tables. Raises on unknown tables and cycles."""
    externals: set[str] = set()
    by_table = {(s.schema, s.table): s.dataset for s in p.sources.values()}
    for m in p.models.values():
        m.upstreams = {}
        for schema, table, line in m.reads + m.audit_reads:
            kind, name = None, None
            if schema in ("", p.schema) and table in p.models:
                kind, name = "model", table
            elif (schema or "public", table) in by_table:
                kind, name = "source", by_table[(schema or "public", table)]
            elif not schema and (p.schema, table) in by_table:
                kind, name = "source", by_table[(p.schema, table)]
            else:
                qual = "%s.%s" % (_q(schema), _q(table)) if schema else _q(table)
                if conn is None:
                    kind, name = "external", qual
                else:
                    found = _regclass(conn, schema, table, p.schema)
                    if found is None:
                        shown = "%s.%s" % (schema, table) if schema else table
                        raise _err("%s:%d: unknown table %s (not a source, a model, or an existing table)"
                                   % (m.rel, line, shown), "DP211",
                                   "add it as a source in pipeline.toml, add models/%s.sql, or create the table" % table)
                    kind, name = "external", found
            if name == m.name and kind == "model":
                raise _err("cycle: %s -> %s" % (m.name, m.name), "DP210", "a model cannot read its own table")
            m.upstreams[name] = kind
            if kind == "external":
                externals.add(name)
        for dep in m.depends_on:
            if dep in p.models:
                m.upstreams[dep] = "model"
            elif dep in p.sources:
                m.upstreams[dep] = "source"
            else:
                line = next((i for i, ln in enumerate(m.text.splitlines(), 1) if "depends" in ln.lower()), 1)
                raise _err("%s:%d: depends_on names unknown model or source %s" % (m.rel, line, dep), "DP211",
                           "list models (file names) or source datasets of this pipeline")
    cyc = find_cycle(p)
    if cyc:
        raise _err("cycle: %s (each model reads the next)" % " -> ".join(cyc + [cyc[0]]), "DP210", "break the cycle: a model cannot read itself, directly or indirectly")
    return sorted(externals)


def _q(name: str) -> str:
    return name if re.match(r"^[a-z_][a-z0-9_]*$", name) else '"%s"' % name.replace('"', '""')


def _regclass(conn, schema: str, table: str, default_schema: str) -> str | None:
    cands = [(schema, table)] if schema else [(default_schema, table), ("public", table)]
    for s, t in cands:
        row = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname = %s AND c.relname = %s", (s, t)).fetchone()
        if row:
            return "%s.%s" % (_q(row[0]), _q(row[1]))
    return None


def find_cycle(p: Pipeline) -> list[str] | None:
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = 1
        stack.append(n)
        for up, kind in sorted(p.models[n].upstreams.items()):
            if kind != "model":
                continue
            if color.get(up) == 1:
                return stack[stack.index(up):]
            if up not in color:
                c = visit(up)
                if c:
                    return c
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(p.models):
        if n not in color:
            c = visit(n)
            if c:
                # each model reads the next one; start at the first name
                i = c.index(min(c))
                return c[i:] + c[:i]
    return None


def topo_order(p: Pipeline) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()

    def visit(n: str):
        if n in seen:
            return
        seen.add(n)
        for up, kind in sorted(p.models[n].upstreams.items()):
            if kind == "model":
                visit(up)
        out.append(n)
    for n in sorted(p.models):
        visit(n)
    return out


def load(directory: str | Path, conn: psycopg.Connection | None) -> Pipeline:
    p = read_pipeline(directory)
    p.externals = resolve(p, conn)  # type: ignore[attr-defined]
    return p


# ------------------------------------------------------------------ deploy
def deploy(conn: psycopg.Connection, p: Pipeline) -> dict:
    """Write the pipeline, its models and edges into the catalog; create missing source datasets."""
    from .infer import columns_spec, infer_columns
    from .loader import guess_format

    created, changed, added, removed = [], [], [], []
    try:
        with conn.transaction():
            for s in p.sources.values():
                if conn.execute("SELECT 1 FROM deltapipe.dataset WHERE name = %s", (s.dataset,)).fetchone():
                    continue
                cols = s.columns
                if not cols:
                    paths = [x for x in s.paths(p.root) if x.exists()]
                    if not paths:
                        raise _err("source %s: no file matches %s" % (s.dataset, s.files), "DP214",
                                   "give columns = \"...\" in pipeline.toml or add the file")
                    fmt = guess_format(paths[0], s.options.get("format"))
                    cols = columns_spec(infer_columns(paths[0], fmt, delimiter=s.options.get("delimiter"),
                                                      encoding=s.options.get("encoding", "utf8")))
                conn.execute("SELECT deltapipe.create_dataset(%s, %s, %s, %s, %s)",
                             (s.dataset, s.key, cols, "%s.%s" % (_q(s.schema), _q(s.table)), s.mode))
                created.append(s.dataset)
            conn.execute("""INSERT INTO deltapipe.pipeline (name, root, schema_name, config) VALUES (%s, %s, %s, %s)
                            ON CONFLICT (name) DO UPDATE SET root = excluded.root, schema_name = excluded.schema_name,
                                   config = excluded.config, deployed_at = now()""",
                         (p.name, str(p.root.resolve()), p.schema, Jsonb(p.config())))
            old = dict(conn.execute("SELECT name, fingerprint FROM deltapipe.model WHERE pipeline = %s",
                                    (p.name,)).fetchall())
            for n in set(old) - set(p.models):
                conn.execute("DELETE FROM deltapipe.model WHERE pipeline = %s AND name = %s", (p.name, n))
                removed.append(n)
            conn.execute("DELETE FROM deltapipe.model_edge WHERE pipeline = %s", (p.name,))
            for m in p.models.values():
                other = conn.execute("SELECT pipeline FROM deltapipe.model WHERE target_schema = %s AND target_table = %s "
                                     "AND pipeline <> %s", (p.schema, m.name, p.name)).fetchone()
                if other:
                    raise _err("%s writes table %s.%s, already written by pipeline %s" % (m.rel, p.schema, m.name, other[0]),
                               "DP213", "rename the model or set schema = \"...\" in pipeline.toml")
                ds = conn.execute("SELECT name FROM deltapipe.dataset WHERE target_schema = %s AND target_table = %s",
                                  (p.schema, m.name)).fetchone()
                if ds:
                    raise _err("%s writes table %s.%s, the table of dataset %s" % (m.rel, p.schema, m.name, ds[0]),
                               "DP213", "rename the model")
                conn.execute("""INSERT INTO deltapipe.model (pipeline, name, target_schema, target_table, sql, key_cols,
                                       fingerprint, source_file, audits) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                                ON CONFLICT (pipeline, name) DO UPDATE SET sql = excluded.sql, key_cols = excluded.key_cols,
                                       fingerprint = excluded.fingerprint, source_file = excluded.source_file,
                                       target_schema = excluded.target_schema, target_table = excluded.target_table,
                                       audits = excluded.audits, deployed_at = now()""",
                             (p.name, m.name, p.schema, m.name, m.sql, m.key or None, m.fingerprint, m.rel,
                              Jsonb(m.audits) if m.audits else None))
                if m.name not in old:
                    added.append(m.name)
                elif old[m.name] != m.fingerprint:
                    changed.append(m.name)
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO deltapipe.model_edge (pipeline, node, upstream, upstream_kind) "
                                "VALUES (%s, %s, %s, %s)", [(p.name, a, b, k) for a, b, k in p.edges()])
            for name, c in compile_pipeline(conn, p).items():
                check_audit_columns(p.models[name], c.columns)
                conn.execute("""UPDATE deltapipe.model SET incremental = %s, why_full = %s, shape = %s, delta_sql = %s,
                                       delta_inputs = %s, state_sql = %s, hidden_cols = %s, agg_spec = %s,
                                       watermark = CASE WHEN fingerprint_changed THEN NULL ELSE watermark END
                                  FROM (SELECT %s AS fingerprint_changed) x
                                 WHERE pipeline = %s AND name = %s""",
                             (c.incremental, c.why_full, c.shape, c.delta_sql, c.delta_inputs or None, c.state_sql,
                              c.hidden_cols or None, Jsonb(c.agg_spec) if c.agg_spec else None,
                              name in changed, p.name, name))
    except psycopg.Error as e:
        raise from_db(e) from e
    return {"pipeline": p.name, "models": len(p.models), "sources": len(p.sources), "datasets_created": created,
            "added": sorted(added), "changed": sorted(changed), "removed": sorted(removed),
            "externals": getattr(p, "externals", [])}


# ------------------------------------------------------------------ incremental compilation
def compile_pipeline(conn: psycopg.Connection, p: Pipeline) -> dict:
    """Classify every model and compile its delta statements (deltapipe.incremental), in dependency order."""
    from .incremental import compile_model
    columns: dict[str, list[str] | None] = {}
    for s in p.sources.values():
        row = conn.execute("SELECT columns FROM deltapipe.dataset WHERE name = %s", (s.dataset,)).fetchone()
        if row:
            columns[s.dataset] = [c["name"] for c in row[0]]
        elif s.columns:  # not deployed yet: the columns declared in pipeline.toml
            parts = re.split(r",(?![^()]*\))", s.columns)
            columns[s.dataset] = [x.strip().split()[0].strip('"') if x.strip().startswith('"') else x.strip().split()[0].lower()
                                  for x in parts if x.strip()]
        else:
            columns[s.dataset] = None
    by_table = {(s.schema, s.table): s.dataset for s in p.sources.values()}
    out = {}
    for name in topo_order(p):
        m = p.models[name]
        tables = {}
        for schema, table, _line in m.reads:
            if schema in ("", p.schema) and table in p.models:
                tables[(schema, table)] = (table, "model", "%s.%s" % (_q(p.schema), _q(table)))
            elif (schema or "public", table) in by_table or (not schema and (p.schema, table) in by_table):
                ds = by_table.get((schema or "public", table)) or by_table[(p.schema, table)]
                src = p.sources[ds]
                tables[(schema, table)] = (ds, "source", "%s.%s" % (_q(src.schema), _q(src.table)))
            else:
                tables[(schema, table)] = (table, "external", table)
        c = compile_model(m.sql, tables, columns)
        if c.incremental and any(k == "external" for k in m.upstreams.values()):
            c.incremental, c.why_full = False, "depends on an external table (no change log)"
        if c.incremental and c.shape in ("aggregate", "distinct") and m.key and c.agg_spec:
            # a group that moves (e.g. its country changes) would be a delete and an insert under
            # one key: only keys that are exactly the grouping columns are maintained incrementally
            gcols = [g["col"] for g in c.agg_spec.get("groups", [])]
            if gcols and set(m.key) != set(gcols):
                c.incremental, c.why_full = False, "key (%s) is not the GROUP BY columns (%s)" % (
                    ", ".join(m.key), ", ".join(gcols))
        cols = c.columns
        if cols is None:
            row = conn.execute("""SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                                   WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
                                     AND a.attname NOT LIKE '\\_dp\\_%%'""",
                               ("%s.%s" % (_q(p.schema), _q(name)),)).fetchone()
            cols = row[0] if row else None
        columns[name] = cols
        out[name] = c
    return out


# ------------------------------------------------------------------ plan
def source_state(conn: psycopg.Connection, p: Pipeline, s: Source) -> tuple[str, str]:
    """('load'|'skip', reason) for a source: would its files be loaded?"""
    from .loader import file_sha256
    row = conn.execute("SELECT last_file_sha256 FROM deltapipe.dataset WHERE name = %s", (s.dataset,)).fetchone()
    paths = s.paths(p.root)
    if not paths or not all(x.exists() for x in paths):
        return "fail", "no file matches %s" % s.files
    if row is None:
        return "load", "new dataset"
    if row[0] is None:
        return "load", "never loaded"
    if len(paths) == 1 and file_sha256(paths[0]) == row[0]:
        return "skip", "file unchanged (same SHA-256)"
    if len(paths) > 1 and file_sha256(paths[-1]) == row[0]:
        return "skip", "files unchanged (the last one was loaded)"
    return "load", "file changed"


def plan(conn: psycopg.Connection, p: Pipeline, full_refresh: bool = False) -> list[dict]:
    """Which nodes would run and why, without running anything."""
    out: list[dict] = []
    will_change: set[str] = set()
    reshaped: set[str] = set()   # models whose output columns change (or that are rebuilt because of one)
    for s in p.sources.values():
        action, why = source_state(conn, p, s)
        out.append({"node": s.dataset, "kind": "source", "action": action, "reason": why})
        if action == "load":
            will_change.add(s.dataset)
    for name in topo_order(p):
        m = p.models[name]
        table_exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", ("%s.%s" % (_q(p.schema), _q(name)),)).fetchone()[0]
        last = conn.execute("""SELECT n.fingerprint, n.inputs, n.run_id FROM deltapipe.node_run n
                                 JOIN deltapipe.run r ON r.id = n.run_id
                                WHERE r.pipeline = %s AND n.node = %s AND n.node_kind = 'model' AND n.status = 'done'
                                  AND r.status <> 'rolled_back'
                                ORDER BY n.id DESC LIMIT 1""", (p.name, name)).fetchone()
        changed_ups = sorted(u for u in m.upstreams if u in will_change)
        if full_refresh:
            action, why = "run", "full refresh"
        elif last is None or not table_exists:
            action, why = "run", "new" if last is None else "table missing"
        elif last[0] != m.fingerprint:
            action, why = "run", "SQL changed"
        elif changed_ups:
            action, why = "run", "input changed: %s" % ", ".join(changed_ups)
        else:
            deployed = conn.execute("SELECT fingerprint FROM deltapipe.model WHERE pipeline = %s AND name = %s",
                                    (p.name, name)).fetchone()
            inputs = None
            if deployed:
                inputs = conn.execute("SELECT deltapipe._node_inputs(%s, %s)", (p.name, name)).fetchone()[0]
            if inputs is not None and inputs == last[1] and set(inputs) == set(m.upstreams):
                action, why = "skip", "unchanged since run %s" % last[2]
            else:
                diff = sorted(k for k in set(m.upstreams) | set(last[1] or {})
                              if (inputs or {}).get(k) != (last[1] or {}).get(k)) if inputs is not None else []
                action, why = "run", "input changed: %s" % (", ".join(diff) or "dependencies changed")
        shape = shape_change(conn, p, m) if table_exists else None
        affected_by = sorted(u for u in m.upstreams if u in reshaped)
        if shape and shape.get("changes"):
            reshaped.add(name)
            if action == "skip":
                action, why = "run", "output columns change"
        if affected_by:
            reshaped.add(name)  # rebuilt in full: its own downstream is affected too
            if action == "skip":
                action, why = "run", "upstream changes shape: %s" % ", ".join(affected_by)
        if action == "run":
            will_change.add(name)
        inc = conn.execute("SELECT incremental, why_full, shape, fingerprint FROM deltapipe.model "
                           "WHERE pipeline = %s AND name = %s", (p.name, name)).fetchone()
        if inc is None or inc[3] != m.fingerprint:
            c = compile_pipeline(conn, p)[name]
            inc = (c.incremental, c.why_full, c.shape)
        refresh = ("incremental (%s)" % inc[2]) if inc[0] else "full: %s" % inc[1]
        row = {"node": name, "kind": "model", "action": action, "reason": why, "refresh": refresh,
               "incremental": bool(inc[0]), "why_full": inc[1]}
        if shape:
            row["shape"] = shape
        if affected_by:
            row["affected_by"] = affected_by
        if m.audits:
            row["audits"] = ["%s%s" % (a["name"], "" if a["blocking"] else " [warn]") for a in m.audits]
        out.append(row)
    return out


def _visible_columns(conn, regclass: str) -> list[tuple[str, str]]:
    return [tuple(r) for r in conn.execute(
        """SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
            WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
              AND a.attname NOT LIKE '\\_dp\\_%%' ORDER BY a.attnum""", (regclass,)).fetchall()]


def shape_change(conn: psycopg.Connection, p: Pipeline, m: Model) -> dict | None:
    """Compare a model's output columns (its SELECT against the tables as they are now) with its deployed table:
    {"changes": ["+col type", "-col", "col: old -> new"], "columns": [...]} or {"error": why}."""
    target = "%s.%s" % (_q(p.schema), _q(m.name))
    try:
        old = _visible_columns(conn, target)
        with conn.transaction(force_rollback=True):
            conn.execute("SELECT set_config('search_path', %s, true)", ("%s, public" % _q(p.schema),))
            conn.execute("CREATE TEMP TABLE _dp_plan_shape AS SELECT * FROM (\n" + m.sql + "\n) _dp_q LIMIT 0")
            new = _visible_columns(conn, "pg_temp._dp_plan_shape")
    except psycopg.Error as e:
        return {"error": from_db(e).message}
    changes = []
    oldd, newd = dict(old), dict(new)
    for c, t in new:
        if c not in oldd:
            changes.append("+%s %s" % (c, t))
        elif oldd[c] != t:
            changes.append("%s: %s -> %s" % (c, oldd[c], t))
    changes += ["-%s" % c for c, _t in old if c not in newd]
    if not changes and [c for c, _ in old] != [c for c, _ in new]:
        changes.append("column order: %s" % ", ".join(c for c, _ in new))
    return {"changes": changes, "columns": [c for c, _ in new]}


# ------------------------------------------------------------------ dag rendering
def render_dag(p: Pipeline, fmt: str = "text") -> str:
    order = topo_order(p)
    if fmt == "mermaid":
        lines = ["graph LR"]
        ids: dict[str, str] = {}

        def nid(n: str) -> str:
            return ids.setdefault(n, "n%d" % len(ids))
        for s in p.sources:
            lines.append('  %s[("%s")]' % (nid(s), s))
        for m in order:
            lines.append('  %s["%s"]' % (nid(m), m))
        for m in order:
            for up, kind in sorted(p.models[m].upstreams.items()):
                if kind == "external":
                    lines.append('  %s{{"%s"}}' % (nid(up), up.replace('"', "'")))
                lines.append("  %s --> %s" % (nid(up), nid(m)))
        return "\n".join(lines)
    if fmt == "dot":
        lines = ["digraph \"%s\" {" % p.name, "  rankdir=LR;"]
        for s in p.sources:
            lines.append('  "%s" [shape=cylinder];' % s)
        for m in order:
            lines.append('  "%s" [shape=box];' % m)
        for m in order:
            for up, kind in sorted(p.models[m].upstreams.items()):
                if kind == "external":
                    lines.append('  "%s" [shape=note];' % up.replace('"', '\\"'))
                lines.append('  "%s" -> "%s";' % (up.replace('"', '\\"'), m))
        lines.append("}")
        return "\n".join(lines)
    lines = ["pipeline %s (%d sources, %d models)" % (p.name, len(p.sources), len(p.models))]
    for s in p.sources.values():
        lines.append("  source  %-24s <- %s" % (s.dataset, s.files))
    for m in order:
        ups = ", ".join("%s%s" % (u, "" if k == "model" else " (%s)" % k) for u, k in sorted(p.models[m].upstreams.items()))
        lines.append("  model   %-24s <- %s" % (m, ups or "(nothing)"))
    return "\n".join(lines)
