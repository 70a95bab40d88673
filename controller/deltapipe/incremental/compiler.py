"""Classify a model with sqlglot and compile its delta statements (DBSP-style, at deploy time).

A model is maintained incrementally when its SELECT is built from:
- filter / projection / UNION ALL / inner equi-joins of upstream tables, CTEs and
  derived tables of the same kind (shape "linear");
- one top-level GROUP BY with count(*), count(x), sum, avg, min, max over such an
  input (shape "aggregate"), or a top-level SELECT DISTINCT (shape "distinct").

The compiled delta statement (``delta_sql``) is a SELECT returning the change of
the model (linear) or of the aggregate's input rows (aggregate/distinct) as rows
with a weight ``_dp_w`` (+n inserted copies, -n deleted copies). It reads, for
upstream ``delta_inputs[i]``, the temp table ``pg_temp._dp_d_<i>`` (that
upstream's net change since the model last consumed it, built by
deltapipe._input_delta) and the upstream tables themselves in their post-change
state. A join of n inputs gives n terms, level by level:
dA⋈B' + A_old⋈dB (A_old: A' plus dA with negated weights), so its SQL grows linearly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from deltapipe.incremental.affected import _own, compile_affected
from deltapipe.incremental.errors import NotIncremental, _short, _line  # noqa: F401
from deltapipe.incremental.keys import choose_key

AGGS = {exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max"}
VOLATILE = {"random", "now", "clock_timestamp", "statement_timestamp", "timeofday", "nextval", "gen_random_uuid",
            "uuid_generate_v4", "txid_current", "setseed"}
VOLATILE_NODES = (exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime, exp.Rand)


@dataclass
class Compiled:
    incremental: bool
    why_full: str | None = None
    shape: str | None = None
    delta_sql: str | None = None
    delta_inputs: list[str] = field(default_factory=list)
    state_sql: str | None = None
    hidden_cols: list[str] = field(default_factory=list)
    agg_spec: dict | None = None
    columns: list[str] | None = None       # output column names (as PostgreSQL names them)
    key: list[str] | None = None           # the model's key: declared, or inferred from the query
    key_inferred: bool = False
    program: dict | None = None            # affected-key refresh: keys_sql, restricted_sql, restrict_col, indexes


def _pg_name(e: exp.Expression) -> str | None:
    """The column name PostgreSQL gives a projection, when it is simple to know."""
    if isinstance(e, exp.Alias):
        return e.alias
    if isinstance(e, exp.Column):
        return e.name
    for cls, name in AGGS.items():
        if type(e) is cls:
            return name
    return None


COMPILER_VERSION = "13"   # part of every compile key: a new compiler recompiles every model once


def compile_model(sql: str, tables: dict[tuple[str, str], tuple[str, str, str]],
                  columns: dict[str, list[str] | None], text: str | None = None,
                  keys: dict[str, list[str] | None] | None = None, declared_key: list[str] | None = None,
                  types: dict[str, dict[str, str]] | None = None) -> Compiled:
    """Compile one model.

    tables: (schema or '', table) as read by the SQL -> (upstream name, kind, qualified table "schema"."table")
    columns: upstream name -> its visible column names (None entries mean unknown)
    keys: upstream name -> its key columns (None: keyless or unknown)
    declared_key: the model's `-- key:` header; without it, a key the query determines is inferred
    types: upstream name -> {column: PostgreSQL type} where known (datasets; built models)
    """
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
        _refuse(tree)
        q_full, names, ctx = _prepare(tree, tables, columns, types)
    except NotIncremental as e:
        return Compiled(False, str(e), columns=_output_names_safe(sql), key=list(declared_key or []) or None)
    except (OptimizeError, SqlglotError) as e:
        return Compiled(False, "cannot resolve the query's columns (%s)" % str(e).splitlines()[0],
                        key=list(declared_key or []) or None)
    key = list(declared_key) if declared_key else choose_key(q_full, ctx, keys or {})
    inferred = not declared_key and bool(key)
    why = None
    topn = _compile_topn(q_full, names, ctx)
    if topn is not None:
        topn.key, topn.key_inferred = key or None, inferred
        return topn
    if key:
        from deltapipe.incremental.dedupe import compile_dedupe
        try:
            dd = compile_dedupe(q_full, names, ctx, key)
        except NotIncremental:
            dd = None
        if dd is not None:
            return Compiled(True, shape="dedupe", delta_sql=dd["delta_sql"], delta_inputs=list(ctx.inputs), columns=names,
                            key=key, key_inferred=inferred, program=dd["program"], state_sql=dd["state_sql"],
                            hidden_cols=dd["hidden"])
    try:
        _template_checks(tree)
        q = q_full.copy()
        q.set("with_", None)
        q.set("with", None)
        c = _compile_template(q, names, ctx)
        if ctx.semis_used and key:
            # a semi-join's delta looks at every outer row of the keys its subquery's change touches, twice
            # (before and after); with a key, the affected-key rule does that once: preferred
            try:
                prog = compile_affected(q_full, names, ctx, key)
                return Compiled(True, shape="keys", delta_inputs=list(ctx.inputs), columns=names, key=key,
                                key_inferred=inferred, program=prog)
            except NotIncremental:
                pass
        if c.shape in ("aggregate", "distinct") and key and c.agg_spec:
            gcols = [g["col"] for g in c.agg_spec.get("groups", [])]
            if gcols and set(key) != set(gcols):
                # a group that moves (e.g. its country changes) is a delete and an insert under one
                # key: the group state cannot be kept by key; the affected-key rule below can
                raise NotIncremental("key (%s) is not the GROUP BY columns (%s)" % (", ".join(key), ", ".join(gcols)))
        c.key, c.key_inferred = key or None, inferred
        if ctx.indexes and c.shape in ("linear", "aggregate", "distinct"):
            c.program = {**(c.program or {}), "indexes": ctx.indexes}
        if ctx.guards:
            ops = []
            for g in ctx.guards:
                line = ("NOT IN at line %s: NOT EXISTS while its subquery's NULLs and emptiness do not change "
                        "(checked from its change), else a full refresh" % g["line"]) if g.get("what") else (
                    "scalar subquery at line %s: a constant while its value does not change (checked from its "
                    "input's change); a change of its value refreshes in full" % g["line"])
                if line not in ops:
                    ops.append(line)
            c.program = {**(c.program or {}), "guards": ctx.guards, "operators": ops}
        return c
    except NotIncremental as e:
        why = str(e)
    if key:
        try:
            prog = compile_affected(q_full, names, ctx, key)
            return Compiled(True, shape="keys", delta_inputs=list(ctx.inputs), columns=names, key=key,
                            key_inferred=inferred, program=prog)
        except NotIncremental as e:
            why = str(e)
    else:
        # no key: the affected-key rule by a column that may be NULL (the GROUP BY columns first), the
        # rows of the affected values compared whole
        try:
            prog = compile_affected(q_full, names, ctx, None, nullable=True)
            return Compiled(True, shape="keys", delta_inputs=list(ctx.inputs), columns=names, key=None,
                            key_inferred=False, program=prog)
        except NotIncremental:
            pass
        why = "%s (no key: a `-- key:` header allows an affected-key refresh)" % why
    return Compiled(False, why, columns=names, key=key or None, key_inferred=inferred)


def _old_cond(sj: dict, exists_old: str) -> str:
    """A semi-join's condition before the change, from whether the outer row had a match then."""
    ni = sj.get("notin")
    if ni:   # (the guards hold the subquery's NULLs and emptiness as they are now)
        return "(CASE WHEN %s THEN false WHEN %s THEN true ELSE (%s IS NOT NULL AND NOT %s) END)" % (
            ni["has_null"], ni["empty"], ni["x"].sql("postgres"), exists_old)
    return "(NOT %s)" % exists_old if sj["neg"] else exists_old


