"""Deploy a pipeline into the catalog: sources, models, edges, compiled refresh statements."""

from __future__ import annotations

import re

import psycopg
from psycopg.types.json import Jsonb

from deltapipe.errors import from_db
from deltapipe.incremental.split import SPLIT_MARK
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
                for opt, value in s.history.items():
                    conn.execute("SELECT deltapipe.set_dataset_option(%s, %s, %s)", (s.dataset, opt, value))
                created.append(s.dataset)
            conn.execute("""INSERT INTO deltapipe.pipeline (name, root, schema_name, config) VALUES (%s, %s, %s, %s)
                            ON CONFLICT (name) DO UPDATE SET root = excluded.root, schema_name = excluded.schema_name,
                                   config = excluded.config, deployed_at = now()""",
                         (p.name, str(p.root.resolve()), p.schema, Jsonb(p.config())))
            old_rows = conn.execute("SELECT name, fingerprint, sql FROM deltapipe.model WHERE pipeline = %s",
                                    (p.name,)).fetchall()
            old = {r[0]: r[1] for r in old_rows}
            old_sql = {r[0]: r[2] or "" for r in old_rows}
            for n in set(old) - set(p.models):
                if old_sql[n].startswith(SPLIT_MARK):
                    # the input deltapipe split from a top-N model that is no longer one: its table and
                    # change log are deltapipe's own
                    log = conn.execute("SELECT deltapipe._model_log(%s, %s)", (p.name, n)).fetchone()[0]
                    if log:
                        conn.execute("DROP TABLE IF EXISTS %s" % log)
                    conn.execute("DROP TABLE IF EXISTS %s.%s" % (_q(p.schema), _q(n)))
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
                                ON CONFLICT (pipeline, name) DO UPDATE SET sql = excluded.sql,
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
            compiled = compile_pipeline(conn, p)
            for name, c in compiled.items():
                check_audit_columns(p.models[name], c.columns)
                program = dict(c.program or {})
                program["columns"] = c.columns
                program["key"], program["key_inferred"] = c.key, c.key_inferred  # (key_cols is rewritten above)
                conn.execute("""UPDATE deltapipe.model SET incremental = %s, why_full = %s, shape = %s, delta_sql = %s,
                                       delta_inputs = %s, state_sql = %s, hidden_cols = %s, agg_spec = %s,
                                       key_cols = %s, key_inferred = %s, program = %s, compile_key = %s,
                                       watermark = CASE WHEN fingerprint_changed OR key_cols IS DISTINCT FROM %s::text[]
                                                        THEN NULL ELSE watermark END
                                  FROM (SELECT %s AS fingerprint_changed) x
                                 WHERE pipeline = %s AND name = %s""",
                             (c.incremental, c.why_full, c.shape, c.delta_sql, c.delta_inputs or None, c.state_sql,
                              c.hidden_cols or None, Jsonb(c.agg_spec) if c.agg_spec else None,
                              c.key, c.key_inferred, Jsonb(program), c.compile_key, c.key,
                              name in changed, p.name, name))
            # the indexes affected-key refreshes probe, on the inputs that exist already (the first
            # build of a model may use them too; a new table gets them when it is built)
            for c in compiled.values():
                for ix in (c.program or {}).get("indexes", []) if c.incremental else []:
                    conn.execute("SELECT deltapipe._ensure_index(%s, %s)", (ix["table"], ix["column"]))
    except psycopg.Error as e:
        raise from_db(e) from e
    return {"pipeline": p.name, "models": len(p.models), "sources": len(p.sources), "datasets_created": created,
            "added": sorted(added), "changed": sorted(changed), "removed": sorted(removed),
            "externals": getattr(p, "externals", [])}


# ------------------------------------------------------------------ incremental compilation
def _declared_columns(spec: str) -> list[str]:
    parts = re.split(r",(?![^()]*\))", spec)
    return [x.strip().split()[0].strip('"') if x.strip().startswith('"') else x.strip().split()[0].lower()
            for x in parts if x.strip()]


