"""Lineage from SQL files: which tables and columns each statement reads, writes and derives.

`scan(dsn, directory)` parses every .sql file under a directory with sqlglot (postgres
dialect), caches what each file says in deltapipe.parse_cache by SHA-256 of its content
and the parser version, stages the edges with COPY into a temp table and merges them
into deltapipe.lineage_node / lineage_edge with one call of deltapipe.lineage_apply.

Names: tables are schema.table (unqualified names are taken to be in public, or in the
pipeline's schema for pipeline models), columns schema.table.column, files absolute paths.
A file under DIR/models/ next to DIR/pipeline.toml is a pipeline model: its SELECT writes
the table named after the file.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import psycopg
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope

from deltapipe.pipeline import _ident  # one notion of an identifier as PostgreSQL sees it
from deltapipe.db import connect, require_installed
from deltapipe.errors import DeltapipeError, from_db

PARSER = "sqlglot-%s/1" % sqlglot.__version__  # bump the suffix when the extraction below changes


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


class _Resolver:
    """Column-level lineage of a query: output position -> [(table, column)] through CTEs,
    derived tables, UNION branches and pass-through stars."""

    def __init__(self, query: exp.Expression):
        try:
            q = qualify(query.copy(), dialect="postgres", validate_qualify_columns=False, identify=False,
                        quote_identifiers=False)
        except Exception:  # noqa: BLE001 - qualification is best effort; table lineage still holds
            q = query.copy()
        self.query = q
        self.root = build_scope(q)

    def outputs(self) -> list[tuple[str, list[tuple[str, str]]]]:
        if self.root is None:
            return []
        return self._outputs(self.root, 0)

    def _outputs(self, scope: Scope, depth: int) -> list[tuple[str, list[tuple[str, str]]]]:
        e = scope.expression
        if isinstance(e, exp.SetOperation):
            branches = _branches(scope)
            if not branches:
                return []
            first = self._outputs(branches[0], depth + 1)
            for b in branches[1:]:
                for i, (_n, srcs) in enumerate(self._outputs(b, depth + 1)):
                    if i < len(first):
                        first[i][1].extend(srcs)
            return first
        if not isinstance(e, exp.Select):
            return []
        out = []
        for sel in e.selects:
            if isinstance(sel, exp.Star) or (isinstance(sel, exp.Column) and isinstance(sel.this, exp.Star)):
                continue
            out.append((_ident(sel.args.get("alias").this) if isinstance(sel, exp.Alias) and sel.args.get("alias")
                        else sel.alias_or_name.lower(), self._expr_sources(scope, sel, depth)))
        return out

    def _expr_sources(self, scope: Scope, node: exp.Expression, depth: int) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for col in node.find_all(exp.Column):
            if isinstance(col.this, exp.Star):
                continue
            found.extend(self._column(scope, col.table, _ident(col.this), depth))
        return found

    def _column(self, scope: Scope, table: str, name: str, depth: int) -> list[tuple[str, str]]:
        if depth > 30:
            return []
        sources = scope.sources
        if not table:
            if len(sources) != 1:
                return []
            table = next(iter(sources))
        src = sources.get(table)
        if isinstance(src, exp.Table):
            t = _table_name(src)
            return [(t, name)] if t else []
        if isinstance(src, Scope):
            return self._column_in_select(src, name, depth + 1)
        return []

    def _column_in_select(self, scope: Scope, name: str, depth: int) -> list[tuple[str, str]]:
        e = scope.expression
        if not isinstance(e, exp.Select):
            if isinstance(e, exp.SetOperation):
                res = []
                branches = _branches(scope)
                names = [x.alias_or_name.lower() for x in e.selects]
                if name not in names:
                    return res
                i = names.index(name)
                for b in branches:  # UNION branches match by position
                    be = b.expression
                    if isinstance(be, exp.Select) and i < len(be.selects):
                        res.extend(self._expr_sources(b, be.selects[i], depth + 1))
                    elif isinstance(be, exp.SetOperation):
                        res.extend(self._column_in_select(b, name, depth + 1))
                return res
            return []
        stars = []
        for sel in e.selects:
            if isinstance(sel, exp.Star):
                stars.append(None)
            elif isinstance(sel, exp.Column) and isinstance(sel.this, exp.Star):
                stars.append(sel.table)
            elif sel.alias_or_name.lower() == name:
                return self._expr_sources(scope, sel, depth)
        res = []
        for st in stars:  # the column passes through a star
            for alias in ([st] if st else list(scope.sources)):
                res.extend(self._column(scope, alias, name, depth + 1))
        return res


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


def _statement(stmt: exp.Expression) -> dict | None:
    """What one statement does: {"writes": table|None, "reads": [...], "columns": [[dst_col, src_table, src_col]]}.
    A bare SELECT has writes None (a pipeline model's target is filled in from its file name)."""
    target: str | None = None
    query: exp.Expression | None = None
    target_cols: list[str] | None = None
    extra_reads: list[str] = []
    cols: list[tuple[str, str, str]] = []
    if isinstance(stmt, exp.Create):
        kind = (stmt.args.get("kind") or "").upper()
        if kind not in ("TABLE", "VIEW"):
            return None
        this = stmt.this
        if isinstance(this, exp.Schema):
            target_cols = [_ident(c.this) if isinstance(c, exp.ColumnDef) else _ident(c) for c in this.expressions]
            this = this.this
        target = _table_name(this)
        query = stmt.expression if isinstance(stmt.expression, exp.Query) else None
    elif isinstance(stmt, exp.Insert):
        this = stmt.this
        if isinstance(this, exp.Schema):
            target_cols = [_ident(c) for c in this.expressions]
            this = this.this
        target = _table_name(this)
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
        return {"writes": target, "reads": reads, "columns": [list(c) for c in cols]}
    elif isinstance(stmt, exp.Query):
        query = stmt
    else:
        return None
    reads: list[str] = []
    if query is not None:
        for name in _cte_shadowed_reads(query) + _reads(query, set()):
            if name not in reads:
                reads.append(name)
        outs = _Resolver(query).outputs()
        for i, (name, srcs) in enumerate(outs):
            dst = target_cols[i] if target_cols and i < len(target_cols) else name
            if not dst or dst.startswith("_col_"):
                continue
            for st, sc in dict.fromkeys(srcs):
                cols.append((dst, st, sc))
    if target and target in reads and isinstance(stmt, exp.Create):
        reads.remove(target)
    return {"writes": target, "reads": reads, "columns": [list(c) for c in cols]}


def parse_text(text: str) -> dict:
    """What a SQL file says: {"statements": [...]} or {"error": {"line": N, "message": ...}}."""
    try:
        stmts = sqlglot.parse(text, read="postgres")
    except (ParseError, TokenError) as e:
        errs = getattr(e, "errors", None) or []
        if errs:
            msg = re.sub(r"<Token token_type: TokenType\.\w+, text: ([^,]*), line.*?>", r"'\1'",
                         errs[0].get("description") or str(e))
            return {"error": {"line": errs[0].get("line"), "message": msg}}
        m = re.search(r"[Ll]ine (\d+)", str(e))
        return {"error": {"line": int(m.group(1)) if m else None, "message": str(e).splitlines()[0]}}
    except Exception as e:  # noqa: BLE001 - a parser crash on one file must not stop the scan
        return {"error": {"line": None, "message": "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")}}
    out = []
    for s in stmts:
        if s is None:
            continue
        try:
            st = _statement(s)
        except Exception as e:  # noqa: BLE001
            return {"error": {"line": _line(s), "message": "cannot analyse statement: %s" % e}}
        if st is not None:
            st["line"] = _line(s)
            out.append(st)
    return {"statements": out}


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