def _conjuncts(e: exp.Expression) -> list[exp.Expression]:
    """The AND-ed conditions of e (parentheses looked through), in order."""
    while isinstance(e, exp.Paren):
        e = e.this
    if isinstance(e, exp.And):
        return _conjuncts(e.this) + _conjuncts(e.expression)
    return [e]


def _within(node: exp.Expression | None, root: exp.Expression) -> bool:
    while node is not None:
        if node is root:
            return True
        node = node.parent
    return False


def _compile_topn(q, names, ctx) -> Compiled | None:
    """`SELECT ... FROM one_table [WHERE ...] ORDER BY ... LIMIT n` (shape "topn"): its change is its first n
    rows now (weight +1) against the table's rows (weight -1), netted: the refresh reads the input's first n
    rows, by an index on its first ORDER BY column, not the tables under it. A top-N over joins or aggregates
    is split into such a model and its input at parse time (deltapipe.incremental.split)."""
    if not isinstance(q, exp.Select) or not q.args.get("limit") or not q.args.get("order"):
        return None
    frm = q.args.get("from_")
    if frm is None or not isinstance(frm.this, exp.Table) or q.args.get("joins") or q.args.get("group") \
            or q.args.get("having") or q.args.get("distinct") or (q.args.get("with_") or q.args.get("with")):
        return None
    if any(isinstance(x, (exp.AggFunc, exp.Window, exp.Subquery, exp.Exists)) for x in q.walk()):
        return None
    if isinstance(frm.this, exp.Table) and frm.this.name in ctx.ctes:
        return None
    r = ctx.resolve(frm.this)
    if r is None:
        return None
    limit = q.args["limit"]
    n = limit.args.get("expression") if isinstance(limit, exp.Limit) else limit.args.get("count")
    if not isinstance(n, exp.Literal) or n.is_string:
        return None
    body = ctx.resolve_all(q)
    for i, p in enumerate(body.selects):
        p.replace(exp.alias_(p.unalias(), names[i], quoted=True))
    cl = ", ".join(exp.to_identifier(c, quoted=True).sql("postgres") for c in names)
    delta = ('SELECT %s, 1 AS "_dp_w" FROM (%s) AS "_dp_n" UNION ALL SELECT %s, -1 AS "_dp_w" FROM @SELF@'
             % (", ".join('"_dp_n".%s' % exp.to_identifier(c, quoted=True).sql("postgres") for c in names),
                body.sql("postgres"), cl))
    first = q.args["order"].expressions[0].this
    indexes = []
    if isinstance(first, exp.Column) and isinstance(first.this, exp.Identifier):
        indexes.append({"table": r[1], "column": first.name})
    order = re.sub(r'"([a-z_][a-z0-9_$]*)"', r"\1", ", ".join(o.sql("postgres") for o in q.args["order"].expressions))
    ops = ["ORDER BY %s LIMIT %s: the first %s rows of %s%s, compared with the table's"
           % (_short(order), n.sql("postgres"), n.sql("postgres"), r[0],
              " (by an index on %s)" % first.name if indexes else "")]
    # (no input's change is read: the first n rows are read from the input as it is now)
    return Compiled(True, shape="topn", delta_sql=delta, delta_inputs=[], columns=names,
                    program={"indexes": indexes, "operators": ops, "input": r[0]})


def _output_names_safe(sql: str) -> list[str] | None:
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
        names = [_pg_name(p) for p in tree.selects]
        return None if any(n is None or n == "*" for n in names) else names
    except Exception:  # noqa: BLE001
        return None


def _refuse(tree: exp.Expression) -> None:
    """Constructs no rule maintains: their result is not a function of the inputs' rows."""
    for node in tree.walk():
        if isinstance(node, VOLATILE_NODES) or (isinstance(node, exp.Anonymous) and node.name.lower() in VOLATILE):
            raise NotIncremental("non-deterministic function %s" % (node.sql("postgres").split("(")[0]), node)
        if isinstance(node, exp.Lateral):
            raise NotIncremental("LATERAL", node)
        if isinstance(node, exp.With) and node.args.get("recursive"):
            raise NotIncremental("WITH RECURSIVE", node)


