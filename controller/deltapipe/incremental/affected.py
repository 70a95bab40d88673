"""Affected-key recompute: the refresh rule for shapes no algebraic rule covers.

A keyed model whose output column R (a key column, or another column every input's change can be
traced to) is found, through joins, GROUP BY, windows partitioned by it, DISTINCT and set
operations, as a plain column in every FROM item, is refreshed by:

1. the set K of R values the inputs' changes can touch (``keys_sql``): for each input, the old and
   the new values of the column its rows give R (an input joined to the column through another
   item gives it through that item's current rows: ``ΔX JOIN Y ON Y.q = ΔX.p``);
2. the model's SELECT with every FROM item restricted to K (``restricted_sql``): an item that holds
   a column equal to R is filtered on it (``col IN K``), an item joined by an equality to such an
   item is semi-joined to it, and the result is filtered on R once more;
3. a diff of that result with the table's rows whose R is in K, applied by key.

Restricting an item by a column equal to R never changes an output row whose R is in K: such a row
only combines input rows whose column equals its R, and the rows taken away can only produce rows
whose R is not in K or is NULL (null-padded by an outer join), which step 2's last filter drops.
The proof obligations the compiler checks: every FROM item, at every level, is restricted (else
an input's changes could touch rows outside K: the model falls back to a full refresh, naming the
item); R is a plain column; windows are partitioned by R's column; no LIMIT; no aggregate without
GROUP BY on the way; no subquery reading a table in WHERE or SELECT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from deltapipe.incremental.errors import NotIncremental, _short

AGG_TYPES = (exp.AggFunc,)
K_SUBQUERY = 'SELECT "_dp_k" FROM pg_temp."_dp_k"'


@dataclass
class Restricted:
    node: exp.Expression            # the restricted query (CTEs inlined)
    derivs: list[str] = field(default_factory=list)   # SELECTs of one column _dp_k over input deltas
    indexes: list[tuple[str, str]] = field(default_factory=list)  # (qualified table, column) probed
    notes: list[str] = field(default_factory=list)    # plan lines


def inline_ctes(node: exp.Expression, ctes: dict | None = None) -> exp.Expression:
    """A copy of node with every reference to a CTE replaced by the CTE's query (a derived table)."""
    node = node.copy()
    local = dict(ctes or {})
    w = node.args.get("with_") or node.args.get("with")
    if w is not None:
        for cte in w.expressions:
            local[cte.alias] = inline_ctes(cte.this, local)
        node.set("with_", None)
        node.set("with", None)

    def fix(n):
        if (isinstance(n, exp.Table) and not n.args.get("db") and n.name in local
                and isinstance(n.parent, (exp.From, exp.Join))):
            return exp.Subquery(this=local[n.name].copy(),
                                alias=exp.TableAlias(this=exp.to_identifier(n.alias_or_name, quoted=True)))
        if n is not node and isinstance(n, (exp.Select, exp.SetOperation)) and (n.args.get("with_") or n.args.get("with")):
            return inline_ctes(n, local)
        return n
    return node.transform(fix)


def _conjuncts(e: exp.Expression | None):
    if e is None:
        return
    if isinstance(e, exp.And):
        yield from _conjuncts(e.left)
        yield from _conjuncts(e.right)
    elif isinstance(e, exp.Paren):
        yield from _conjuncts(e.this)
    else:
        yield e


def _colkey(c: exp.Expression) -> tuple[str, str] | None:
    if isinstance(c, exp.Column) and c.table and not isinstance(c.this, exp.Star):
        return (c.table, c.name)
    return None


def _items(s: exp.Select) -> list[tuple[str, exp.Expression, exp.Join | None]]:
    out = []
    frm = s.args.get("from_") or s.args.get("from")
    if frm is None:
        raise NotIncremental("SELECT without FROM", s)
    out.append((frm.this.alias_or_name, frm.this, None))
    for j in s.args.get("joins") or []:
        if j.args.get("using"):
            raise NotIncremental("JOIN ... USING", j)
        out.append((j.this.alias_or_name, j.this, j))
    return out


def _own(s: exp.Select, node: exp.Expression) -> bool:
    """node belongs to select s itself, not to a subquery inside it."""
    p = node.parent
    while p is not None and p is not s:
        if isinstance(p, (exp.Select, exp.SetOperation)):
            return False
        p = p.parent
    return p is s


def output_names(q: exp.Expression) -> list[str]:
    while isinstance(q, exp.Subquery):
        q = q.this
    if isinstance(q, exp.SetOperation):
        return output_names(q.left)
    return [p.alias_or_name for p in q.selects]