def scan(dsn: str | None, directory: str | Path, *, clear_cache: bool = False) -> dict:
    """Parse (or take from the cache) every .sql file under directory and merge the graph."""
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
        unreadable: list[dict] = []
        for p in files:
            try:
                contents[p] = _sha(p.read_bytes())
            except OSError as e:
                unreadable.append({"file": str(p), "line": None, "message": "cannot read: %s" % e.strerror})
        shas = sorted(set(contents.values()))
        cached = dict(conn.execute("SELECT sha256, result FROM deltapipe.parse_cache WHERE parser = %s "
                                   "AND sha256 = ANY(%s)", (PARSER, shas)).fetchall())
        results: dict[str, dict] = dict(cached)
        hits = [p for p, s in contents.items() if s in cached]
        misses = [p for p, s in contents.items() if s not in cached]
        new: dict[str, dict] = {}
        for p in misses:
            s = contents[p]
            if s not in new:
                try:
                    text = p.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    new[s] = {"error": {"line": None, "message": "cannot read as UTF-8: %s" % e}}
                else:
                    new[s] = parse_text(text)
            results[s] = new[s]
        failed: list[dict] = list(unreadable)
        for p, s in contents.items():
            err = results[s].get("error")
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
                        for p, s in contents.items():
                            cp.write_row((str(p), "file", "file", str(p), None, None))
                            for row in edges_of(p, results[s]):
                                cp.write_row((str(p),) + row)
                                n_rows += 1
                    applied = cur.execute("SELECT deltapipe.lineage_apply(%s)", (str(root),)).fetchone()[0]
                conn.execute("UPDATE deltapipe.lineage_scan SET finished_at = clock_timestamp(), files = %s, "
                             "cache_hits = %s, cache_misses = %s, failed = %s, edges_added = %s, edges_removed = %s "
                             "WHERE id = %s", (len(files), len(hits), len(misses), len(failed),
                                               applied["edges_added"], applied["edges_removed"], scan_id))
        except psycopg.Error as e:
            raise from_db(e) from e
        return {"root": str(root), "files": len(files), "parsed": len(new), "cache_hits": len(hits),
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
