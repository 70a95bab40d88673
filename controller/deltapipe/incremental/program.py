"""A model's refresh program: the ordered SQL statements of its incremental refresh.

The compiler (compiler.py, affected.py, split.py) derives a model's change as a delta statement
(``delta_sql``: rows with weights), an aggregate's state rules (``agg_spec``, ``state_sql``) or an
affected-key restriction (``program.keys_sql``, ``restricted_sql``). This module turns that into the
statements that apply the change to the model's table, write its change log and keep its delta for
the models downstream. ``deltapipe deploy`` stores them in ``model.program.steps``; one generic
executor in SQL (``deltapipe._refresh_program``) runs them, so a refresh needs no Python (pg_cron,
``CALL deltapipe.run_pipeline``).

A step is a dict:
- ``sql``: one statement. ``@@name@@`` is replaced by the value of variable ``name`` before it runs
  (one pass: a value is never read again for placeholders);
- ``if``: a SQL boolean expression (placeholders allowed); the step runs only when it is true;
- ``into``: the statement is a query of at most one row; its columns become variables;
- ``count``: the name of a variable that gets the statement's row count;
- ``phase``: after the step, the time since the last phase is recorded under this name.

Variables the executor provides: ``target`` (the model's table, quoted), ``target_lit`` (the same as
a literal), ``log`` (its change log), ``lseq`` (this refresh's change log position), ``run``,
``ctab`` / ``ctab_t`` (the name of the view / table of the delta kept for downstream refreshes),
``row_count`` (the table's rows before), ``total_d`` / ``total_in`` (rows of the inputs' deltas /
of the inputs), ``nonempty`` (inputs with a change), ``dist`` (the table is distributed by Citus), ``hj``, ``nl``, ``dst`` (enable_hashjoin,
enable_nestloop and default_statistics_target as the caller had them), and ``T1`` .. ``Tn`` (the
types of the table's columns, in the order of ``program.cols``).

Variables a program must set: ``ncs`` (change log rows written), ``ins``, ``upd``, ``del``, ``dsum``
(change of the table's checksum), ``dcnt`` (change of its row count); a variable ``fallback`` set to
a text makes the executor stop and the refresh run in full, saying why.
"""

from __future__ import annotations

PROGRAM_VERSION = 1