def _join_label(j: exp.Join | None) -> str:
    if j is None:
        return "FROM"
    side = (j.args.get("side") or "").upper()
    kind = (j.args.get("kind") or "").upper()
    return " ".join(x for x in (side, kind, "JOIN") if x)


class Restrictor:
    """Restricts a query to the rows whose column R is in pg_temp._dp_k; see the module's doc."""

    def __init__(self, ctx):
        self.ctx = ctx   # compiler._Ctx: resolve(table) -> (upstream, qualified), inputs, delta(), post()
        self.leaves: dict[tuple[str, str], tuple[str, str]] = {}   # (table, column) -> (CTE name, its SELECT)

    # -------------------------------------------------------------- queries
    def query(self, q: exp.Expression, col: str) -> Restricted:
        if isinstance(q, exp.Subquery):
            return self.query(q.this, col)
        if isinstance(q, exp.SetOperation):
            names = output_names(q.left)
            if col not in names:
                raise NotIncremental("column %s not in %s" % (col, q.key.upper()), q)
            i = names.index(col)
            left = self.query(q.left, col)
            right = self.query(q.right, output_names(q.right)[i])
            new = q.copy()
            new.set("this", left.node)
            new.set("expression", right.node)
            return Restricted(new, left.derivs + right.derivs, left.indexes + right.indexes,
                              left.notes + right.notes + ["%s: both sides restricted by %s" % (q.key.upper(), col)])
        if isinstance(q, exp.Select):
            return self.select(q, col)
        raise NotIncremental("unsupported construct %s" % q.key.upper(), q)

    def select(self, s: exp.Select, col: str) -> Restricted:
        for key, what in (("limit", "LIMIT"), ("offset", "OFFSET")):
            if s.args.get(key):
                raise NotIncremental(what, s.args[key])
        proj = None
        for p in s.selects:
            if p.alias_or_name == col:
                proj = p.unalias()
                break
        if proj is None:
            raise NotIncremental("column %s not found" % col, s)
        ck = _colkey(proj)
        if ck is None:
            raise NotIncremental("key column %s is computed (%s), not a column of an input"
                                 % (col, _short(proj.sql("postgres"))), proj)
        group = s.args.get("group")
        if not group:
            for a in s.find_all(exp.AggFunc):
                if _own(s, a) and not a.find_ancestor(exp.Window):
                    raise NotIncremental("aggregate without GROUP BY", a)
        for clause in filter(None, [s.args.get("where"), s.args.get("having"), *s.selects]):
            for sub in clause.find_all(exp.Subquery, exp.Exists):
                t = sub.find(exp.Table)
                if t is not None:
                    raise NotIncremental("subquery reading %s in WHERE, HAVING or SELECT" % t.name, sub)
        # the equivalence class of the column: equalities of WHERE and of the joins' ON
        items = _items(s)
        aliases = {a for a, _i, _j in items}
        parent: dict = {}

        def find(x):
            while parent.get(x, x) != x:
                x = parent[x]
            return x
        eqs: list[tuple[tuple[str, str], tuple[str, str]]] = []
        conds = list(_conjuncts(s.args.get("where")))
        for _a, _i, j in items:
            if j is not None:
                conds += list(_conjuncts(j.args.get("on")))
        for c in conds:
            if isinstance(c, exp.EQ):
                a, b = _colkey(c.left), _colkey(c.right)
                if a and b and a[0] in aliases and b[0] in aliases and a[0] != b[0]:
                    parent[find(a)] = find(b)
                    eqs.append((a, b))
        root = find(ck)
        members = {}
        for a, _i, _j in items:
            for x in [ck] + [y for e in eqs for y in e]:
                if x[0] == a and find(x) == root:
                    members.setdefault(a, x[1])
        if ck[0] not in aliases:
            raise NotIncremental("column %s comes from an outer query" % col, proj)
        # windows: partitioned by the class, so a partition is all in or all out of K
        for w in s.find_all(exp.Window):
            if not _own(s, w):
                continue
            parts = [_colkey(x) for x in (w.args.get("partition_by") or [])]
            fn = w.this.sql("postgres").split("(")[0].lower() if w.this else "OVER"
            if not parts:
                raise NotIncremental("window function %s without PARTITION BY" % fn, w)
            if not any(pk and find(pk) == root for pk in parts):
                raise NotIncremental("window function %s not partitioned by %s" % (fn, col), w)
        dist = s.args.get("distinct")
        if dist is not None and dist.args.get("on"):
            ons = [_colkey(x) for x in dist.args["on"].expressions] if isinstance(dist.args["on"], exp.Tuple) \
                else [_colkey(x) for x in ([dist.args["on"]] if not isinstance(dist.args["on"], list) else dist.args["on"])]
            if not any(o and find(o) == root for o in ons):
                raise NotIncremental("DISTINCT ON without %s" % col, dist)
        out = Restricted(s.copy())
        new_items: dict[str, exp.Expression] = {}
        direct: dict[str, str] = {}
        for a, item, j in items:
            if a in members:
                r = self.item(item, members[a])
                new_items[a] = r.node
                direct[a] = members[a]
                out.derivs += r.derivs
                out.indexes += r.indexes
                out.notes += r.notes
                out.notes.append("%s %s: restricted by %s.%s" % (_join_label(j), a, a, members[a]))
        # items joined by an equality to a restricted item: semi-joined to it
        for a, item, j in items:
            if a in direct:
                continue
            link = None
            for (x, y) in eqs:
                for (mine, other) in ((x, y), (y, x)):
                    if mine[0] == a and other[0] in direct and link is None:
                        link = (mine[1], other[0], other[1])
            if link is None:
                raise NotIncremental("%s %s is not joined to %s by an equality: its changes cannot be traced to "
                                     "the rows they touch" % (_join_label(j), a, col), item)
            p, b, q = link
            r = self.semi(item, a, p, {x: it for x, it, _j in items}[b], b, q, direct[b], new_items[b])
            new_items[a] = r.node
            out.derivs += r.derivs
            out.indexes += r.indexes
            out.notes += r.notes
        # put the restricted items in place
        frm = out.node.args.get("from_") or out.node.args.get("from")
        frm.set("this", new_items[frm.this.alias_or_name])
        for j in out.node.args.get("joins") or []:
            j.set("this", new_items[j.this.alias_or_name])
        if group:
            out.notes.append("GROUP BY: groups of the affected %s recomputed" % col)
        return out

    # -------------------------------------------------------------- FROM items
    def _leaf(self, item: exp.Table):
        r = self.ctx.resolve(item)
        if r is None:
            raise NotIncremental("unknown table %s" % item.name, item)
        up, qual = r
        return up, qual, self.ctx.inputs.index(up) + 1

    def item(self, item: exp.Expression, col: str) -> Restricted:
        alias = exp.TableAlias(this=exp.to_identifier(item.alias_or_name, quoted=True))
        if isinstance(item, exp.Table):
            up, qual, i = self._leaf(item)
            a = exp.to_identifier(item.alias_or_name, quoted=True).sql("postgres")
            c = exp.to_identifier(col, quoted=True).sql("postgres")
            # an input restricted by a column is one CTE, however many times the query reads it
            # (materialized when read more than once: one scan instead of one per use)
            name = self.leaves.setdefault((qual, col), ('"_dp_l%d"' % (len(self.leaves) + 1),
                                                        "SELECT * FROM %s WHERE %s IN (%s)" % (qual, c, K_SUBQUERY)))[0]
            deriv = 'SELECT d.%s AS "_dp_k" FROM pg_temp."_dp_d_%d" AS d' % (c, i)
            t = exp.to_table(name, dialect="postgres")
            t.set("alias", alias)
            return Restricted(t, [deriv], [(qual, col)], [])
        if isinstance(item, exp.Subquery):
            r = self.query(item.this, col)
            return Restricted(exp.Subquery(this=r.node, alias=alias), r.derivs, r.indexes, r.notes)
        raise NotIncremental("unsupported FROM item %s" % item.key.upper(), item)

    def semi(self, item, a: str, p: str, yitem, b: str, q: str, ycol: str, yrestricted) -> Restricted:
        """Item a semi-joined on a.p = b.q to item b, which is restricted by its column ycol."""
        ai = exp.to_identifier(a, quoted=True).sql("postgres")
        bi = exp.to_identifier(b, quoted=True).sql("postgres")
        pc = exp.to_identifier(p, quoted=True).sql("postgres")
        qc = exp.to_identifier(q, quoted=True).sql("postgres")
        yc = exp.to_identifier(ycol, quoted=True).sql("postgres")
        alias = exp.TableAlias(this=exp.to_identifier(a, quoted=True))
        # the restricted b once more, under its alias, as the semi-join's inner side
        ysql = yrestricted.sql("postgres") if isinstance(yrestricted, exp.Subquery) else yrestricted.sql("postgres")
        if isinstance(item, exp.Table):
            up, qual, i = self._leaf(item)
            src = "%s AS %s" % (qual, ai)
            dx = 'pg_temp."_dp_d_%d" AS %s' % (i, ai)
            idx = [(qual, p)]
        elif isinstance(item, exp.Subquery):
            self._spj(item.this, a)
            src = "%s AS %s" % (exp.Subquery(this=self.ctx.resolve_all(item.this)).sql("postgres"), ai)
            dx = "%s AS %s" % (exp.Subquery(this=self.ctx.delta(item.this)).sql("postgres"), ai)
            idx = self._base_index(item.this, p)
        else:
            raise NotIncremental("unsupported FROM item %s" % item.key.upper(), item)
        sub = exp.maybe_parse("SELECT * FROM %s WHERE %s.%s IN (SELECT %s.%s FROM %s)"
                              % (src, ai, pc, bi, qc, ysql), dialect="postgres")
        # the keys a change of item a touches: through b's current rows (b's own changes add
        # the keys its old rows had)
        if isinstance(yitem, exp.Table):
            _u, yqual, _i = self._leaf(yitem)
            ypost = "%s AS %s" % (yqual, bi)
            idx.append((yqual, q))
        else:
            self._spj(yitem.this, b)
            ypost = "%s AS %s" % (exp.Subquery(this=self.ctx.resolve_all(yitem.this)).sql("postgres"), bi)
            idx += self._base_index(yitem.this, q)
        deriv = 'SELECT %s.%s AS "_dp_k" FROM %s JOIN %s ON %s.%s = %s.%s' % (bi, yc, dx, ypost, bi, qc, ai, pc)
        return Restricted(exp.Subquery(this=sub, alias=alias), [deriv], idx,
                          ["JOIN %s: semi-joined to %s on %s.%s = %s.%s" % (a, b, a, p, b, q)])

    def _base_index(self, q: exp.Expression, col: str) -> list[tuple[str, str]]:
        """(table, column) under output column col of a projection of one input table, to be indexed."""
        while isinstance(q, exp.Subquery):
            q = q.this
        if not isinstance(q, exp.Select) or q.args.get("joins"):
            return []
        frm = q.args.get("from_") or q.args.get("from")
        for p in q.selects:
            if p.alias_or_name == col:
                ck = _colkey(p.unalias())
                if ck is None:
                    return []
                if isinstance(frm.this, exp.Table) and frm.this.alias_or_name == ck[0]:
                    r = self.ctx.resolve(frm.this)
                    return [(r[1], ck[1])] if r else []
                if isinstance(frm.this, exp.Subquery) and frm.this.alias_or_name == ck[0]:
                    return self._base_index(frm.this, ck[1])
        return []

    def _spj(self, q: exp.Expression, name: str) -> None:
        """q must be select-project-join (a change of it, or a join with it, costs what the change costs)."""
        if isinstance(q, exp.Subquery):
            return self._spj(q.this, name)
        if not isinstance(q, exp.Select):
            raise NotIncremental("%s is a %s joined on a column other than the key" % (name, q.key.upper()), q)
        for key in ("group", "distinct", "limit", "offset", "having"):
            if q.args.get(key):
                raise NotIncremental("%s (%s) is joined on a column other than the key" % (name, key.upper()), q)
        if any(_own(q, a) for a in q.find_all(exp.AggFunc)) or any(_own(q, w) for w in q.find_all(exp.Window)):
            raise NotIncremental("%s aggregates and is joined on a column other than the key" % name, q)


