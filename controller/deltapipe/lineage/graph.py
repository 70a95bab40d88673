"""Lineage from SQL files: which tables and columns each statement reads, writes and derives.

`scan(dsn, directory)` parses every .sql file under a directory with sqlglot (postgres
dialect), caches what each file says in deltapipe.parse_cache by SHA-256 of its content
and the parser version, stages the edges with COPY into a temp table and merges them
into deltapipe.lineage_node / lineage_edge with one call of deltapipe.lineage_apply.

Names: tables are schema.table (unqualified names are taken to be in public, or in the
pipeline's schema for pipeline models), columns schema.table.column, files absolute paths.
A file under DIR/models/ next to DIR/pipeline.toml is a pipeline model: its SELECT writes
the table named after the file.

Stars: `*` and `alias.*` are expanded (sqlglot's qualify with a schema) with the columns of the
tables read, known from the database and the catalog (`catalog_tables`), the sources of the
scanned pipelines' pipeline.toml, and the tables the files analysed before write (files go in
dependency order, `analyse_files`). A cached parse result records those columns (`deps`) and
is reused only while they are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path

import psycopg
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, traverse_scope
from sqlglot.schema import MappingSchema

from deltapipe.pipeline import _ident  # one notion of an identifier as PostgreSQL sees it
from deltapipe.db import connect, require_installed
from deltapipe.errors import DeltapipeError, from_db

PARSER = "sqlglot-%s/2" % sqlglot.__version__  # bump the suffix when the extraction below changes


# ------------------------------------------------------------------ extraction (no database)


def _table_name(t: exp.Table) -> str | None:
    if not isinstance(t, exp.Table) or not isinstance(t.this, exp.Identifier) or not t.name:
        return None
    schema = _ident(t.args.get("db"))
    return "%s.%s" % (schema, _ident(t.this)) if schema else _ident(t.this)


def _qualify_default(name: str, default_schema: str) -> str:
    return name if "." in name else "%s.%s" % (default_schema, name)


def _line(node: exp.Expression) -> int | None:
    for n in node.walk():
        meta = getattr(n, "meta", None) or {}
        if meta.get("line"):
            return int(meta["line"])
    return None


def _branches(scope: Scope) -> list:
    return list(getattr(scope, "set_operation_scopes", None) or getattr(scope, "union_scopes", None) or [])


def _is_star(sel: exp.Expression) -> bool:
    return isinstance(sel, exp.Star) or (isinstance(sel, exp.Column) and isinstance(sel.this, exp.Star))


def _out_name(sel: exp.Expression) -> str:
    alias = sel.args.get("alias") if isinstance(sel, exp.Alias) else None
    if isinstance(alias, exp.Identifier):
        return _ident(alias)
    if isinstance(sel, exp.Column) and isinstance(sel.this, exp.Identifier):
        return _ident(sel.this)
    return sel.alias_or_name.lower()


def _schema_ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=not re.fullmatch(r"[a-z_][a-z0-9_$]*", name))


Tables = dict  # "schema.table" -> [column names] (known columns) or None (the table exists, columns unknown)


class _Resolver:
    """Column-level lineage of a query: its output columns, each with the (table, column) pairs it is computed
    from, through CTEs, derived tables, set operations, subqueries and stars. `*` and `alias.*` are expanded by
    sqlglot's qualify with the known columns of the tables read (`tables`); a star over a table whose columns are
    unknown is followed by name only, and makes the output list incomplete."""

    def __init__(self, query: exp.Expression, tables: Tables | None = None):
        self.tables = tables or {}
        mapping: dict[str, dict[str, dict[str, str]]] = {}
        for t in query.find_all(exp.Table):
            name = _table_name(t)
            cols = self.tables.get(name) if name else None
            if cols and "." in name:
                s, n = name.split(".", 1)
                mapping.setdefault(s, {})[n] = {c: "text" for c in cols}
        attempts = ([{"schema": MappingSchema(mapping, dialect="postgres", normalize=False)}] if mapping else []) + [{}]
        q = None
        for kw in attempts:
            try:
                q = qualify(query.copy(), dialect="postgres", validate_qualify_columns=False, identify=False,
                            quote_identifiers=False, **kw)
                break
            except Exception:  # noqa: BLE001 - qualification is best effort; table lineage still holds
                q = None
        self.query = q if q is not None else query.copy()
        try:
            self.root = build_scope(self.query)
        except Exception:  # noqa: BLE001
            self.root = None
        self._memo: dict[int, tuple[list, bool, list]] = {}
        self._busy: set[int] = set()
        self._scope_of: dict[int, Scope] = {}
        if self.root is not None:
            for s in self.root.traverse():
                self._scope_of[id(s.expression)] = s

    def outputs(self) -> tuple[list[tuple[str, list[tuple[str, str]]]], bool]:
        """([(output column, [(table, column), ...]), ...], every output column known)."""
        if self.root is None:
            return [], False
        outs, complete, _open = self._outputs(self.root)
        return outs, complete

    def _outputs(self, scope: Scope) -> tuple[list, bool, list]:
        key = id(scope)
        if key in self._memo:
            return self._memo[key]
        if key in self._busy:  # a recursive CTE reading itself
            return [], False, []
        self._busy.add(key)
        try:
            res = self._compute(scope)
        finally:
            self._busy.discard(key)
        self._memo[key] = res
        return res

    def _compute(self, scope: Scope) -> tuple[list, bool, list]:
        """(outputs, complete, aliases of stars over sources whose columns are unknown)."""
        e = scope.expression
        if isinstance(e, exp.SetOperation):
            branches = _branches(scope)
            if not branches:
                return [], False, []
            first, complete, open_ = self._outputs(branches[0])
            merged = [(n, list(s)) for n, s in first]
            for b in branches[1:]:  # branches match by position
                for i, (_n, srcs) in enumerate(self._outputs(b)[0]):
                    if i < len(merged):
                        merged[i][1].extend(srcs)
            return merged, complete, []
        if not isinstance(e, exp.Select):
            return [], False, []
        out: list = []
        complete = True
        open_: list[str] = []
        for sel in e.selects:
            if _is_star(sel):  # a star qualify could not expand: follow the sources whose columns are known
                aliases = [sel.table] if isinstance(sel, exp.Column) and sel.table else list(scope.selected_sources)
                for alias in aliases:
                    names, known = self._source_names(scope, alias)
                    if not known:
                        complete = False
                        open_.append(alias)
                    out.extend((n, self._column(scope, alias, n)) for n in names)
                continue
            out.append((_out_name(sel), self._expr_sources(scope, sel)))
        return out, complete, open_

    def _source(self, scope: Scope, alias: str):
        s = scope
        while s is not None:  # correlated references name a source of an enclosing scope
            if alias in s.selected_sources:
                return s.selected_sources[alias][1]
            s = s.parent
        return None

    def _source_names(self, scope: Scope, alias: str) -> tuple[list[str], bool]:
        src = self._source(scope, alias)
        if isinstance(src, exp.Table):
            cols = self.tables.get(_table_name(src) or "")
            return (list(cols), True) if cols else ([], False)
        if isinstance(src, Scope):
            outs, known, _open = self._outputs(src)
            return [n for n, _s in outs], known
        return [], False

    def _owner(self, node: exp.Expression, scope: Scope) -> Scope:
        """The scope a column belongs to: the query it is in (a subquery of scope's, or scope itself)."""
        p = node.parent
        while p is not None and p is not scope.expression:
            s = self._scope_of.get(id(p))
            if s is not None:
                return s
            p = p.parent
        return scope

    def _expr_sources(self, scope: Scope, node: exp.Expression) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for col in node.find_all(exp.Column):
            if isinstance(col.this, exp.Star) or not isinstance(col.this, exp.Identifier):
                continue
            found.extend(self._column(self._owner(col, scope), col.table, _ident(col.this)))
        return found

    def _column(self, scope: Scope, table: str, name: str) -> list[tuple[str, str]]:
        if not table:
            aliases = list(scope.selected_sources)
            if len(aliases) != 1:  # unqualified over several sources: the one source that has the column
                aliases = [a for a in aliases if name in self._source_names(scope, a)[0]]
                if len(aliases) != 1:
                    return []
            table = aliases[0]
        src = self._source(scope, table)
        if isinstance(src, exp.Table):
            t = _table_name(src)
            return [(t, name)] if t else []
        if isinstance(src, Scope):
            outs, _known, open_ = self._outputs(src)
            for n, srcs in outs:
                if n == name:
                    return srcs
            found: list[tuple[str, str]] = []
            for alias in open_:  # through a star over a source of unknown columns, by name
                found.extend(self._column(src, alias, name))
            return found
        return []


def _reads(node: exp.Expression, exclude: set[str]) -> list[str]:
    """Real tables read anywhere in node: CTE names of the statement are not tables."""
    ctes = {_ident(c.args.get("alias").this) for c in node.find_all(exp.CTE) if c.args.get("alias")}
    out: list[str] = []
    for t in node.find_all(exp.Table):
        name = _table_name(t)
        if not name or name in exclude:
            continue
        if "." not in name and name in ctes:
            continue
        if name not in out:
            out.append(name)
    return out


def _cte_shadowed_reads(query: exp.Expression) -> list[str]:
    """Tables read by a query via its scopes (a CTE named like a table reads the real table)."""
    out: list[str] = []
    try:
        from sqlglot.optimizer.scope import traverse_scope
        for scope in traverse_scope(query):
            for _alias, (_node, source) in scope.selected_sources.items():
                if isinstance(source, exp.Table):
                    name = _table_name(source)
                    if name and name not in out:
                        out.append(name)
    except Exception:  # noqa: BLE001
        pass
    return out


def _locator(tables: Tables, default_schema: str):
    """Where an unqualified table name points for a file whose default schema is default_schema: the first of
    (default_schema, public) holding a table of that name, else default_schema (as PostgreSQL's search_path)."""
    path = list(dict.fromkeys([default_schema, "public"]))

    def locate(name: str) -> str:
        if "." in name:
            return name
        for s in path:
            if "%s.%s" % (s, name) in tables:
                return "%s.%s" % (s, name)
        return "%s.%s" % (default_schema, name)
    return locate


def _qualify_tables(query: exp.Expression, locate) -> None:
    """Give every real table the query reads (not a CTE) the schema it resolves to, in place."""
    try:
        scopes = traverse_scope(query)
    except Exception:  # noqa: BLE001 - the resolver then works on names as written
        return
    for scope in scopes:
        for _alias, (_node, source) in scope.selected_sources.items():
            if (isinstance(source, exp.Table) and not source.args.get("db") and isinstance(source.this, exp.Identifier)
                    and source.name):
                schema = locate(_ident(source.this)).split(".", 1)[0]
                source.set("db", _schema_ident(schema))


def deps_of(names, tables: Tables, default_schema: str) -> dict:
    """What a parse result depends on besides the file's text: for each table name as written, where it
    resolves and the columns known for it (star expansion reads them)."""
    locate = _locator(tables, default_schema)
    out = {}
    for n in sorted(set(names)):
        r = locate(n)
        cols = tables.get(r)
        out[n] = [r, list(cols) if cols else None]
    return {"default": default_schema, "tables": out}


def _statement(stmt: exp.Expression, tables: Tables | None = None, default_schema: str | None = None) -> dict | None:
    """What one statement does: {"writes": table|None, "reads": [...], "columns": [[dst_col, src_table, src_col]],
    "outputs": [column, ...] | None}. A bare SELECT has writes None (a pipeline model's target is filled in from
    its file name). With default_schema, table names come out qualified (unqualified ones resolved against
    tables, as search_path would) and stars are expanded with the columns in tables."""
    tables = tables or {}
    locate = _locator(tables, default_schema) if default_schema else None
    target: str | None = None
    query: exp.Expression | None = None
    target_cols: list[str] | None = None
    outputs: list[str] | None = None
    extra_reads: list[str] = []
    cols: list[tuple[str, str, str]] = []
    creates = False
    if isinstance(stmt, exp.Create):
        kind = (stmt.args.get("kind") or "").upper()
        if kind not in ("TABLE", "VIEW"):
            return None
        creates = True
        this = stmt.this
        if isinstance(this, exp.Schema):
            target_cols = [_ident(c.this) if isinstance(c, exp.ColumnDef) else _ident(c) for c in this.expressions]
            this = this.this
            outputs = list(target_cols)
        target = _table_name(this)
        query = stmt.expression if isinstance(stmt.expression, exp.Query) else None
    elif isinstance(stmt, exp.Insert):
        this = stmt.this
        if isinstance(this, exp.Schema):
            target_cols = [_ident(c) for c in this.expressions]
            this = this.this
        target = _table_name(this)
        if target_cols is None and target:  # no column list: the table's columns, by position
            known = tables.get(locate(target) if locate else target)
            target_cols = list(known) if known else None
        query = stmt.expression if isinstance(stmt.expression, exp.Query) else None
        if query is not None and stmt.args.get("with") is not None and query.args.get("with") is None:
            query = query.copy()
            query.set("with", stmt.args["with"].copy())
    elif isinstance(stmt, (exp.Update, exp.Delete, exp.Merge)):
        target = _table_name(stmt.this)
        alias = stmt.this.alias_or_name if isinstance(stmt.this, exp.Table) else None
        extra_reads = _reads(stmt, {target} if target else set())
        if isinstance(stmt, exp.Update) and target:
            aliases: dict[str, str] = {}
            for t in stmt.find_all(exp.Table):
                n = _table_name(t)
                if n:
                    aliases[t.alias_or_name] = n
            only_target = len(aliases) <= 1
            for eq in stmt.expressions:
                if not isinstance(eq, exp.EQ) or not isinstance(eq.this, exp.Column):
                    continue
                dst = _ident(eq.this.this)
                for c in eq.expression.find_all(exp.Column):
                    if isinstance(c.this, exp.Star):
                        continue
                    src_t = aliases.get(c.table) if c.table else (target if only_target else None)
                    if c.table and c.table == alias:
                        src_t = target
                    if src_t:
                        cols.append((dst, src_t, _ident(c.this)))
        reads = [r for r in extra_reads]
        if isinstance(stmt, exp.Update) and cols and target not in reads and any(s == target for _d, s, _c in cols):
            reads.append(target)
        return _located({"writes": target, "reads": reads, "columns": [list(c) for c in cols], "outputs": None},
                        locate, False, default_schema)
    elif isinstance(stmt, exp.Query):
        query = stmt
    else:
        return None
    reads: list[str] = []
    if query is not None:
        if locate is not None:
            query = query.copy()
            _qualify_tables(query, locate)
        for name in _cte_shadowed_reads(query) + _reads(query, set()):
            if name not in reads:
                reads.append(name)
        outs, complete = _Resolver(query, tables).outputs()
        names = []
        for i, (name, srcs) in enumerate(outs):
            if target_cols is not None and i >= len(target_cols):
                break  # more values than target columns: PostgreSQL refuses it
            dst = target_cols[i] if target_cols is not None else name
            names.append(dst)
            if not dst or dst.startswith("_col_"):
                continue
            for st, sc in dict.fromkeys(srcs):
                cols.append((dst, st, sc))
        if outputs is None and complete and not isinstance(stmt, exp.Insert):
            outputs = [n for n in names if n]
    result = {"writes": target, "reads": reads, "columns": [list(c) for c in cols], "outputs": outputs}
    result = _located(result, locate, creates, default_schema)
    if result["writes"] and result["writes"] in result["reads"] and creates:
        result["reads"].remove(result["writes"])
    return result


def _located(st: dict, locate, creates: bool, default_schema: str | None) -> dict:
    """Unqualified names of a statement's result resolved (CREATE makes its table in the default schema)."""
    if locate is None:
        return st
    w = st["writes"]
    if w and "." not in w:
        st["writes"] = "%s.%s" % (default_schema, w) if creates else locate(w)
    st["reads"] = list(dict.fromkeys(locate(r) for r in st["reads"]))
    st["columns"] = [[d, locate(t), c] for d, t, c in st["columns"]]
    return st


def _parse_error(e: Exception) -> dict:
    errs = getattr(e, "errors", None) or []
    if errs:
        msg = re.sub(r"<Token token_type: TokenType\.\w+, text: ([^,]*), line.*?>", r"'\1'",
                     errs[0].get("description") or str(e))
        return {"error": {"line": errs[0].get("line"), "message": msg}}
    m = re.search(r"[Ll]ine (\d+)", str(e))
    return {"error": {"line": int(m.group(1)) if m else None, "message": str(e).splitlines()[0]}}


def parse_sql(text: str) -> list | dict:
    """The statements of a SQL file (sqlglot trees), or {"error": {"line": N, "message": ...}}."""
    try:
        return [s for s in sqlglot.parse(text, read="postgres") if s is not None]
    except (ParseError, TokenError) as e:
        return _parse_error(e)
    except Exception as e:  # noqa: BLE001 - a parser crash on one file must not stop the scan
        return {"error": {"line": None, "message": "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")}}