def _template_checks(tree: exp.Expression) -> None:
    """Constructs the z-set templates (linear, aggregate, distinct) do not cover."""
    for node in tree.walk():
        if isinstance(node, exp.Window):
            raise NotIncremental("window function", node)
        if isinstance(node, (exp.Intersect, exp.Except)):
            raise NotIncremental(node.key.upper(), node)
        if isinstance(node, exp.Union) and node.args.get("distinct"):
            raise NotIncremental("UNION without ALL (use UNION ALL)", node)


def _sqlglot_type(t: str | None) -> str:
    """A PostgreSQL type name as sqlglot's schema takes it (unknown types: text, which checks nothing)."""
    if not t:
        return "text"
    try:
        exp.DataType.build(t, dialect="postgres")
        return t
    except Exception:  # noqa: BLE001
        return "text"


def _prepare(tree, tables, columns, types=None):
    """The qualified query (stars expanded, CTEs kept), its output names and the compile context."""
    schema: dict = {}
    inputs: list[str] = []
    for (sch, tbl), (up, kind, _qual) in tables.items():
        if kind == "external":
            line = _table_line(tree, tbl)
            raise NotIncremental("reads external table %s (no change log)" % (("%s.%s" % (sch, tbl)) if sch else tbl),
                                 line=line)
        cols = columns.get(up)
        if cols is None:
            raise NotIncremental("the columns of %s are not known" % up)
        typ = (types or {}).get(up) or {}
        schema.setdefault('"%s"' % (sch or "_dp_default"), {})['"%s"' % tbl] = {
            '"%s"' % c: _sqlglot_type(typ.get(c)) for c in cols}
        if up not in inputs:
            inputs.append(up)
    top_names = []
    for p in tree.selects:
        if isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star)):
            top_names = None
            break
        n = _pg_name(p)
        if n is None:
            raise NotIncremental("give the expression %s a name (AS name)" % _short(p.sql("postgres")), p)
        top_names.append(n)
    try:
        q = qualify(tree.copy(), schema=MappingSchema(schema, dialect="postgres") if schema else None,
                    dialect="postgres", quote_identifiers=True, expand_stars=True, validate_qualify_columns=True,
                    db="_dp_default")
    except OptimizeError as e:
        raise NotIncremental("cannot resolve columns: %s" % str(e).splitlines()[0]) from e
    try:   # types of expressions, where the inputs' column types are known (aggregates check them)
        from sqlglot.optimizer.annotate_types import annotate_types
        annotate_types(q, schema=MappingSchema(schema, dialect="postgres") if schema else None, dialect="postgres")
    except Exception:  # noqa: BLE001 - best effort: an unknown type is checked again at refresh
        pass
    if top_names is None:
        top_names = [p.alias_or_name for p in q.selects]
    if len(top_names) != len(q.selects):
        raise NotIncremental("cannot resolve the output columns")
    ctes = {}
    w = q.args.get("with_") or q.args.get("with")
    if w:
        for cte in w.expressions:
            ctes[cte.alias] = cte.this
    return q, top_names, _Ctx(tables, inputs, ctes, columns)


def _compile_template(q, top_names, ctx) -> Compiled:
    inputs = ctx.inputs
    if isinstance(q, exp.Select) and (q.args.get("group") or q.args.get("distinct")
                                      or any(isinstance(p.unalias(), tuple(AGGS)) for p in q.selects)
                                      or any(_own(q, a) for a in q.find_all(*AGGS))):
        return _compile_aggregate(q, top_names, ctx)
    for i, p in enumerate(q.selects):
        p.replace(exp.alias_(p.unalias(), top_names[i], quoted=True))
    delta = ctx.delta(q)
    return Compiled(True, shape="linear", delta_sql=delta.sql("postgres"), delta_inputs=inputs, columns=top_names)


INEXACT = {exp.DataType.Type.DOUBLE: "double precision", exp.DataType.Type.FLOAT: "real",
           exp.DataType.Type.INTERVAL: "interval", exp.DataType.Type.MONEY: "money"}


def _inexact(arg) -> str | None:
    """The type's name when an aggregate argument is known (from the inputs' column types) to be of a type
    whose running sum is not exact or has no state here."""
    t = getattr(arg, "type", None)
    if isinstance(arg, exp.Sub):   # timestamp - timestamp is an interval (sqlglot does not infer it)
        lt, rt = getattr(arg.left, "type", None), getattr(arg.right, "type", None)
        times = {exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIMESTAMPLTZ}
        if isinstance(lt, exp.DataType) and isinstance(rt, exp.DataType) and lt.this in times and rt.this in times:
            return "interval"
    return INEXACT.get(t.this) if isinstance(t, exp.DataType) else None


def _table_line(tree, tbl: str) -> int | None:
    for t in tree.find_all(exp.Table):
        if t.name.lower() == tbl.lower():
            return _line(t)
    return None