def compile_pipeline(conn: psycopg.Connection, p: Pipeline, force: bool = False) -> dict:
    """Classify every model and compile its refresh (deltapipe.incremental), in dependency order.

    A model whose compile key (its fingerprint, declared key, the columns and keys of what it reads,
    the compiler's version) equals the deployed one is not compiled again: its deployed program is
    read back from the catalog."""
    import hashlib
    import json

    import sqlglot

    from deltapipe.incremental.compiler import COMPILER_VERSION, Compiled, compile_model
    from deltapipe.incremental.program import refresh_steps
    columns: dict[str, list[str] | None] = {}
    keys: dict[str, list[str] | None] = {}
    types: dict[str, dict[str, str]] = {}
    for ds in list(p.sources) + sorted(getattr(p, "datasets", {})):
        row = conn.execute("SELECT columns, key_cols FROM deltapipe.dataset WHERE name = %s", (ds,)).fetchone()
        if row is None:  # a tracked table: its columns as they are now
            row = conn.execute(
                """SELECT (SELECT jsonb_agg(jsonb_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod))
                                  ORDER BY a.attnum)
                          FROM pg_attribute a WHERE a.attrelid = to_regclass(format('%%I.%%I', t.target_schema, t.target_table))
                           AND a.attnum > 0 AND NOT a.attisdropped AND a.attname NOT LIKE '\\_dp\\_%%'), t.key_cols
                     FROM deltapipe.tracked t WHERE t.name = %s AND t.dataset IS NULL""", (ds,)).fetchone()
        if row and row[0]:
            columns[ds] = [c["name"] for c in row[0]]
            types[ds] = {c["name"]: c.get("type") for c in row[0]}
            keys[ds] = list(row[1]) if row[1] else None
        elif ds in p.sources and p.sources[ds].columns:  # not deployed yet: the columns declared in pipeline.toml
            columns[ds] = _declared_columns(p.sources[ds].columns)
            keys[ds] = list(p.sources[ds].key) or None
        elif ds in p.sources and (files := [x for x in p.sources[ds].paths(p.root) if x.exists()]):
            # not deployed yet, no columns declared: those deploy will infer from the first file
            from deltapipe.errors import DeltapipeError
            from deltapipe.load.infer import infer_columns
            from deltapipe.load.files import guess_format
            s = p.sources[ds]
            try:
                cols = infer_columns(files[0], guess_format(files[0], s.options.get("format")),
                                     delimiter=s.options.get("delimiter"), encoding=s.options.get("encoding", "utf8"))
                columns[ds] = [n for n, _t in cols]
            except DeltapipeError:
                columns[ds] = None
            keys[ds] = list(s.key) or None
        else:
            columns[ds], keys[ds] = None, (list(p.sources[ds].key) if ds in p.sources else None)
    deployed = {r[0]: r[1:] for r in conn.execute(
        """SELECT name, compile_key, incremental, why_full, shape, delta_sql, delta_inputs, state_sql, hidden_cols,
                  agg_spec, program, key_cols, key_inferred FROM deltapipe.model WHERE pipeline = %s""",
        (p.name,)).fetchall()}
    out = {}
    for name in topo_order(p):
        m = p.models[name]
        tables = m.read_map   # resolved by deps.resolve
        ck = hashlib.sha256(json.dumps([COMPILER_VERSION, sqlglot.__version__, m.fingerprint, m.key,
                                        sorted((list(k), list(v), columns.get(v[0]), keys.get(v[0]),
                                                types.get(v[0])) for k, v in tables.items())],
                                       default=str, sort_keys=True).encode()).hexdigest()
        d = deployed.get(name)
        if d is not None and d[0] == ck and not force and (d[9] or {}).get("columns") is not None:
            prog = dict(d[9] or {})
            c = Compiled(bool(d[1]), d[2], d[3], d[4], list(d[5] or []), d[6], list(d[7] or []), d[8],
                         columns=prog.get("columns"), key=prog.get("key"), key_inferred=bool(prog.get("key_inferred")),
                         program=prog)
        else:
            c = compile_model(m.sql, tables, columns, keys=keys, declared_key=m.key or None, types=types)
            if c.incremental and any(k == "external" for k in m.upstreams.values()):
                c.incremental, c.why_full = False, "depends on an external table (no change log)"
            if c.incremental:
                # the statements of its refresh, run by deltapipe._refresh_program
                c.program = {**(c.program or {}),
                             **refresh_steps(c.shape, c.columns, c.hidden_cols, c.key, c.delta_sql, c.state_sql,
                                             c.agg_spec, c.program)}
        c.compile_key = ck  # type: ignore[attr-defined]
        cols = c.columns
        if cols is None:
            row = conn.execute("""SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                                   WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
                                     AND a.attname NOT LIKE '\\_dp\\_%%'""",
                               ("%s.%s" % (_q(p.schema), _q(name)),)).fetchone()
            cols = row[0] if row else None
        columns[name] = cols
        keys[name] = c.key
        trow = conn.execute("""SELECT jsonb_object_agg(a.attname, format_type(a.atttypid, a.atttypmod))
                                 FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0
                                  AND NOT a.attisdropped""", ("%s.%s" % (_q(p.schema), _q(name)),)).fetchone()
        if trow and trow[0]:
            types[name] = trow[0]
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