def table_names(stmts: list) -> tuple[list[str], list[str]]:
    """(tables written, tables read or named besides as the target) of parsed statements, as written; cheap."""
    writes: list[str] = []
    names: list[str] = []
    for s in stmts:
        target = s.this.this if isinstance(s, (exp.Create, exp.Insert)) and isinstance(s.this, exp.Schema) else s.this
        if isinstance(s, (exp.Create, exp.Insert, exp.Update, exp.Delete, exp.Merge)) and isinstance(target, exp.Table):
            n = _table_name(target)
            if n and n not in writes:
                writes.append(n)
        for t in s.find_all(exp.Table):
            if t is target:  # the table written is not read (unless it appears again)
                continue
            n = _table_name(t)
            if n and n not in names:
                names.append(n)
    return writes, names


def analyse(stmts: list, tables: Tables | None = None, default_schema: str | None = None) -> dict:
    """What parsed statements say: {"statements": [...], "deps": ...} (see _statement), or {"error": ...}.
    With default_schema, names are resolved and stars expanded against tables (schema.table -> columns), and
    statements see the tables the earlier statements of the same file create or fill."""
    tables = dict(tables or {})
    deps = deps_of(table_names(stmts)[1], tables, default_schema) if default_schema else None
    out = []
    for s in stmts:
        try:
            st = _statement(s, tables, default_schema)
        except Exception as e:  # noqa: BLE001
            return {"error": {"line": _line(s), "message": "cannot analyse statement: %s" % e}}
        if st is not None:
            st["line"] = _line(s)
            out.append(st)
            w = st["writes"]
            if w and default_schema:
                if st.get("outputs"):
                    tables[w] = list(st["outputs"])
                else:
                    tables.setdefault(w, None)
    res: dict = {"statements": out}
    if deps is not None:
        res["deps"] = deps
    return res


