"""Deploy a pipeline into the catalog: sources, models, edges, compiled refresh statements."""

from __future__ import annotations

import re

import psycopg
from psycopg.types.json import Jsonb

from deltapipe.errors import from_db
from deltapipe.pipeline.model import Pipeline, Source, _err
from deltapipe.pipeline.audits import check_audit_columns
from deltapipe.pipeline.deps import _q, topo_order


def deploy(conn: psycopg.Connection, p: Pipeline) -> dict:
    """Write the pipeline, its models and edges into the catalog; create missing source datasets."""
    from deltapipe.load.infer import columns_spec, infer_columns
    from deltapipe.load.loader import guess_format

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
    from deltapipe.incremental.compiler import compile_model
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
    from deltapipe.load.loader import file_sha256
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