class _Ctx:
    def __init__(self, tables, inputs, ctes, columns=None):
        self.columns = columns or {}
        self.by_table = {}
        for (sch, tbl), (up, _kind, qual) in tables.items():
            self.by_table[(sch, tbl)] = (up, qual)
        self.inputs = inputs
        self.ctes = ctes
        self.guards: list[dict] = []   # scalar subqueries whose value must not change (see scalar_guard)
        self.indexes: list[dict] = []  # input columns a semi-join's delta probes (made at deploy and refresh)
        self.semis_used = False

    def resolve(self, t: exp.Table):
        db = t.args.get("db").name if t.args.get("db") else ""
        key = ("" if db == "_dp_default" else db, t.name)
        if key in self.by_table:
            return self.by_table[key]
        for (sch, tbl), v in self.by_table.items():
            if tbl == t.name and (not key[0] or key[0] == (sch or "public")):
                return v
        return None

    # Δ(node) -> a query with node's columns plus _dp_w
    def delta(self, node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Subquery):
            return self.delta(node.this)
        if isinstance(node, exp.Union):
            left, right = self.delta(node.left), self.delta(node.right)
            return exp.union(left, right, distinct=False)
        if isinstance(node, exp.Select):
            return self._delta_select(node)
        raise NotIncremental("unsupported construct %s" % node.key.upper(), node)

    def resolve_all(self, tree: exp.Expression) -> exp.Expression:
        """A copy of tree with CTE references inlined and upstream tables schema-qualified."""
        def fix(node):
            if isinstance(node, exp.Table) and isinstance(node.parent, (exp.From, exp.Join)):
                return self.post(node)
            return node
        return tree.copy().transform(fix)

    def post(self, item: exp.Expression) -> exp.Expression:
        """The post-change version of a FROM item (CTE references inlined)."""
        if isinstance(item, exp.Table) and item.name in self.ctes and not item.args.get("db"):
            return exp.Subquery(this=self.resolve_all(self.ctes[item.name]),
                                alias=exp.TableAlias(this=exp.to_identifier(item.alias_or_name, quoted=True)))
        if isinstance(item, exp.Table):
            r = self.resolve(item)
            if r is None:
                raise NotIncremental("unknown table %s" % item.name, item)
            t = exp.to_table(r[1], dialect="postgres")
            t.set("alias", exp.TableAlias(this=exp.to_identifier(item.alias_or_name, quoted=True)))
            return t
        return self.resolve_all(item)

    def delta_item(self, item: exp.Expression) -> exp.Expression:
        alias = exp.TableAlias(this=exp.to_identifier(item.alias_or_name, quoted=True))
        if isinstance(item, exp.Table) and item.name in self.ctes and not item.args.get("db"):
            return exp.Subquery(this=self.delta(self.ctes[item.name]), alias=alias)
        if isinstance(item, exp.Table):
            r = self.resolve(item)
            if r is None:
                raise NotIncremental("unknown table %s" % item.name, item)
            t = exp.Table(this=exp.to_identifier("_dp_d_%d" % (self.inputs.index(r[0]) + 1), quoted=True),
                          db=exp.to_identifier("pg_temp"))
            t.set("alias", alias)
            return t
        if isinstance(item, exp.Subquery):
            return exp.Subquery(this=self.delta(item.this), alias=alias)
        raise NotIncremental("unsupported FROM item %s" % item.key.upper(), item)

    def old_item(self, item: exp.Expression) -> exp.Expression:
        """The state before the change of a FROM item, as rows with weights: the item now (weight 1)
        and its change with negated weights."""
        alias = exp.TableAlias(this=exp.to_identifier(item.alias_or_name, quoted=True))
        if isinstance(item, exp.Table) and item.name in self.ctes and not item.args.get("db"):
            body = self.ctes[item.name]
        elif isinstance(item, exp.Subquery):
            body = item.this
        elif isinstance(item, exp.Table):
            r = self.resolve(item)
            if r is None:
                raise NotIncremental("unknown table %s" % item.name, item)
            cols = self.columns.get(r[0])
            if cols is None:
                raise NotIncremental("the columns of %s are not known" % r[0], item)
            cl = ", ".join(exp.to_identifier(c, quoted=True).sql("postgres") for c in cols)
            sql = ('SELECT %s, 1 AS "_dp_w" FROM %s UNION ALL SELECT %s, -"_dp_w" FROM pg_temp."_dp_d_%d"'
                   % (cl, r[1], cl, self.inputs.index(r[0]) + 1))
            return exp.Subquery(this=sqlglot.parse_one(sql, read="postgres"), alias=alias)
        else:
            raise NotIncremental("unsupported FROM item %s" % item.key.upper(), item)
        from deltapipe.incremental.affected import output_names
        cl = ", ".join(exp.to_identifier(c, quoted=True).sql("postgres") for c in output_names(body))
        post = exp.Subquery(this=self.resolve_all(body)).sql("postgres")
        delta = exp.Subquery(this=self.delta(body)).sql("postgres")
        sql = ('SELECT %s, 1 AS "_dp_w" FROM %s AS "_dp_p" UNION ALL SELECT %s, -"_dp_w" FROM %s AS "_dp_m"'
               % (cl, post, cl, delta))
        return exp.Subquery(this=sqlglot.parse_one(sql, read="postgres"), alias=alias)

    def scalar_guard(self, sub: exp.Expression) -> bool:
        """An uncorrelated scalar subquery that aggregates without GROUP BY (exactly one row, e.g.
        `amount > (SELECT avg(amount) FROM t)`) is a constant for the delta rules as long as its value does not
        change: the delta statement evaluates it on the inputs as they are now, and a guard (a statement over
        the change of the subquery's input) says whether its value may have changed, in which case the
        refresh is a full one. Registers the guard; False when sub is not such a subquery."""
        if not isinstance(sub, exp.Subquery) or isinstance(sub.parent, (exp.In, exp.Any, exp.All)):
            return False
        q = sub.this
        if not isinstance(q, exp.Select) or len(q.selects) != 1:
            return False
        for k in ("group", "having", "limit", "offset", "distinct", "order"):
            if q.args.get(k):
                return False
        if q.args.get("with_") or q.args.get("with"):
            return False
        own = [a for a in q.find_all(*AGGS) if _own(q, a)]
        if not own or any(isinstance(x, exp.Window) for x in q.walk()):
            return False
        # uncorrelated: every column names a source of the subquery itself (the query is qualified)
        names = {t.alias_or_name for t in q.find_all(exp.Table)} | {x.alias_or_name for x in q.find_all(exp.Subquery)}
        if any(c.table and c.table not in names for c in q.find_all(exp.Column)):
            return False
        if any(isinstance(x, exp.Subquery) for x in q.walk() if x is not q):
            return False
        conds, args = [], []
        for a in own:
            fn = AGGS[type(a)]
            arg = a.this
            if isinstance(arg, exp.Distinct) or a.args.get("filter") is not None or isinstance(a.parent, exp.Filter):
                return False
            if fn == "count" and (arg is None or isinstance(arg, exp.Star)):
                conds.append('coalesce(sum("_dp_w"), 0) <> 0')
                continue
            j = len(args)
            args.append(exp.alias_(arg.copy(), "_dp_a%d" % j, quoted=True))
            a_ = '"_dp_a%d"' % j
            if fn in ("min", "max"):
                # (not invertible: any change of a value may move it)
                conds.append('coalesce(bool_or("_dp_w" <> 0 AND %s IS NOT NULL), false)' % a_)
            else:
                conds.append('coalesce(sum("_dp_w") FILTER (WHERE %s IS NOT NULL), 0) <> 0' % a_)
                if fn != "count":
                    conds.append('coalesce(sum("_dp_w" * %s), 0) <> 0' % a_)
        inp = q.copy()
        inp.set("expressions", [x.copy() for x in args] or [exp.alias_(exp.Literal.number(1), "_dp_one", quoted=True)])
        try:
            delta = self.delta(inp)
        except NotIncremental:
            return False
        g = {"sql": 'SELECT %s FROM (%s) AS "_dp_q"' % (" OR ".join(conds), delta.sql("postgres")), "line": _line(sub)}
        if g not in self.guards:
            self.guards.append(g)
        # the delta statement evaluates it on the tables as they are now
        sub.set("this", self.resolve_all(q))
        return True

    def semi_join(self, c: exp.Expression) -> dict | None:
        """A WHERE conjunct `[NOT] EXISTS (SELECT ... FROM t WHERE ...)` or `x IN (SELECT y FROM t WHERE ...)` over
        one upstream table, correlated by at least one equality between a column expression of t and one of the
        outer query (other conditions may read both): its parts, or None."""
        neg = False
        node = c
        notin = None
        if isinstance(c, exp.Not) and isinstance(c.this, exp.Exists):
            neg, ex = True, c.this
        elif isinstance(c, exp.Exists):
            ex = c
        elif isinstance(c, exp.In) and isinstance(c.args.get("query"), exp.Subquery):
            ex = None
        elif isinstance(c, exp.Not) and isinstance(c.this, exp.In) and isinstance(c.this.args.get("query"), exp.Subquery):
            # x NOT IN (SELECT y ...): NOT EXISTS (... y = x) as long as the subquery holds no NULL y and is not
            # empty, before and after (two guards); under those, a NULL x is in no row, before and after
            notin, ex, c = c, None, c.this
        else:
            return None
        sub_holder = ex if ex is not None else c.args["query"]
        q = sub_holder.this
        if isinstance(q, exp.Subquery):
            q = q.this
        if not isinstance(q, exp.Select) or q.args.get("joins") or q.args.get("with_") or q.args.get("with"):
            return None
        for k in ("group", "having", "limit", "offset", "distinct"):
            if q.args.get(k):
                return None
        frm = q.args.get("from_")
        if frm is None or not isinstance(frm.this, exp.Table) or frm.this.name in self.ctes:
            return None
        if any(isinstance(x, (exp.AggFunc, exp.Window, exp.Subquery, exp.Exists)) for x in q.walk() if x is not q):
            return None
        r = self.resolve(frm.this)
        if r is None:
            return None
        alias = frm.this.alias_or_name
        pred = q.args["where"].this.copy() if q.args.get("where") else None
        if ex is None:   # x IN (SELECT y ...): EXISTS (SELECT ... WHERE ... AND y = x)
            if len(q.selects) != 1:
                return None
            eq = exp.EQ(this=q.selects[0].unalias().copy(), expression=c.this.copy())
            pred = eq if pred is None else exp.and_(pred, eq)
        if pred is None:
            return None

        def inner_only(e):
            cols = list(e.find_all(exp.Column))
            return bool(cols) and all(x.table == alias for x in cols)

        def outer_only(e):
            cols = list(e.find_all(exp.Column))
            return bool(cols) and all(x.table and x.table != alias for x in cols)
        eqs = []
        for x in _conjuncts(pred):
            if isinstance(x, exp.EQ):
                if inner_only(x.this) and outer_only(x.expression):
                    eqs.append((x.this, x.expression))
                elif inner_only(x.expression) and outer_only(x.this):
                    eqs.append((x.expression, x.this))
        if not eqs:
            return None
        # the conditions other than the equalities: on the subquery's table only ("local": its change can be
        # counted per key once, by a join), or reading the outer row too (counted per outer row)
        others = [x for x in _conjuncts(pred) if not any(x is e for e in (
            [p for p in _conjuncts(pred) if isinstance(p, exp.EQ) and any(
                (p.this is a_ and p.expression is b_) or (p.expression is a_ and p.this is b_) for a_, b_ in eqs)]))]
        local = all(all(cc.table == alias for cc in x.find_all(exp.Column)) for x in others)
        # the delta probes the subquery's table by its correlation column, row by row
        for x, _o in eqs:
            if isinstance(x, exp.Column):
                ix = {"table": r[1], "column": x.name}
                if ix not in self.indexes:
                    self.indexes.append(ix)
        if notin is not None:
            y = q.selects[0].unalias()
            a = exp.to_identifier(alias, quoted=True).sql("postgres")
            now = exp.to_table(r[1], dialect="postgres").sql("postgres")
            dk = 'pg_temp."_dp_d_%d"' % (self.inputs.index(r[0]) + 1)
            base = " AND ".join(x.sql("postgres") for x in others) or "true"
            for cond, what in (("%s AND %s IS NULL" % (base, y.sql("postgres")), "a NULL"), (base, "a row")):
                # changed: has-a-row now <> had-a-row (the rows now less the change's, above zero); the rows now
                # are counted only up to the change's size + 1
                self.guards.append({"sql": (
                    "WITH d AS (SELECT coalesce(sum(%s.\"_dp_w\"), 0) AS d FROM %s AS %s WHERE %s) "
                    "SELECT CASE WHEN d.d = 0 THEN false "
                    "WHEN d.d > 0 THEN (SELECT count(*) FROM (SELECT 1 FROM %s AS %s WHERE %s "
                    "LIMIT (SELECT d + 1 FROM d)) z) BETWEEN 1 AND d.d "
                    "ELSE NOT EXISTS (SELECT 1 FROM %s AS %s WHERE %s) END FROM d"
                    % (a, dk, a, cond, now, a, cond, now, a, cond)),
                    "line": _line(notin), "what": "NOT IN: whether its subquery holds %s" % what})
            node, ex = notin, None
            return {"node": node, "neg": True, "sub": c.args["query"], "alias": alias, "pred": pred, "eq": eqs,
                    "local": local, "others": [x.copy() for x in others], "table": r[1],
                    "index": self.inputs.index(r[0]) + 1,
                    "notin": {"x": c.this.copy(), "has_null": "EXISTS (SELECT 1 FROM %s AS %s WHERE %s AND %s IS NULL)"
                              % (now, a, base, y.sql("postgres")),
                              "empty": "NOT EXISTS (SELECT 1 FROM %s AS %s WHERE %s)" % (now, a, base)}}
        if ex is None:   # rewrite the IN as the EXISTS it is (for the old-state condition below)
            new = exp.Exists(this=exp.select("1").from_(frm.this.copy()).where(pred.copy()))
            c.replace(new)
            node, ex, q = new, new, new.this
        return {"node": node, "neg": neg, "sub": ex, "alias": alias, "pred": pred, "eq": eqs, "local": local,
                "others": [x.copy() for x in others], "table": r[1], "index": self.inputs.index(r[0]) + 1}

    def semi_old(self, sj: dict) -> exp.Expression:
        """A semi-join's condition before the change: the matches now less the change's matches, above zero."""
        a = exp.to_identifier(sj["alias"], quoted=True).sql("postgres")
        pred = sj["pred"]
        now = exp.to_table(sj["table"], dialect="postgres").sql("postgres")
        sql = ("((SELECT count(*) FROM %s AS %s WHERE %s) - (SELECT coalesce(sum(%s.\"_dp_w\"), 0) FROM "
               "pg_temp.\"_dp_d_%d\" AS %s WHERE %s) > 0)" % (now, a, pred.sql("postgres"), a, sj["index"], a,
                                                           pred.sql("postgres")))
        return sqlglot.parse_one(_old_cond(sj, sql), read="postgres")

    def _delta_select(self, s: exp.Select) -> exp.Expression:
        for key, what in (("group", "GROUP BY"), ("having", "HAVING"), ("limit", "LIMIT"), ("offset", "OFFSET"),
                          ("distinct", "DISTINCT")):
            if s.args.get(key):
                raise NotIncremental("%s in a branch of UNION ALL" % what if isinstance(s.parent, exp.Union)
                                     else "%s inside a subquery or CTE" % what, s.args[key])
        for p in s.selects:
            a = next((x for x in p.find_all(*AGGS) if _own(s, x)), None)
            if a is not None:
                raise NotIncremental("aggregate %s inside a subquery, CTE or expression" % a.key, a)
        # [NOT] EXISTS / IN (SELECT ...) conjuncts of WHERE correlated by equalities: semi- and anti-joins
        semis = []
        where_node = s.args.get("where")
        conj = _conjuncts(where_node.this) if where_node is not None else []
        for k, c in enumerate(conj):
            sj = self.semi_join(c)
            if sj is not None:
                sj["pos"] = k
                semis.append(sj)
        for where in filter(None, [s.args.get("where"), *s.selects]):
            for sub in where.find_all(exp.Subquery, exp.Exists):
                if sub.find_ancestor(exp.Subquery, exp.Exists) not in (None,) and \
                        _within(sub.find_ancestor(exp.Subquery, exp.Exists), where):
                    continue   # inside a subquery handled as a whole
                if any(_within(sub, sj["node"]) for sj in semis):
                    continue
                if list(sub.find_all(exp.Table)) and not self.scalar_guard(sub):
                    raise NotIncremental("subquery reading a table in WHERE or SELECT", sub)
        self.semis_used = self.semis_used or bool(semis)
        for sj in semis:   # evaluated on the tables as they are now
            sj["sub"].set("this", self.resolve_all(sj["sub"].this))
        frm = s.args.get("from_")
        if frm is None:
            raise NotIncremental("SELECT without FROM", s)
        items = [frm.this]
        for j in s.args.get("joins") or []:
            kind = (j.args.get("kind") or "").upper()
            side = (j.args.get("side") or "").upper()
            if side or kind not in ("", "INNER", "CROSS"):
                raise NotIncremental("%s JOIN" % " ".join(x for x in (side, kind) if x), j)
            if j.args.get("method"):
                raise NotIncremental("%s JOIN" % j.args["method"].upper(), j)
            items.append(j.this)
        # one term per input, level by level (linear in n, not the 2^n - 1 terms of expanding the
        # product): Δ(X1 ⋈ ... ⋈ Xn) = Σi X1_old ⋈ ... ⋈ X(i-1)_old ⋈ ΔXi ⋈ X(i+1) ⋈ ... ⋈ Xn,
        # where X_old = X with weight 1 plus ΔX with negated weights (a z-set: the state before)
        terms = []
        n = len(items)
        for i in range(n):
            t = s.copy()
            t.set("order", None)
            new_items = [self.old_item(items[j]) if j < i else self.delta_item(items[j]) if j == i
                         else self.post(items[j]) for j in range(n)]
            t.args["from_"].set("this", new_items[0])
            for ji, j in enumerate(t.args.get("joins") or []):
                j.set("this", new_items[ji + 1])
            w: exp.Expression = None  # type: ignore[assignment]
            for j in range(i + 1):
                col = exp.column("_dp_w", table=exp.to_identifier(items[j].alias_or_name, quoted=True))
                w = col if w is None else exp.Mul(this=w, expression=col)
            t.select(exp.alias_(w, "_dp_w", quoted=True), copy=False)
            terms.append(t)
        # (and the outer rows of the keys it touches are found by their correlation column)
        by_alias = {x.alias_or_name: x for x in items}
        for sj in semis:
            for _x, o in sj["eq"]:
                it = by_alias.get(o.table) if isinstance(o, exp.Column) else None
                r = self.resolve(it) if isinstance(it, exp.Table) and it.name not in self.ctes else None
                if r is not None and {"table": r[1], "column": o.name} not in self.indexes:
                    self.indexes.append({"table": r[1], "column": o.name})
        # a semi-join's condition c changes for the rows whose correlation key a change of its table touches:
        # Δ(X·c1·...·cm) = ΔX·c1'·...·cm' + Σj X_old·c1_old·...·c(j-1)_old·(cj' - cj_old)·c(j+1)'·...·cm',
        # term j restricted to the rows whose key is one of the change's (cj_old: the count of matches now
        # less the change's matches, above zero)
        for j, sj in enumerate(semis):
            t = s.copy()
            t.set("order", None)
            new_items = [self.old_item(x) for x in items]
            t.args["from_"].set("this", new_items[0])
            for ji, jn in enumerate(t.args.get("joins") or []):
                jn.set("this", new_items[ji + 1])
            tc = _conjuncts(t.args["where"].this)
            for i, sk in enumerate(semis):
                if i < j:
                    tc[sk["pos"]].replace(self.semi_old(sk))
                elif i == j:
                    tc[sk["pos"]].replace(exp.true())
            dk = "pg_temp.%s" % exp.to_identifier("_dp_d_%d" % sj["index"], quoted=True).sql("postgres")
            outer = [o.copy() for _s, o in sj["eq"]]
            inner = [x.copy() for x, _o in sj["eq"]]
            keyset = "(%s) IN (SELECT %s FROM %s AS %s)" % (
                ", ".join(o.sql("postgres") for o in outer), ", ".join(x.sql("postgres") for x in inner), dk,
                exp.to_identifier(sj["alias"], quoted=True).sql("postgres"))
            newc = sj["node"].copy().sql("postgres")
            if sj["local"]:
                # the change's matches counted per key once (not per outer row): joined on the key, which
                # also restricts the outer rows to the keys the change touches
                a = exp.to_identifier(sj["alias"], quoted=True).sql("postgres")
                g = "_dp_sj%d" % j
                grp = "SELECT %s, sum(%s.\"_dp_w\") AS \"_dp_dw\" FROM %s AS %s%s GROUP BY %s" % (
                    ", ".join("%s AS \"_dp_k%d\"" % (x.sql("postgres"), n) for n, x in enumerate(inner)), a, dk, a,
                    (" WHERE " + " AND ".join(x.sql("postgres") for x in sj["others"])) if sj["others"] else "",
                    ", ".join(str(n + 1) for n in range(len(inner))))
                on = " AND ".join("%s = \"%s\".\"_dp_k%d\"" % (o.sql("postgres"), g, n) for n, o in enumerate(outer))
                t.join(exp.Subquery(this=sqlglot.parse_one(grp, read="postgres"),
                                    alias=exp.TableAlias(this=exp.to_identifier(g, quoted=True))),
                       on=sqlglot.parse_one(on, read="postgres"), copy=False)
                now = exp.to_table(sj["table"], dialect="postgres").sql("postgres")
                oldc = _old_cond(sj, "((SELECT count(*) FROM %s AS %s WHERE %s) - \"%s\".\"_dp_dw\" > 0)" % (
                    now, a, sj["pred"].sql("postgres"), g))
                cond = "(%s) <> (%s)" % (newc, oldc)
            else:
                oldc = self.semi_old(sj).sql("postgres")
                cond = "%s AND (%s) <> (%s)" % (keyset, newc, oldc)
            factor = "(CASE WHEN %s THEN 1 ELSE 0 END - CASE WHEN %s THEN 1 ELSE 0 END)" % (newc, oldc)
            t.set("where", exp.Where(this=exp.and_(t.args["where"].this, sqlglot.parse_one(cond, read="postgres"))))
            w = None
            for x in items:
                col = exp.column("_dp_w", table=exp.to_identifier(x.alias_or_name, quoted=True))
                w = col if w is None else exp.Mul(this=w, expression=col)
            t.select(exp.alias_(exp.Mul(this=w, expression=sqlglot.parse_one(factor, read="postgres")), "_dp_w",
                                quoted=True), copy=False)
            terms.append(t)
        out = terms[0]
        for t in terms[1:]:
            out = exp.union(out, t, distinct=False)
        if len(terms) > 1:
            out = exp.select("*").from_(exp.Subquery(this=out, alias=exp.TableAlias(this=exp.to_identifier("_dp_t"))))
        return out