def parse_text(text: str, tables: Tables | None = None, default_schema: str | None = None) -> dict:
    """What a SQL file says: {"statements": [...], "deps": ...} or {"error": {"line": N, "message": ...}}."""
    stmts = parse_sql(text)
    if isinstance(stmts, dict):
        return stmts
    return analyse(stmts, tables, default_schema)


# ------------------------------------------------------------------ files -> edges
def _pipeline_schema(path: Path) -> str | None:
    """The schema of the pipeline this file is a model of (file under DIR/models/, DIR/pipeline.toml), else None."""
    for parent in path.parents:
        if parent.name == "models" and (parent.parent / "pipeline.toml").exists():
            try:
                cfg = tomllib.loads((parent.parent / "pipeline.toml").read_text())
                return str(cfg.get("schema") or "public")
            except (tomllib.TOMLDecodeError, OSError):
                return "public"
    return None


def edges_of(path: Path, result: dict) -> list[tuple[str, str, str, str | None, str | None]]:
    """(kind, src_kind, src_name, dst_kind, dst_name) of one file, from its parse result."""
    f = str(path)
    rows: list[tuple] = []
    if "error" in result:
        return rows
    model_schema = _pipeline_schema(path)
    default = model_schema or "public"
    for st in result.get("statements", []):
        writes = st.get("writes")
        if writes is None:
            if model_schema is None:
                writes = None
            else:
                writes = "%s.%s" % (model_schema, path.stem.lower())
        else:
            writes = _qualify_default(writes, default)
        reads = [_qualify_default(r, default) for r in st.get("reads", [])]
        for r in reads:
            rows.append(("reads", "table", r, "file", f))
            if writes and r != writes:
                rows.append(("derives", "table", r, "table", writes))
        if writes:
            rows.append(("writes", "file", f, "table", writes))
            for dst, st_t, sc in st.get("columns", []):
                src_t = _qualify_default(st_t, default)
                src = "%s.%s" % (src_t, sc)
                dcol = "%s.%s" % (writes, dst)
                if src != dcol:
                    rows.append(("derives", "column", src, "column", dcol))
    return list(dict.fromkeys(rows))


