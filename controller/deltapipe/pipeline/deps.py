"""Dependencies between models, sources and external tables: resolution, cycles, order."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from deltapipe.pipeline.model import Pipeline, _err
from deltapipe.pipeline.project import read_pipeline


def resolve(p: Pipeline, conn: psycopg.Connection | None) -> list[str]:
    """Classify every table read by every model; returns the external tables. Raises on unknown tables and cycles."""
    externals: set[str] = set()
    p.datasets = {}  # type: ignore[attr-defined]  # catalog datasets read but not declared: name -> (schema, table)
    by_table = {(s.schema, s.table): s.dataset for s in p.sources.values()}
    for m in p.models.values():
        m.upstreams = {}
        m.read_map = {}
        for schema, table, line in m.reads + m.audit_reads:
            kind, name, qual = None, None, None
            if schema in ("", p.schema) and table in p.models:
                kind, name, qual = "model", table, "%s.%s" % (_q(p.schema), _q(table))
            elif (schema or "public", table) in by_table or (not schema and (p.schema, table) in by_table):
                kind = "source"
                name = by_table.get((schema or "public", table)) or by_table[(p.schema, table)]
                qual = "%s.%s" % (_q(p.sources[name].schema), _q(p.sources[name].table))
            elif (hist := _history_table(p, conn, schema, table)) is not None:
                # the versions of a history-mode dataset, read on purpose: no change log of their own
                # (a full refresh), loaded by their dataset's node, so the model runs after it
                kind, name, qual = "external", hist[1], hist[1]
                m.upstreams[hist[0]] = "source"
                if hist[0] not in p.sources:
                    p.datasets[hist[0]] = hist[2]  # type: ignore[attr-defined]
            elif conn is not None and (found_ds := _dataset(conn, schema, table, p.schema)) is not None:
                # a dataset of the catalog (loaded by `deltapipe load`, CALL deltapipe.load, another
                # pipeline...) or a tracked table: its loads (its triggers) write a change log, so it
                # is a source like those declared
                kind, name = "source", found_ds[0]
                qual = "%s.%s" % (_q(found_ds[1]), _q(found_ds[2]))
                p.datasets[name] = (found_ds[1], found_ds[2])  # type: ignore[attr-defined]
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
            if (schema, table, line) in m.reads:
                # how the compiler sees the read: an external table by its name as written
                m.read_map[(schema, table)] = (name, kind, qual) if kind != "external" else (table, kind, table)
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


def _history_table(p: Pipeline, conn, schema: str, table: str) -> tuple[str, str, tuple[str, str]] | None:
    """(dataset, qualified history table, (dataset schema, table)) when schema.table is the history table of a
    history-mode source of the pipeline or of a catalog dataset keeping history (it may not exist yet)."""
    cands = [(schema, table)] if schema else [(p.schema, table), ("public", table)]
    for s in p.sources.values():
        if s.mode != "history":
            continue
        name = s.history.get("history_table") or (s.table[:55] + "_history")
        hs, ht = (name.split(".", 1) if "." in name else (s.schema, name))
        hs, ht = hs.strip('"'), ht.strip('"')
        if (hs, ht) in cands:
            return s.dataset, "%s.%s" % (_q(hs), _q(ht)), (s.schema, s.table)
    if conn is not None:
        for s, t in cands:
            row = conn.execute("SELECT d.name, d.target_schema, d.target_table FROM deltapipe.dataset d "
                               "WHERE deltapipe._history(d)->>'schema' = %s AND deltapipe._history(d)->>'table' = %s",
                               (s, t)).fetchone()
            if row:
                return row[0], "%s.%s" % (_q(s), _q(t)), (row[1], row[2])
    return None


def _dataset(conn, schema: str, table: str, default_schema: str) -> tuple[str, str, str] | None:
    """(name, schema, table) of the catalog dataset or tracked table the name resolves to (in _regclass's order),
    else None."""
    cands = [(schema, table)] if schema else [(default_schema, table), ("public", table)]
    for s, t in cands:
        row = conn.execute("SELECT name, target_schema, target_table FROM deltapipe.dataset "
                           "WHERE target_schema = %s AND target_table = %s", (s, t)).fetchone()
        if row:
            return row[0], row[1], row[2]
        # a tracked table (deltapipe track): its triggers write a change log, like a dataset's loads
        row = conn.execute("SELECT name, target_schema, target_table FROM deltapipe.tracked "
                           "WHERE target_schema = %s AND target_table = %s AND dataset IS NULL", (s, t)).fetchone()
        if row:
            return row[0], row[1], row[2]
        if conn.execute("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = %s AND c.relname = %s", (s, t)).fetchone():
            return None  # an existing table that is not a dataset's: external
    return None


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