def _compile_aggregate(q: exp.Select, names: list[str], ctx: _Ctx) -> Compiled:
    if q.args.get("having"):
        raise NotIncremental("HAVING", q.args["having"])
    for key, what in (("limit", "LIMIT"), ("offset", "OFFSET")):
        if q.args.get(key):
            raise NotIncremental(what, q.args[key])
    distinct = q.args.get("distinct")
    group = q.args.get("group")
    if distinct and (group or distinct.args.get("on")):
        raise NotIncremental("DISTINCT ON or DISTINCT with GROUP BY", distinct)
    for k in ("grouping_sets", "cube", "rollup"):
        if group and group.args.get(k):
            raise NotIncremental("GROUP BY %s" % k.upper().replace("_", " "), group)
    # no GROUP BY: one group, whose row stays when its input is empty (count 0, sum NULL); it is kept under a
    # hidden constant group column (_dp_one)
    nogroup = not distinct and not group
    gexprs = [g for g in group.expressions] if group else [] if nogroup else [p.unalias() for p in q.selects]
    gsql = [g.sql("postgres") for g in gexprs]
    groups, aggs = [], []
    in_proj: list[exp.Expression] = []
    arg_exprs: dict[int, exp.Expression] = {}
    matched = set()
    if nogroup:
        groups.append({"col": "_dp_one", "g": 0})
        in_proj.append(exp.alias_(exp.Literal.number(1), "_dp_g0", quoted=True))

    def add_agg(e: exp.Expression, col: str | None) -> dict:
        """One aggregate's state: its spec entry (col None: hidden, read by an expression column)."""
        fn = AGGS[type(e)]
        arg = e.this
        inexact = _inexact(arg) if fn in ("sum", "avg") else None
        if inexact:
            # a running sum of such values drifts from a recompute (0.1 + 0.2 - 0.1 is not 0.2)
            raise NotIncremental("%s of %s values (%s)" % (
                fn, inexact, "not exact as a running sum" if inexact in ("double precision", "real")
                else "no running-sum state for this type"), e)
        if isinstance(arg, exp.Distinct):
            raise NotIncremental("%s(DISTINCT ...)" % fn, e)
        if arg is not None and list(arg.find_all(*AGGS)):
            raise NotIncremental("nested aggregate", e)
        if arg is not None and any(isinstance(x, exp.Window) for x in arg.walk()):
            raise NotIncremental("window function inside an aggregate", e)
        if e.args.get("filter") is not None or isinstance(e.parent, exp.Filter):
            raise NotIncremental("aggregate with FILTER (use CASE inside the aggregate)", e)
        if fn == "count" and (arg is None or isinstance(arg, exp.Star)):
            a = {"col": col, "fn": "count_star", "a": None}
        else:
            j = len(arg_exprs)
            if col is None and fn in ("min", "max"):
                col = "_dp_m%d" % j       # a hidden min/max is a column of its own
            a = {"col": col, "fn": fn, "a": j}
            arg_exprs[j] = arg
            in_proj.append(exp.alias_(arg.copy(), "_dp_a%d" % j, quoted=True))
        aggs.append(a)
        return a

    def state_of(a: dict) -> exp.Expression:
        """An aggregate's value from the group's new state (the columns i.* of the refresh)."""
        fn, j = a["fn"], a["a"]
        if fn == "count_star":
            return exp.column("_dp_cnt", table="i")
        if fn == "count":
            return exp.column("_dp_n%d" % j, table="i")
        if fn == "sum":
            return exp.column("_dp_s%d" % j, table="i")
        if fn == "avg":
            return sqlglot.parse_one('(i."_dp_s%d")::numeric / NULLIF(i."_dp_n%d", 0)' % (j, j), read="postgres")
        return exp.column(exp.to_identifier(a["col"], quoted=True), table="i")

    for i, p in enumerate(q.selects):
        e = p.unalias()
        esql = e.sql("postgres")
        if esql in gsql:
            k = gsql.index(esql)
            matched.add(k)
            groups.append({"col": names[i], "g": len(groups)})
            in_proj.append(exp.alias_(e.copy(), "_dp_g%d" % (len(groups) - 1), quoted=True))
            continue
        if type(e) in AGGS:
            add_agg(e, names[i])
            continue
        own = [a for a in e.find_all(*AGGS) if _own(q, a)]
        if not own or any(isinstance(x, (exp.Subquery, exp.Exists, exp.Window)) for x in e.walk()):
            raise NotIncremental("output column %s is neither a GROUP BY expression nor an aggregate" % names[i]
                                 if not own else "expression over an aggregate (%s)" % _short(esql), e)
        # an expression over aggregates (and GROUP BY expressions): computed from the aggregates' states
        out = e.copy()
        for node in list(out.find_all(*AGGS)):
            if node.find_ancestor(*AGGS) is None:
                node.replace(state_of(add_agg(node, None)))
        for node in list(out.walk()):
            if isinstance(node, exp.Column) and node.find_ancestor(exp.Subquery) is None \
                    and not (node.table == "i" and node.name.startswith("_dp_")):
                raise NotIncremental("expression over an aggregate (%s) reads %s outside an aggregate"
                                     % (_short(esql), node.sql("postgres")), e)
        aggs.append({"col": names[i], "fn": "expr", "a": None, "sql": out.sql("postgres")})
    if len(matched) != len(gexprs):
        missing = [gsql[k] for k in range(len(gexprs)) if k not in matched]
        raise NotIncremental("GROUP BY expression %s is not in the SELECT list" % _short(missing[0]), group)
    # input of the aggregation: same FROM/WHERE, projections = group exprs and aggregate arguments
    inp = q.copy()
    inp.set("group", None)
    inp.set("distinct", None)
    inp.set("order", None)
    inp.set("expressions", [x.copy() for x in in_proj] or [exp.alias_(exp.Literal.number(1), "_dp_one", quoted=True)])
    delta = ctx.delta(inp)
    # state statement: the query with hidden state columns
    st = ctx.resolve_all(q)
    st.set("order", None)
    for i, p in enumerate(st.selects):
        p.replace(exp.alias_(p.unalias(), names[i], quoted=True))
    hidden = ["_dp_cnt"]
    st.select(exp.alias_(exp.Count(this=exp.Star()), "_dp_cnt", quoted=True), copy=False)
    if nogroup:
        st.select(exp.alias_(exp.Literal.number(1), "_dp_one", quoted=True), copy=False)
        hidden.append("_dp_one")
    for a in aggs:
        j = a["a"]
        if a["fn"] in ("sum", "avg"):
            st.select(exp.alias_(exp.Sum(this=arg_exprs[j].copy()), "_dp_s%d" % j, quoted=True), copy=False)
            st.select(exp.alias_(exp.Count(this=arg_exprs[j].copy()), "_dp_n%d" % j, quoted=True), copy=False)
            hidden += ["_dp_s%d" % j, "_dp_n%d" % j]
        elif a["fn"] == "count":
            st.select(exp.alias_(exp.Count(this=arg_exprs[j].copy()), "_dp_n%d" % j, quoted=True), copy=False)
            hidden.append("_dp_n%d" % j)
        elif a["fn"] in ("min", "max") and a["col"].startswith("_dp_m"):
            fn = exp.Min if a["fn"] == "min" else exp.Max
            st.select(exp.alias_(fn(this=arg_exprs[j].copy()), a["col"], quoted=True), copy=False)
            hidden.append(a["col"])
    if distinct:
        st.set("distinct", None)
        st.set("group", exp.Group(expressions=[g.copy() for g in gexprs]))
    gcols = ", ".join('_dp_st.%s' % exp.to_identifier(g["col"], quoted=True).sql("postgres") for g in groups)
    state_sql = "SELECT _dp_st.*, hashtextextended(ROW(%s)::text, 0) AS _dp_gh FROM (%s) _dp_st" % (
        gcols, st.sql("postgres"))
    hidden.append("_dp_gh")
    post = q.copy()
    return Compiled(True, shape="distinct" if distinct else "aggregate", delta_sql=delta.sql("postgres"),
                    delta_inputs=ctx.inputs, state_sql=state_sql, hidden_cols=hidden,
                    agg_spec={"cols": names, "groups": groups, "aggs": aggs, **({"nogroup": True} if nogroup else {})},
                    columns=names)