def sql_files(directory: Path) -> list[Path]:
    return sorted(p.resolve() for p in directory.rglob("*.sql") if p.is_file())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _split_top(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [x.strip() for x in out if x.strip()]


def declared_columns(decl: str | None) -> list[str] | None:
    """Column names of a pipeline.toml `columns = "id bigint, name text"` declaration."""
    if not decl or not isinstance(decl, str):
        return None
    names = []
    for part in _split_top(decl):
        m = re.match(r'\s*("(?:[^"]|"")+"|[^\s]+)', part)
        if not m:
            return None
        n = m.group(1)
        names.append(n[1:-1].replace('""', '"') if n.startswith('"') else n.lower())
    return names or None


def _toml_tables(roots: set[Path]) -> Tables:
    """Columns of the sources the scanned pipelines declare in pipeline.toml."""
    out: Tables = {}
    for root in sorted(roots):
        try:
            cfg = tomllib.loads((root / "pipeline.toml").read_text())
        except (tomllib.TOMLDecodeError, OSError):
            continue
        for s in cfg.get("sources", []) or []:
            if not isinstance(s, dict) or not s.get("dataset"):
                continue
            table = str(s.get("table") or s["dataset"])
            name = table if "." in table else "public.%s" % table
            cols = declared_columns(s.get("columns"))
            if cols or name not in out:
                out[name] = cols
    return out


def catalog_tables(conn: psycopg.Connection) -> Tables:
    """Columns of every table and view of the database (deltapipe's hidden _dp_ columns left out), and of the
    datasets and models of the catalog whose table does not exist (yet)."""
    out: Tables = {}
    for schema, table, cols in conn.execute(r"""
            SELECT n.nspname::text, c.relname::text, array_agg(a.attname::text ORDER BY a.attnum)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
               AND n.nspname NOT LIKE 'deltapipe%' AND a.attname NOT LIKE '\_dp\_%'
             GROUP BY 1, 2"""):
        out["%s.%s" % (schema, table)] = list(cols)
    for name, cols in conn.execute("""
            SELECT d.target_schema || '.' || d.target_table,
                   array(SELECT c->>'name' FROM jsonb_array_elements(CASE jsonb_typeof(d.columns)
                                                                    WHEN 'array' THEN d.columns ELSE '[]' END) c)
              FROM deltapipe.dataset d
            UNION ALL
            SELECT m.target_schema || '.' || m.target_table,
                   array(SELECT jsonb_array_elements_text(CASE jsonb_typeof(m.program->'columns')
                                                          WHEN 'array' THEN m.program->'columns' ELSE '[]' END))
              FROM deltapipe.model m"""):
        if name not in out:
            out[name] = [c for c in cols if c and not c.startswith("_dp_")] or None
    return out


def dependency_order(items: dict, writes: dict, reads: dict) -> list:
    """items (in a stable order) sorted so that what writes a table comes before what reads it; a cycle keeps
    the given order for its members."""
    writers: dict[str, list] = {}
    for k in items:
        for t in writes.get(k, ()):
            writers.setdefault(t, []).append(k)
    done: set = set()
    busy: set = set()
    order: list = []

    def visit(k):
        if k in done or k in busy:
            return
        busy.add(k)
        for t in reads.get(k, ()):
            for w in writers.get(t, ()):
                if w != k:
                    visit(w)
        busy.discard(k)
        done.add(k)
        order.append(k)
    for k in items:
        visit(k)
    return order


def _model_target(path: Path, schema: str | None) -> str | None:
    return "%s.%s" % (schema, path.stem.lower()) if schema is not None else None


def analyse_files(texts: dict, cached: dict, tables: Tables) -> tuple[dict, dict, list, int]:
    """Parse results of files {path: (sha, text or None)}, in dependency order, stars expanded with the columns
    of tables (updated with what each file writes). A cached result {sha: result} is used while the columns it
    depended on are unchanged. Returns ({path: result}, {sha: new result}, [paths taken from the cache], analyses made)."""
    tables = dict(tables)
    schemas = {p: _pipeline_schema(p) for p in texts}
    tables.update({k: v for k, v in _toml_tables({p.parent.parent for p, s in schemas.items() if s is not None}).items()
                   if v or k not in tables})
    parsed: dict[Path, object] = {}
    writes: dict[Path, list[str]] = {}
    reads: dict[Path, list[str]] = {}
    for p, (sha, text) in texts.items():
        default = schemas[p] or "public"
        res = cached.get(sha)
        if res is not None and "deps" in res:
            names = list(res["deps"]["tables"])
            w = [st["writes"] for st in res.get("statements", []) if st.get("writes")]
        elif res is not None and "error" in res:
            continue
        else:
            stmts = parse_sql(text) if text is not None else {"error": {"line": None, "message": "unreadable"}}
            parsed[p] = stmts
            w, names = table_names(stmts) if isinstance(stmts, list) else ([], [])
        target = _model_target(p, schemas[p])
        writes[p] = [target] if target else [_qualify_default(x, default) for x in w]
        reads[p] = [_qualify_default(x, default) for x in names]
    results: dict[Path, dict] = {}
    new: dict[str, dict] = {}
    memo: dict[tuple, dict] = {}
    hits: list[Path] = []
    for p in dependency_order(list(texts), writes, reads):
        sha, text = texts[p]
        default = schemas[p] or "public"
        res = cached.get(sha)
        if res is not None and ("error" in res or (
                "deps" in res and res["deps"] == deps_of(list(res["deps"]["tables"]), tables, default))):
            hits.append(p)
        else:
            stmts = parsed.get(p)
            if stmts is None:
                stmts = parse_sql(text) if text is not None else None
            if text is None:
                res = {"error": {"line": None, "message": "cannot read as UTF-8"}}
            elif isinstance(stmts, dict):
                res = stmts
            else:
                key = (sha, json.dumps(deps_of(table_names(stmts)[1], tables, default), sort_keys=True))
                if key not in memo:
                    memo[key] = analyse(stmts, tables, default)
                res = memo[key]
            new[sha] = res
        results[p] = res
        target = _model_target(p, schemas[p])
        for st in res.get("statements", []):
            w = target if st.get("writes") is None else _qualify_default(st["writes"], default)
            if not w:
                continue
            if st.get("outputs"):
                tables[w] = list(st["outputs"])
            else:
                tables.setdefault(w, None)
    return results, new, hits, len(memo) + sum(1 for r in new.values() if "error" in r)


def analyse_queries(queries: dict, tables: Tables) -> dict:
    """Column lineage of SELECTs that fill tables, e.g. the models of the catalog:
    {"schema.table": (sql, default schema)} -> {"schema.table": analyse() result}, analysed in dependency order
    so that a star over another of them is expanded with that one's output columns."""
    tables = dict(tables)
    parsed: dict = {}
    writes: dict = {}
    reads: dict = {}
    for t, (sql, default) in queries.items():
        parsed[t] = parse_sql(sql)
        names = table_names(parsed[t])[1] if isinstance(parsed[t], list) else []
        writes[t] = [t]
        reads[t] = [_qualify_default(n, default) for n in names]
    out: dict = {}
    for t in dependency_order(list(queries), writes, reads):
        stmts = parsed[t]
        if isinstance(stmts, dict):
            out[t] = stmts
            continue
        res = analyse(stmts, tables, queries[t][1])
        out[t] = res
        last = (res.get("statements") or [{}])[-1]
        if last.get("outputs"):
            tables[t] = list(last["outputs"])
        else:
            tables.setdefault(t, None)
    return out


def scan(dsn: str | None, directory: str | Path, *, clear_cache: bool = False) -> dict:
    """Parse (or take from the cache) every .sql file under directory and merge the graph. Stars are expanded
    with the columns the database and the catalog know, and those of the tables the files before write (files
    are analysed in dependency order)."""
    root = Path(directory)
    if not root.is_dir():
        raise DeltapipeError("%s is not a directory" % root, sqlstate="DP404",
                             hint="give the directory holding the SQL files")
    root = root.resolve()
    files = sql_files(root)
    conn = connect(dsn, autocommit=True, application_name="deltapipe lineage")
    try:
        require_installed(conn)
        if conn.execute("SELECT to_regclass('deltapipe.parse_cache') IS NULL").fetchone()[0]:
            raise DeltapipeError("the lineage catalog is missing", hint="run `deltapipe init`")
        cleared = 0
        if clear_cache:
            cleared = conn.execute("DELETE FROM deltapipe.parse_cache").rowcount
        scan_id = conn.execute("INSERT INTO deltapipe.lineage_scan (root) VALUES (%s) RETURNING id",
                               (str(root),)).fetchone()[0]
        contents: dict[Path, str] = {}
        texts: dict[Path, tuple[str, str | None]] = {}
        unreadable: list[dict] = []
        for p in files:
            try:
                data = p.read_bytes()
            except OSError as e:
                unreadable.append({"file": str(p), "line": None, "message": "cannot read: %s" % e.strerror})
                continue
            contents[p] = _sha(data)
            try:
                texts[p] = (contents[p], data.decode("utf-8"))
            except UnicodeDecodeError:
                texts[p] = (contents[p], None)
        shas = sorted(set(contents.values()))
        cached = dict(conn.execute("SELECT sha256, result FROM deltapipe.parse_cache WHERE parser = %s "
                                   "AND sha256 = ANY(%s)", (PARSER, shas)).fetchall())
        try:
            tables = catalog_tables(conn)
        except psycopg.Error as e:
            raise from_db(e) from e
        results, new, hits, n_parsed = analyse_files(texts, cached, tables)
        misses = [p for p in contents if p not in set(hits)]
        failed: list[dict] = list(unreadable)
        for p in contents:
            err = results[p].get("error")
            if err:
                failed.append({"file": str(p), "line": err.get("line"), "message": err.get("message")})
        try:
            with conn.transaction():
                with conn.cursor() as cur:
                    if new:
                        from psycopg.types.json import Jsonb
                        cur.executemany("INSERT INTO deltapipe.parse_cache (sha256, parser, result) VALUES (%s, %s, %s) "
                                        "ON CONFLICT (sha256, parser) DO UPDATE SET result = excluded.result, "
                                        "parsed_at = now()", [(s, PARSER, Jsonb(r)) for s, r in new.items()])
                    if hits:
                        hit_counts: dict[str, int] = {}
                        for p in hits:
                            hit_counts[contents[p]] = hit_counts.get(contents[p], 0) + 1
                        cur.execute("UPDATE deltapipe.parse_cache c SET hits = c.hits + h.n, last_hit_at = now() "
                                    "FROM unnest(%s::text[], %s::int[]) AS h(sha, n) "
                                    "WHERE c.sha256 = h.sha AND c.parser = %s",
                                    (list(hit_counts), list(hit_counts.values()), PARSER))
                    cur.execute("CREATE TEMP TABLE IF NOT EXISTS dp_lineage_stage (file text, kind text, "
                                "src_kind text, src_name text, dst_kind text, dst_name text) ON COMMIT DROP")
                    cur.execute("TRUNCATE dp_lineage_stage")
                    n_rows = 0
                    with cur.copy("COPY dp_lineage_stage (file, kind, src_kind, src_name, dst_kind, dst_name) "
                                  "FROM STDIN") as cp:
                        for p in contents:
                            cp.write_row((str(p), "file", "file", str(p), None, None))
                            for row in edges_of(p, results[p]):
                                cp.write_row((str(p),) + row)
                                n_rows += 1
                    applied = cur.execute("SELECT deltapipe.lineage_apply(%s)", (str(root),)).fetchone()[0]
                conn.execute("UPDATE deltapipe.lineage_scan SET finished_at = clock_timestamp(), files = %s, "
                             "cache_hits = %s, cache_misses = %s, failed = %s, edges_added = %s, edges_removed = %s "
                             "WHERE id = %s", (len(files), len(hits), len(misses), len(failed),
                                               applied["edges_added"], applied["edges_removed"], scan_id))
        except psycopg.Error as e:
            raise from_db(e) from e
        return {"root": str(root), "files": len(files), "parsed": n_parsed, "cache_hits": len(hits),
                "cache_misses": len(misses), "failed": sorted(failed, key=lambda x: x["file"]), "edges": n_rows,
                "cleared": cleared, **applied}
    finally:
        conn.close()


def show(dsn: str | None, name: str, direction: str = "upstream", depth: int | None = None) -> list[dict]:
    conn = connect(dsn, autocommit=True, application_name="deltapipe lineage")
    try:
        require_installed(conn)
        cur = conn.execute("SELECT * FROM deltapipe.lineage(%s, %s, %s)", (name, direction, depth))
        names = [c.name for c in cur.description]
        start = conn.execute("SELECT kind, name FROM deltapipe.lineage_node WHERE id = deltapipe._lineage_node(%s)",
                             (name,)).fetchone()
        return {"start": {"kind": start[0], "name": start[1]}, "rows": [dict(zip(names, r)) for r in cur.fetchall()]}
    except psycopg.Error as e:
        raise from_db(e) from e
    finally:
        conn.close()