def compile_affected(q: exp.Expression, names: list[str], ctx, key: list[str]) -> dict:
    """The program parts of an affected-key refresh of query q (qualified, CTEs kept) whose output
    columns are names and whose key is key. Tries each key column as R, then fails with the first reason."""
    tree = inline_ctes(q)
    first: NotIncremental | None = None
    for col in key:
        rs = Restrictor(ctx)
        try:
            r = rs.query(tree, col)
        except NotIncremental as e:
            first = first or e
            continue
        c = exp.to_identifier(col, quoted=True).sql("postgres")
        body = r.node.sql("postgres")
        ctes = ", ".join("%s AS %s(%s)" % (name, "MATERIALIZED " if body.count(name) > 1 else "", sql)
                         for name, sql in rs.leaves.values())
        restricted = '%sSELECT * FROM (%s) AS "_dp_r" WHERE "_dp_r".%s IN (%s)' % (
            "WITH %s " % ctes if ctes else "", body, c, K_SUBQUERY)
        keys_sql = "\nUNION ALL\n".join(dict.fromkeys(r.derivs))
        seen: list = []
        for ix in r.indexes:
            if ix not in seen:
                seen.append(ix)
        return {"restrict_col": col, "keys_sql": keys_sql, "restricted_sql": restricted,
                "indexes": [{"table": t, "column": cc} for t, cc in seen],
                "operators": list(dict.fromkeys(r.notes))}
    raise first or NotIncremental("no key")