def qi(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


class _Cols:
    """The table's columns (visible, then hidden) and how statements name them."""

    def __init__(self, cols: list[str], keys: list[str] | None):
        self.cols = cols
        self.vis = [c for c in cols if not c.startswith("_dp_")]
        self.keys = keys or None
        # the change log keeps every column of a keyed model, the visible ones of a keyless one
        self.lcols = self.vis if self.keys is None else cols

    def t(self, c: str) -> str:
        return "@@T%d@@" % (self.cols.index(c) + 1)

    def o(self, c: str) -> str:
        """The name of the copy of old column c (_dp_o<k>, k = its position in the table)."""
        return qi("_dp_o%d" % (self.cols.index(c) + 1))

    def join(self, fmt: str, cols: list[str] | None = None, sep: str = ", ") -> str:
        return sep.join(fmt.format(c=qi(c), t=self.t(c), o=self.o(c)) for c in (self.cols if cols is None else cols))

    def log_insert(self) -> str:
        """The start of the INSERT into the change log: new columns, then the copies of the old ones."""
        return "INSERT INTO @@log@@ (_dp_seq, _dp_run, _dp_op, %s, %s) " % (
            ", ".join(qi(c) for c in self.lcols), ", ".join(qi("_dp_o%d" % o) for o in range(1, len(self.lcols) + 1)))

    def log_old(self, alias: str) -> str:
        return ", ".join("%s.%s" % (alias, self.o(c)) for c in self.lcols)


def _guc(name: str, value: str) -> str:
    return "set_config(%s, %s, true)" % (lit(name), value)


def _probe_settings() -> dict:
    """Index probes for a delta much smaller than the table, else hash joins (not probes chosen from
    an underestimated delta)."""
    return {"sql": "SELECT %s, %s" % (_guc("enable_hashjoin", "CASE WHEN @@probe@@ THEN 'off' ELSE '@@hj@@' END"),
                                      _guc("enable_nestloop", "CASE WHEN @@probe@@ THEN '@@nl@@' ELSE 'off' END"))}


def _restore_settings() -> dict:
    return {"sql": "SELECT %s, %s" % (_guc("enable_hashjoin", "'@@hj@@'"), _guc("enable_nestloop", "'@@nl@@'"))}


def _analyze(table: str, cond: str | None = None) -> list[dict]:
    """Statistics for a delta table from a sample of 300 rows (enough for the plans that read it)."""
    steps = [{"sql": "SELECT %s" % _guc("default_statistics_target", "'1'")},
             {"sql": "ANALYZE %s" % table},
             {"sql": "SELECT %s" % _guc("default_statistics_target", "'@@dst@@'")}]
    if cond:
        for s in steps:
            s["if"] = cond
    return steps


def _ensure_indexes(indexes: list[dict]) -> list[dict]:
    return [{"sql": "SELECT deltapipe._ensure_index(%s, %s)" % (lit(ix["table"]), lit(ix["column"]))}
            for ix in indexes]


def refresh_steps(shape: str, columns: list[str], hidden_cols: list[str] | None, key: list[str] | None,
                  delta_sql: str | None, state_sql: str | None, agg_spec: dict | None,
                  program: dict | None) -> dict:
    """{"cols": the table's columns, "steps": the refresh's statements} for a compiled model."""
    cols = [c for c in columns if not c.startswith("_dp_")] + list(hidden_cols or [])
    C = _Cols(cols, key)
    prog = program or {}
    if shape in ("aggregate", "distinct"):
        steps = _ensure_indexes(prog.get("indexes", [])) + _aggregate(C, delta_sql or "", state_sql or "", agg_spec or {})
    elif shape == "keys":
        steps = _affected(C, prog) + _apply_rows(C)
    elif shape == "dedupe":
        steps = _ensure_indexes(prog.get("indexes", [])) + _dedupe(C, delta_sql or "", prog) + _apply_rows(C)
    elif shape in ("linear", "topn"):
        steps = _ensure_indexes(prog.get("indexes", []))
        steps += _linear(C, (delta_sql or "").replace("@SELF@", "@@target@@")) + _apply_rows(C)
    else:
        raise ValueError("no refresh program for shape %s" % shape)
    return {"cols": cols, "steps": steps, "version": PROGRAM_VERSION}


# ------------------------------------------------------------------ rows: linear, top-N, affected keys
def _netted(C: _Cols, sql: str) -> str:
    """The net change: rows with weights, unchanged rows netted away, with their hash."""
    return ("SELECT %s, _dp_w, hashtextextended(ROW(%s)::text, 0) AS _dp_hash "
            "FROM (SELECT %s, sum(_dp_w)::bigint AS _dp_w FROM (%s) _dp_q GROUP BY %s HAVING sum(_dp_w) <> 0) _dp_q") % (
        C.join("_dp_q.{c}::{t} AS {c}"), C.join("_dp_q.{c}::{t}"), C.join("_dp_q.{c}"), sql, C.join("_dp_q.{c}"))


def _keyed_pairs(C: _Cols, z: str) -> str:
    """Per changed key its new row (weight +1) and its old row (weight -1, as typed copies _dp_o<k>), in
    key order (the MERGE visits the table's index and pages in order), from the rows with weights z."""
    keys = C.keys or []
    return ("CREATE TEMP TABLE _dp_s AS WITH _dp_z AS MATERIALIZED (%s) "
            "SELECT %s, CASE WHEN n._dp_w IS NULL THEN -1 ELSE 1 END AS _dp_w, n._dp_hash, o._dp_hash AS _dp_old, %s "
            "FROM (SELECT * FROM _dp_z WHERE _dp_w > 0) n FULL JOIN (SELECT * FROM _dp_z WHERE _dp_w < 0) o ON %s "
            "ORDER BY %s") % (
        z,
        ", ".join(("coalesce(n.%s, o.%s) AS %s" % (qi(c), qi(c), qi(c))) if c in keys else "n.%s" % qi(c) for c in C.cols),
        C.join("o.{c} AS {o}"),
        " AND ".join("n.%s = o.%s" % (qi(k), qi(k)) for k in keys),
        ", ".join(str(C.cols.index(k) + 1) for k in keys))


def _linear(C: _Cols, delta_sql: str) -> list[dict]:
    steps: list[dict] = [{"sql": "DROP TABLE IF EXISTS pg_temp._dp_z, pg_temp._dp_s"}]
    if C.keys is None:
        return steps + [{"sql": "CREATE TEMP TABLE _dp_z AS " + _netted(C, delta_sql), "count": "nd"}]
    # one input changed: its delta holds each of its rows once, old (-1) or new (+1), and a filter,
    # projection or join with unchanged tables maps it to at most one old and one new row per key of
    # the model (else the key would repeat in the table): no netting by all columns; a key whose old
    # and new rows are equal is dropped (same hash). A model reading that input twice (a self-join) is
    # not such a map: then a key repeats, and the delta is netted after all.
    one = ("SELECT %s, _dp_q._dp_w::bigint AS _dp_w, hashtextextended(ROW(%s)::text, 0) AS _dp_hash "
           "FROM (%s) _dp_q WHERE _dp_q._dp_w <> 0") % (C.join("_dp_q.{c}::{t} AS {c}"), C.join("_dp_q.{c}::{t}"), delta_sql)
    dup = ("SELECT EXISTS (SELECT FROM pg_temp._dp_s GROUP BY %s HAVING count(*) > 1) AS dup"
           % ", ".join(qi(k) for k in C.keys))
    return steps + [
        {"sql": "SELECT false AS dup, 0 AS nre", "into": True},
        {"if": "@@nonempty@@ = 1", "sql": _keyed_pairs(C, one), "count": "nd"},
        {"if": "@@nonempty@@ = 1", "sql": dup, "into": True},
        {"if": "@@nonempty@@ = 1 AND @@dup@@", "sql": "DROP TABLE pg_temp._dp_s"},
        {"if": "@@nonempty@@ = 1 AND NOT @@dup@@", "sql": "DELETE FROM pg_temp._dp_s WHERE _dp_hash = _dp_old", "count": "nre"},
        {"if": "@@nonempty@@ = 1 AND NOT @@dup@@", "sql": "SELECT @@nd@@ - @@nre@@ AS nd", "into": True},
        {"if": "NOT (@@nonempty@@ = 1 AND NOT @@dup@@)", "sql": _keyed_pairs(C, _netted(C, delta_sql)), "count": "nd"},
    ]


def _affected(C: _Cols, prog: dict) -> list[dict]:
    """Affected keys: the model's SELECT restricted to the values of program.restrict_col that the inputs'
    changes can touch (program.keys_sql), diffed with the table's rows of those values."""
    rcol = prog["restrict_col"]
    keyless = bool(prog.get("keyless"))
    steps = _ensure_indexes(prog.get("indexes", []))
    steps.append({"sql": "SELECT deltapipe._ensure_index(@@target_lit@@, %s)" % lit(rcol)})
    steps.append({"sql": "DROP TABLE IF EXISTS pg_temp._dp_k, pg_temp._dp_s, pg_temp._dp_z"})
    # (a model with no key restricts by a column that may be NULL: a NULL value is an affected value too)
    steps.append({"sql": "CREATE TEMP TABLE _dp_k AS SELECT DISTINCT _dp_q._dp_k FROM (%s) _dp_q%s"
                         % (prog["keys_sql"], "" if keyless else " WHERE _dp_q._dp_k IS NOT NULL")})
    steps += _analyze("pg_temp._dp_k")
    if keyless:
        # the rows of the affected values, new (+1) and old (-1), netted as whole rows
        old = ("SELECT %s, -1 FROM @@target@@ t WHERE t.%s IN (SELECT _dp_k FROM pg_temp._dp_k) "
               "OR (t.%s IS NULL AND EXISTS (SELECT FROM pg_temp._dp_k WHERE _dp_k IS NULL))") % (
            C.join("{c}"), qi(rcol), qi(rcol))
        both = "SELECT %s, 1 AS _dp_w FROM (%s) _dp_n UNION ALL %s" % (C.join("{c}"), prog["restricted_sql"], old)
        steps.append({"sql": "CREATE TEMP TABLE _dp_z AS " + _netted(C, both), "count": "nd"})
        return steps
    keys = C.keys or []
    steps.append({"sql": (
        "CREATE TEMP TABLE _dp_s AS "
        "WITH n AS MATERIALIZED (SELECT %s, hashtextextended(ROW(%s)::text, 0) AS _dp_hash FROM (%s) _dp_q), "
        "o AS MATERIALIZED (SELECT t.* FROM @@target@@ t WHERE t.%s IN (SELECT _dp_k FROM pg_temp._dp_k)) "
        "SELECT %s, CASE WHEN n._dp_hash IS NULL THEN -1 ELSE 1 END AS _dp_w, n._dp_hash, o._dp_hash AS _dp_old, %s "
        "FROM n FULL JOIN o ON %s WHERE n._dp_hash IS DISTINCT FROM o._dp_hash ORDER BY %s") % (
        C.join("_dp_q.{c}::{t} AS {c}"), C.join("_dp_q.{c}::{t}"), prog["restricted_sql"], qi(rcol),
        ", ".join(("coalesce(n.%s, o.%s) AS %s" % (qi(c), qi(c), qi(c))) if c in keys else "n.%s" % qi(c) for c in C.cols),
        C.join("o.{c} AS {o}"),
        " AND ".join("n.%s = o.%s" % (qi(k), qi(k)) for k in keys),
        ", ".join(str(C.cols.index(k) + 1) for k in keys)), "count": "nd"})
    return steps


def _dedupe(C: _Cols, delta_sql: str, prog: dict) -> list[dict]:
    """One row per key, the first by an order (incremental/dedupe.py): the keys whose row left are
    recomputed (pg_temp._dp_k), the others with rows added keep the first of their row and those rows."""
    part = prog["partition"]
    pc = ", ".join(qi(p) for p in part)

    def on(a: str, b: str) -> str:
        return " AND ".join("%s.%s = %s.%s" % (a, qi(p), b, qi(p)) for p in part)
    keys = C.keys or []
    added = "SELECT 1 FROM pg_temp._dp_dd d WHERE d._dp_w > 0 AND %s" % on("d", "t")
    gone = "SELECT 1 FROM pg_temp._dp_k k WHERE %s" % on("k", "t")
    return [
        {"sql": "DROP TABLE IF EXISTS pg_temp._dp_dd, pg_temp._dp_k, pg_temp._dp_s, pg_temp._dp_z"},
        # the change of the rows under the window, in the model's columns and types, netted (a join's change
        # holds pairs of rows that cancel, +r and -r, where r is in neither state: not a row added)
        # (rows compared as text: every type has it, json included); one table read once needs no netting
        {"sql": ("CREATE TEMP TABLE _dp_dd AS SELECT %s, x._dp_w FROM (SELECT DISTINCT ON (y._dp_t) y.*, "
                 "sum(y._dp_n) OVER (PARTITION BY y._dp_t)::bigint AS _dp_w FROM (SELECT %s, _dp_q._dp_w AS _dp_n, "
                 "ROW(%s)::text AS _dp_t FROM (%s) _dp_q) y ORDER BY y._dp_t) x WHERE x._dp_w <> 0") % (
            C.join("x.{c}"), C.join("_dp_q.{c}::{t} AS {c}"), C.join("_dp_q.{c}::{t}"), delta_sql)
         } if prog.get("net", True) else
        {"sql": "CREATE TEMP TABLE _dp_dd AS SELECT %s, _dp_q._dp_w::bigint AS _dp_w FROM (%s) _dp_q WHERE _dp_q._dp_w <> 0" % (
            C.join("_dp_q.{c}::{t} AS {c}"), delta_sql)},
        # the keys whose row left: a removed row equal to it (compared as text, which every type has)
        {"sql": "CREATE TEMP TABLE _dp_k AS SELECT DISTINCT %s FROM pg_temp._dp_dd d JOIN @@target@@ t ON %s "
                "WHERE d._dp_w < 0 AND ROW(%s)::text = ROW(%s)::text" % (
                    ", ".join("d.%s" % qi(p) for p in part), on("t", "d"), C.join("t.{c}"), C.join("d.{c}"))},
    ] + _analyze("pg_temp._dp_k") + [{"sql": (
        "CREATE TEMP TABLE _dp_s AS "
        "WITH n AS MATERIALIZED ("
        "SELECT %(cast)s, hashtextextended(ROW(%(castonly)s)::text, 0) AS _dp_hash FROM ("
        # a key whose row stays: the first of it and the rows added
        "SELECT DISTINCT ON (%(pc)s) %(cols)s FROM ("
        "SELECT %(dcols)s FROM pg_temp._dp_dd t WHERE t._dp_w > 0 AND NOT EXISTS (%(gone)s) "
        "UNION ALL SELECT %(tcols)s FROM @@target@@ t WHERE EXISTS (%(added)s) AND NOT EXISTS (%(gone)s)) x "
        "ORDER BY %(pc)s%(order)s "
        # a key whose row left: the query again, for those keys
        ") _dp_q UNION ALL SELECT %(cast)s, hashtextextended(ROW(%(castonly)s)::text, 0) FROM (%(recompute)s) _dp_q), "
        "o AS MATERIALIZED (SELECT t.* FROM @@target@@ t WHERE EXISTS (%(added)s) OR EXISTS (%(gone)s)) "
        "SELECT %(pairs)s, CASE WHEN n._dp_hash IS NULL THEN -1 ELSE 1 END AS _dp_w, n._dp_hash, o._dp_hash AS _dp_old, "
        "%(ocopies)s FROM n FULL JOIN o ON %(kon)s WHERE n._dp_hash IS DISTINCT FROM o._dp_hash ORDER BY %(korder)s") % {
            "cast": C.join("_dp_q.{c}::{t} AS {c}"), "castonly": C.join("_dp_q.{c}::{t}"), "pc": pc,
            "cols": C.join("x.{c}"), "dcols": C.join("t.{c}"), "tcols": C.join("t.{c}"), "gone": gone, "added": added,
            "order": (", " + prog["order"]) if prog.get("order") else "", "recompute": prog["recompute_sql"],
            "pairs": ", ".join(("coalesce(n.%s, o.%s) AS %s" % (qi(c), qi(c), qi(c))) if c in keys else "n.%s" % qi(c)
                               for c in C.cols),
            "ocopies": C.join("o.{c} AS {o}"), "kon": " AND ".join("n.%s = o.%s" % (qi(k), qi(k)) for k in keys),
            "korder": ", ".join(str(C.cols.index(k) + 1) for k in keys)},
        "count": "nd"}]


def _apply_rows(C: _Cols) -> list[dict]:
    """Apply a change of rows (keyless: pg_temp._dp_z, copies with weights; keyed: pg_temp._dp_s, per key
    its new row and its old row's copies) to the table, log it, and keep it for downstream refreshes."""
    steps: list[dict] = [{"sql": "SELECT @@nd@@ * 10 < @@row_count@@ AS probe", "into": True, "phase": "delta"},
                         _probe_settings()]
    if C.keys is None:
        # remove -n copies, add +n copies, log both: one statement
        steps.append({"sql": (
            "WITH del AS (DELETE FROM @@target@@ t WHERE t.ctid = ANY (ARRAY("
            "SELECT x.ctid FROM (SELECT t2.ctid, row_number() OVER (PARTITION BY z.ctid) AS rn, -z._dp_w AS n "
            "FROM pg_temp._dp_z z JOIN @@target@@ t2 ON t2._dp_hash = z._dp_hash AND %s WHERE z._dp_w < 0) x "
            "WHERE x.rn <= x.n)) RETURNING t.*), "
            "ins AS (INSERT INTO @@target@@ (%s, _dp_hash) SELECT %s, z._dp_hash FROM pg_temp._dp_z z, "
            "generate_series(1, z._dp_w) WHERE z._dp_w > 0 RETURNING *) "
            "%s SELECT @@lseq@@, @@run@@, 'D', %s, %s FROM del UNION ALL SELECT @@lseq@@, @@run@@, 'I', %s, %s FROM ins") % (
            C.join("t2.{c} IS NOT DISTINCT FROM z.{c}", sep=" AND "), C.join("{c}"), C.join("z.{c}"),
            C.log_insert(), C.join("NULL::{t}", C.lcols), C.join("del.{c}", C.lcols),
            C.join("ins.{c}", C.lcols), C.join("NULL::{t}", C.lcols)), "count": "ncs"})
        steps.append({"sql": (
            "SELECT coalesce(sum(_dp_w) FILTER (WHERE _dp_w > 0), 0) AS ins, 0 AS upd, "
            "coalesce(-sum(_dp_w) FILTER (WHERE _dp_w < 0), 0) AS del, "
            "coalesce(sum(_dp_w * _dp_hash::numeric), 0) AS dsum, coalesce(sum(_dp_w), 0) AS dcnt FROM pg_temp._dp_z"),
            "into": True})
        steps.append({"sql": "ALTER TABLE pg_temp._dp_z RENAME TO @@ctab_t@@"})
        steps.append({"sql": ("CREATE TEMP VIEW @@ctab@@ AS SELECT %s, sum(_dp_w)::bigint AS _dp_w FROM pg_temp.@@ctab_t@@ "
                              "GROUP BY %s HAVING sum(_dp_w) <> 0") % (C.join("{c}", C.vis), C.join("{c}", C.vis))})
    else:
        keys = C.keys
        # the log: a deleted key's new row is NULL (its key columns too)
        steps.append({"sql": C.log_insert() + (
            "SELECT @@lseq@@, @@run@@, CASE WHEN s._dp_old IS NULL THEN 'I' WHEN s._dp_w < 0 THEN 'D' ELSE 'U' END, "
            "%s, %s FROM pg_temp._dp_s s") % (
            ", ".join(("CASE WHEN s._dp_w > 0 THEN s.%s END" % qi(c)) if c in keys else "s.%s" % qi(c) for c in C.lcols),
            C.log_old("s")), "count": "ncs"})
        sets = [c for c in C.cols if c not in keys] or [keys[0]]
        # a table Citus distributes: no MERGE from a local table; a DELETE of the keys gone, then an INSERT
        # ... ON CONFLICT of the new rows, each routed shard by shard (never a SET of the key)
        kl = ", ".join(qi(k) for k in keys)
        steps.append({"if": "@@dist@@", "sql": "DELETE FROM @@target@@ t WHERE (%s) IN (SELECT %s FROM pg_temp._dp_s s "
                                                "WHERE s._dp_w < 0)" % (C.join("t.{c}", keys), C.join("s.{c}", keys))})
        steps.append({"if": "@@dist@@", "sql": (
            "INSERT INTO @@target@@ (%s, _dp_hash) SELECT %s, s._dp_hash FROM pg_temp._dp_s s WHERE s._dp_w > 0 "
            "ON CONFLICT (%s) DO UPDATE SET %s, _dp_hash = excluded._dp_hash") % (
            C.join("{c}"), C.join("s.{c}"), kl,
            ", ".join("%s = excluded.%s" % (qi(c), qi(c)) for c in C.cols if c not in keys) or "%s = excluded.%s" % (
                qi(keys[0]), qi(keys[0])))})
        steps.append({"if": "NOT @@dist@@", "sql": (
            "MERGE INTO @@target@@ t USING pg_temp._dp_s s ON %s "
            "WHEN MATCHED AND s._dp_w < 0 THEN DELETE "
            "WHEN MATCHED THEN UPDATE SET %s, _dp_hash = s._dp_hash "
            "WHEN NOT MATCHED AND s._dp_w > 0 THEN INSERT (%s, _dp_hash) VALUES (%s, s._dp_hash)") % (
            " AND ".join("t.%s = s.%s" % (qi(k), qi(k)) for k in keys), C.join("{c} = s.{c}", sets),
            C.join("{c}"), C.join("s.{c}"))})
        steps.append({"sql": (
            "SELECT count(*) FILTER (WHERE _dp_old IS NULL) AS ins, "
            "count(*) FILTER (WHERE _dp_old IS NOT NULL AND _dp_w > 0) AS upd, count(*) FILTER (WHERE _dp_w < 0) AS del, "
            "coalesce(sum(_dp_hash) FILTER (WHERE _dp_w > 0), 0) - coalesce(sum(_dp_old), 0) AS dsum, "
            "count(*) FILTER (WHERE _dp_old IS NULL) - count(*) FILTER (WHERE _dp_w < 0) AS dcnt FROM pg_temp._dp_s"),
            "into": True})
        steps.append({"sql": "ALTER TABLE pg_temp._dp_s RENAME TO @@ctab_t@@"})
        steps.append(_kept_view(C, "_dp_w > 0"))
    steps.append(_restore_settings())
    steps[-1]["phase"] = "apply"
    return steps


def _kept_view(C: _Cols, new_cond: str, net: bool = False) -> dict:
    """The view of the kept delta: old rows -1, new rows +1 (visible columns). net: without the groups whose
    visible columns did not change (only a hidden count or sum did: a DISTINCT value whose count went from 3
    to 4 is no change downstream); compared as text, which every type has."""
    same = ("ROW(%s)::text = ROW(%s)::text" % (C.join("{o}", C.vis), C.join("{c}", C.vis))) if net else "false"
    return {"sql": ("CREATE TEMP VIEW @@ctab@@ AS SELECT %s, -1::bigint AS _dp_w FROM pg_temp.@@ctab_t@@ "
                    "WHERE _dp_old IS NOT NULL AND NOT (%s AND %s) "
                    "UNION ALL SELECT %s, 1::bigint FROM pg_temp.@@ctab_t@@ WHERE %s AND NOT (_dp_old IS NOT NULL AND %s)") % (
        C.join("{o} AS {c}", C.vis), new_cond, same, C.join("{c}", C.vis), new_cond, same)}


# ------------------------------------------------------------------ aggregate / distinct
def _aggregate(C: _Cols, delta_sql: str, state_sql: str, spec: dict) -> list[dict]:
    """Hidden _dp_cnt, _dp_s<j>, _dp_n<j>, _dp_gh per group: the group deltas of the input's change
    (pg_temp._dp_gd) joined with the groups' state give each affected group's new state (pg_temp._dp_s or,
    without min/max, directly the changed groups pg_temp._dp_z), applied where the groups' rows are."""
    cols, keys = C.cols, C.keys
    gcols = [g["col"] for g in sorted(spec.get("groups", []), key=lambda g: int(g["g"]))]
    aggs = spec.get("aggs", [])
    hasmm = any(a["fn"] in ("min", "max") for a in aggs)
    nogroup = "true" if spec.get("nogroup") else "false"
    ng = range(len(gcols))

    def gh(alias: str) -> str:
        return "hashtextextended(ROW(%s)::text, 0)" % ", ".join("%s._dp_g%d::%s" % (alias, k, C.t(gcols[k])) for k in ng)

    def gnull(alias: str) -> str:
        return " OR ".join("%s._dp_g%d IS NULL" % (alias, k) for k in ng)

    steps: list[dict] = []
    # sums are kept from the changes only when exact: a sum of floating-point values drifts from its
    # recompute (0.1 + 0.2 - 0.1 is not 0.2); sums of other types (interval, money) have no state here
    steps.append({"sql": (
        "SELECT format('sum or avg of %%s values: not maintained from changes (not exact)', "
        "string_agg(DISTINCT format_type(a.atttypid, a.atttypmod), ', ')) AS fallback FROM pg_attribute a "
        "WHERE a.attrelid = @@target_lit@@::regclass AND a.attname ~ '^_dp_s[0-9]+$' AND NOT a.attisdropped "
        "AND a.atttypid NOT IN ('numeric'::regtype, 'bigint'::regtype, 'integer'::regtype, 'smallint'::regtype) "
        "HAVING count(*) > 0"), "into": True})
    # hashable: every group column hashes by value; keyidx: the table has an index on the hash of the
    # group columns' values (hash_record_extended), which equal values share
    steps.append({"sql": (
        "SELECT NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = @@target_lit@@::regclass "
        "AND a.attname IN (%s) AND NOT deltapipe._hashes_by_value(a.atttypid)) AS hashable, "
        "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = @@target_lit@@::regclass AND i.indexprs IS NOT NULL "
        "AND pg_get_indexdef(i.indexrelid) LIKE '%%hash_record_extended(ROW(%%') AS keyidx") % ", ".join(lit(g) for g in gcols),
        "into": True})
    # a delta of at least a tenth of the table's size joins the table by hash on the group columns
    # themselves (=, NULL-safe by a second branch for groups with a NULL column, matched by group hash)
    # when all of them hash: the group hash is then computed only for new groups
    steps.append({"sql": "SELECT @@hashable@@ AND @@total_d@@ * 10 >= @@row_count@@ AS eqj", "into": True})
    da = ""
    for a in aggs:
        j, fn = str(a.get("a")), a["fn"]
        if fn in ("sum", "avg"):
            # (a weight of 1 or -1 adds or subtracts the value: a numeric product per row costs more)
            da += (", sum(CASE WHEN _dp_w = 1 THEN _dp_a{j} WHEN _dp_w = -1 THEN -_dp_a{j} ELSE _dp_w * _dp_a{j} END) AS ds{j}"
                   ", sum(_dp_w::int) FILTER (WHERE _dp_a{j} IS NOT NULL) AS dn{j}").format(j=j)
        elif fn == "count":
            da += ", sum(_dp_w::int) FILTER (WHERE _dp_a{j} IS NOT NULL) AS dn{j}".format(j=j)
        elif fn in ("min", "max"):
            da += (", {fn}(_dp_a{j}) FILTER (WHERE _dp_w > 0) AS dm{j}, {fn}(_dp_a{j}) FILTER (WHERE _dp_w < 0) AS dx{j}"
                   ).format(j=j, fn=fn)
    gl = ", ".join("_dp_g%d" % k for k in ng)
    gd = ("CREATE TEMP TABLE _dp_gd AS SELECT g.*, %s AS _dp_gh FROM (SELECT %s, sum(_dp_w::int) AS dc%s "
          "FROM (%s) _dp_q GROUP BY %s) g")
    steps.append({"sql": "DROP TABLE IF EXISTS pg_temp._dp_gd, pg_temp._dp_s, pg_temp._dp_z, pg_temp._dp_new"})
    steps.append({"if": "@@eqj@@", "sql": gd % ("CASE WHEN %s THEN %s END" % (gnull("g"), gh("g")), gl, da, delta_sql, gl),
                  "count": "nd"})
    steps.append({"if": "NOT @@eqj@@", "sql": gd % (gh("g"), gl, da, delta_sql, gl), "count": "nd"})
    steps.append({"sql": "SELECT NOT @@eqj@@ AND @@nd@@ * 10 < @@row_count@@ AS probe", "into": True})
    # its size for the state statement's plan: joined with the table by hash, the group deltas are the
    # side hashed when they are the smaller
    steps += _analyze("pg_temp._dp_gd", "NOT @@probe@@")

    gmatch = " AND ".join("o.%s IS NOT DISTINCT FROM d._dp_g%d" % (qi(gcols[k]), k) for k in ng)

    def state(ek: bool) -> tuple[dict, dict]:
        """Expressions for every column from old state o and group delta d (ek: groups matched by value
        keep their stored values and hash: equal values may differ in their text, as 1.0 and 1.00 do);
        and those computed over the new state's columns i.* (count, sum and avg, expressions)."""
        expr = {"_dp_cnt": "coalesce(o._dp_cnt, 0) + d.dc",
                "_dp_gh": "coalesce(o._dp_gh, d._dp_gh, %s)" % gh("d") if ek else "d._dp_gh"}
        for k in ng:
            expr[gcols[k]] = ("CASE WHEN o._dp_gh IS NULL THEN d._dp_g%d ELSE o.%s END" % (k, qi(gcols[k]))) if ek \
                else "d._dp_g%d" % k
        for a in aggs:
            j = str(a.get("a"))
            if a["fn"] in ("sum", "avg"):
                expr["_dp_n" + j] = "coalesce(o._dp_n{j}, 0) + coalesce(d.dn{j}, 0)".format(j=j)
                expr["_dp_s" + j] = ("CASE WHEN coalesce(o._dp_n{j}, 0) + coalesce(d.dn{j}, 0) = 0 THEN NULL "
                                     "ELSE coalesce(o._dp_s{j}, 0) + coalesce(d.ds{j}, 0) END").format(j=j)
            elif a["fn"] == "count":
                expr["_dp_n" + j] = "coalesce(o._dp_n{j}, 0) + coalesce(d.dn{j}, 0)".format(j=j)
        dexpr = {a["col"]: a["sql"] for a in aggs if a["fn"] == "expr"}
        for a in aggs:
            j, fn, col = str(a.get("a")), a["fn"], a.get("col")
            if fn in ("count_star", "count", "sum", "avg") and col is not None:
                dexpr[col] = {"count_star": "i._dp_cnt", "count": "i._dp_n%s" % j, "sum": "i._dp_s%s" % j,
                              "avg": "(i._dp_s{j})::numeric / nullif(i._dp_n{j}, 0)".format(j=j)}[fn]
        for a in aggs:
            j, fn, col = str(a.get("a")), a["fn"], a.get("col")
            if fn == "expr" or col is None:
                continue
            if fn == "count_star":
                expr[col] = expr["_dp_cnt"]
            elif fn == "count":
                expr[col] = expr["_dp_n" + j]
            elif fn == "sum":
                expr[col] = expr["_dp_s" + j]
            elif fn == "avg":
                expr[col] = "((%s)::numeric / nullif(%s, 0))" % (expr["_dp_s" + j], expr["_dp_n" + j])
            else:
                expr[col] = "CASE WHEN d.dx%s %s o.%s THEN NULL ELSE %s(o.%s, d.dm%s) END" % (
                    j, "<=" if fn == "min" else ">=", qi(col), "least" if fn == "min" else "greatest", qi(col), j)
        return expr, dexpr

    # a group recomputes its min (max) only when it lost a value not above (below) its old min (max), or
    # lost a value while it had no extreme (a new group, or one of NULLs only: the change of a join whose
    # two sides changed holds pairs of rows (+v, -v) that cancel, whose +v is not a new value of the group)
    gmm = " OR ".join("coalesce(d.dx%s %s o.%s, d.dx%s IS NOT NULL)" % (
        a["a"], "<=" if a["fn"] == "min" else ">=", qi(a["col"]), a["a"]) for a in aggs if a["fn"] in ("min", "max")) or "false"
    ocols = [c for c in cols if keys is not None or c in C.vis]   # the old row's columns kept

    def state_query(variant: str, dist: bool = False) -> str:
        """The new state of every affected group with its old row (_dp_o<k>, _dp_old) and where that row
        is (_dp_ctid: the apply goes there directly; nothing else writes a model's table while its node
        runs); then the counts, sums and averages shown from the new state (each level apart, OFFSET 0)."""
        expr, dexpr = state(variant in ("eqj", "keyidx"))
        # (a table Citus distributes: no row positions, which it does not route; its groups are written by key)
        q = ("SELECT %s, %s AS _dp_k_gh, %s, o._dp_hash AS _dp_old, " + ("NULL::tid" if dist else "o.ctid")
             + " AS _dp_ctid, %s, %s AS _dp_re FROM pg_temp._dp_gd d LEFT JOIN @@target@@ o ON @ON@") % (
            ", ".join("(%s)::%s AS %s" % (expr[c], C.t(c), qi(c)) for c in cols if c not in dexpr),
            expr["_dp_gh"], ", ".join("d._dp_g%d AS _dp_k%d" % (k, k) for k in ng),
            C.join("o.{c} AS {o}", ocols), gmm)
        if variant == "eqj":
            q = (q.replace("@ON@", " AND ".join("o.%s = d._dp_g%d::%s" % (qi(gcols[k]), k, C.t(gcols[k])) for k in ng))
                 + " WHERE NOT (%s) UNION ALL " % gnull("d")
                 + q.replace("@ON@", "o._dp_gh = d._dp_gh AND %s" % gmatch) + " WHERE (%s)" % gnull("d"))
        elif variant == "keyidx":
            q = q.replace("@ON@", "hash_record_extended(ROW(%s), 0) = hash_record_extended(ROW(%s), 0) AND %s" % (
                ", ".join("o.%s" % qi(g) for g in gcols),
                ", ".join("d._dp_g%d::%s" % (k, C.t(gcols[k])) for k in ng), gmatch))
        else:
            q = q.replace("@ON@", "o._dp_gh = d._dp_gh AND %s" % gmatch)
        return "SELECT %s, i._dp_k_gh, %s, i._dp_old, i._dp_ctid, %s, i._dp_re FROM (%s OFFSET 0) i OFFSET 0" % (
            ", ".join(("(%s)::%s AS %s" % (dexpr[c], C.t(c), qi(c))) if c in dexpr else "i.%s" % qi(c) for c in cols),
            ", ".join("i._dp_k%d" % k for k in ng), ", ".join("i.%s" % C.o(c) for c in ocols), q)

    sk = ", ".join("s._dp_k%d" % k for k in ng)
    so = C.join("s.{o}", ocols)

    def zsel(src: str) -> str:
        """The changed groups: old row, new row and its hash (NULL: the group is gone; without GROUP BY
        the one group's row stays when its input is empty)."""
        return ("CREATE TEMP TABLE _dp_z AS SELECT * FROM (SELECT s._dp_k_gh, %s, s._dp_old, s._dp_ctid, %s, %s, "
                "CASE WHEN s._dp_cnt > 0 OR %s THEN hashtextextended(ROW(%s)::text, 0) END AS _dp_hash "
                "FROM %s s OFFSET 0) z WHERE z._dp_old IS DISTINCT FROM z._dp_hash") % (
            sk, so, C.join("s.{c}"), nogroup, C.join("s.{c}"), src)

    variants = [("eqj", "@@eqj@@"), ("keyidx", "NOT @@eqj@@ AND @@keyidx@@"), ("gh", "NOT @@eqj@@ AND NOT @@keyidx@@")]
    steps.append(_probe_settings())
    for (variant, cond), dist in [(v, d) for v in variants for d in (False, True)]:
        cond = "%s AND %s@@dist@@" % (cond, "" if dist else "NOT ")
        if hasmm:
            steps.append({"if": cond, "sql": "CREATE TEMP TABLE _dp_s AS " + state_query(variant, dist)})
        else:
            # no min/max: one statement from the group deltas to the changed groups
            steps.append({"if": cond, "sql": zsel("(%s)" % state_query(variant, dist))})
    steps.append(_restore_settings())
    if hasmm:
        # groups that lost rows under min/max are recomputed from the inputs (only then is the state
        # statement run at all); a few such groups are named by value too (r.g IS NOT DISTINCT FROM 'v'), a
        # filter the planner pushes below the state statement's GROUP BY
        steps.append({"sql": "SELECT EXISTS (SELECT 1 FROM pg_temp._dp_s WHERE _dp_re) AS anyre", "into": True})
        tmpl = "(" + " AND ".join("r.%s IS NOT DISTINCT FROM %%L::%s" % (qi(gcols[k]).replace("%", "%%"), C.t(gcols[k]))
                                  for k in ng) + ")"
        steps.append({"if": "@@anyre@@", "into": True, "sql": (
            "SELECT CASE WHEN count(*) <= 100 THEN string_agg(format(%s, %s), ' OR ') ELSE 'true' END AS gpred "
            "FROM pg_temp._dp_s WHERE _dp_re") % (lit(tmpl), ", ".join("_dp_k%d" % k for k in ng))})
        # a recomputed group keeps the values and hash of its key that the group's row has (its key may be
        # written otherwise in the rows it has left: 1.0, 1.00); found by the values of its group columns
        # (equal values hash alike), else by the hash of their text
        rc = ", ".join(("s.%s" % qi(c)) if c in gcols or c == "_dp_gh" else "r.%s::%s" % (qi(c), C.t(c)) for c in cols)
        same = "".join(" AND r.%s IS NOT DISTINCT FROM s._dp_k%d" % (qi(gcols[k]), k) for k in ng)
        by_value = "hash_record_extended(ROW(%s), 0) = hash_record_extended(ROW(%s), 0)" % (
            ", ".join("r.%s" % qi(g) for g in gcols), ", ".join("s._dp_k%d::%s" % (k, C.t(gcols[k])) for k in ng))
        new = ("CREATE TEMP TABLE _dp_new AS SELECT x.*, hashtextextended(ROW(%s)::text, 0) AS _dp_hash FROM ("
               "SELECT %s FROM pg_temp._dp_s s WHERE NOT s._dp_re UNION ALL "
               "SELECT %s FROM (%s) r JOIN pg_temp._dp_s s ON s._dp_re AND %s WHERE (@@gpred@@)) x "
               "WHERE x._dp_cnt > 0 OR %s")
        steps.append({"if": "@@anyre@@ AND @@hashable@@",
                      "sql": new % (C.join("x.{c}"), C.join("s.{c}"), rc, state_sql, by_value + same, nogroup)})
        steps.append({"if": "@@anyre@@ AND NOT @@hashable@@",
                      "sql": new % (C.join("x.{c}"), C.join("s.{c}"), rc, state_sql, "r._dp_gh = s._dp_k_gh" + same, nogroup)})
        steps.append({"if": "@@anyre@@", "sql": (
            "CREATE TEMP TABLE _dp_z AS SELECT s._dp_k_gh, %s, s._dp_old, s._dp_ctid, %s, n.* FROM pg_temp._dp_s s "
            "LEFT JOIN pg_temp._dp_new n ON n._dp_gh = s._dp_k_gh AND %s WHERE s._dp_old IS DISTINCT FROM n._dp_hash") % (
            sk, so, " AND ".join("n.%s IS NOT DISTINCT FROM s._dp_k%d" % (qi(gcols[k]), k) for k in ng))})
        steps.append({"if": "NOT @@anyre@@", "sql": zsel("pg_temp._dp_s")})
    steps[-1]["phase"] = "delta"
    # the log: one row per changed group (the new row NULL when the group is gone)
    steps.append({"sql": C.log_insert() + (
        "SELECT @@lseq@@, @@run@@, CASE WHEN z._dp_old IS NULL THEN 'I' WHEN z._dp_hash IS NULL THEN 'D' ELSE 'U' END, "
        "%s, %s FROM pg_temp._dp_z z") % (C.join("CASE WHEN z._dp_hash IS NOT NULL THEN z.{c} END", C.lcols), C.log_old("z")),
        "count": "ncs"})
    # the changed groups' rows are updated or deleted where the state statement found them (by ctid: no
    # second join with the table), new groups inserted
    steps.append({"sql": "SELECT %s" % _guc("enable_hashjoin", "'off'")})
    # (a table Citus distributes: the changed groups' rows deleted by key, their new rows inserted, each
    # statement routed shard by shard; its key is its GROUP BY columns)
    steps.append({"if": "@@dist@@", "sql": "DELETE FROM @@target@@ t WHERE (%s) IN (SELECT %s FROM pg_temp._dp_z s "
                                           "WHERE s._dp_old IS NOT NULL)" % (
                      ", ".join("t.%s" % qi(g) for g in gcols), ", ".join("s._dp_k%d" % k for k in ng))})
    steps.append({"if": "@@dist@@", "sql": "INSERT INTO @@target@@ (%s, _dp_hash) SELECT %s, s._dp_hash FROM pg_temp._dp_z s "
                                           "WHERE s._dp_hash IS NOT NULL" % (C.join("{c}"), C.join("s.{c}"))})
    steps.append({"if": "NOT @@dist@@", "sql": (
        "WITH u AS (UPDATE @@target@@ t SET %s, _dp_hash = s._dp_hash FROM pg_temp._dp_z s "
        "WHERE t.ctid = s._dp_ctid AND s._dp_hash IS NOT NULL), "
        "d AS (DELETE FROM @@target@@ t USING pg_temp._dp_z s WHERE t.ctid = s._dp_ctid AND s._dp_hash IS NULL) "
        "INSERT INTO @@target@@ (%s, _dp_hash) SELECT %s, s._dp_hash FROM pg_temp._dp_z s "
        "WHERE s._dp_ctid IS NULL AND s._dp_hash IS NOT NULL") % (C.join("{c} = s.{c}"), C.join("{c}"), C.join("s.{c}"))})
    steps.append(_restore_settings())
    steps.append({"sql": (
        "SELECT count(*) FILTER (WHERE _dp_old IS NULL) AS ins, "
        "count(*) FILTER (WHERE _dp_old IS NOT NULL AND _dp_hash IS NOT NULL) AS upd, "
        "count(*) FILTER (WHERE _dp_hash IS NULL) AS del, "
        "coalesce(sum(_dp_hash), 0) - coalesce(sum(_dp_old), 0) AS dsum, "
        "count(*) FILTER (WHERE _dp_old IS NULL) - count(*) FILTER (WHERE _dp_hash IS NULL) AS dcnt FROM pg_temp._dp_z"),
        "into": True})
    steps.append({"sql": "ALTER TABLE pg_temp._dp_z RENAME TO @@ctab_t@@"})
    steps.append(_kept_view(C, "_dp_hash IS NOT NULL", net=True))
    steps[-1]["phase"] = "apply"
    return steps
