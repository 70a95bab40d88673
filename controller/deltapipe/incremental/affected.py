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


def in_k(col_sql: str, kset: str, nullable: bool) -> str:
    """col is in the set kset; with nullable (a restricting column that may be NULL, for a model with
    no key), NULL is in it too when the set holds a NULL (IS NOT DISTINCT FROM)."""
    if nullable and kset == K_SUBQUERY:
        return ('(%s IN (%s) OR (%s IS NULL AND EXISTS (SELECT FROM pg_temp."_dp_k" WHERE "_dp_k" IS NULL)))'
                % (col_sql, kset, col_sql))
    return "%s IN (%s)" % (col_sql, kset)


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
    if isinstance(e, exp.Where):
        yield from _conjuncts(e.this)
    elif isinstance(e, exp.And):
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

    def __init__(self, ctx, nullable: bool = False):
        self.ctx = ctx   # compiler._Ctx: resolve(table) -> (upstream, qualified), inputs, delta(), post()
        self.nullable = nullable   # the restricting column may be NULL (a model with no key)
        self.sub_depth = 0         # > 0 while restricting a subquery of WHERE or SELECT
        self.subplans = False      # a scalar subquery is evaluated per row of the restricted inputs
        self.leaves: dict[tuple[str, str], tuple[str, str]] = {}   # (table, column) -> (CTE name, its SELECT)

    # -------------------------------------------------------------- queries
    def query(self, q: exp.Expression, col: str, kset: str = K_SUBQUERY) -> Restricted:
        """q restricted to the rows whose output column col is in kset (a one-column SELECT)."""
        if isinstance(q, exp.Subquery):
            return self.query(q.this, col, kset)
        if isinstance(q, exp.SetOperation):
            names = output_names(q.left)
            if col not in names:
                raise NotIncremental("column %s not in %s" % (col, q.key.upper()), q)
            i = names.index(col)
            left = self.query(q.left, col, kset)
            right = self.query(q.right, output_names(q.right)[i], kset)
            new = q.copy()
            new.set("this", left.node)
            new.set("expression", right.node)
            return Restricted(new, left.derivs + right.derivs, left.indexes + right.indexes,
                              left.notes + right.notes + ["%s: both sides restricted by %s" % (q.key.upper(), col)])
        if isinstance(q, exp.Select):
            return self.select(q, col, kset)
        raise NotIncremental("unsupported construct %s" % q.key.upper(), q)

    def select(self, s: exp.Select, col: str, kset: str = K_SUBQUERY) -> Restricted:
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
        if self.nullable and kset == K_SUBQUERY:
            # a NULL in the restricting column must be a NULL of the input's row, never one an outer
            # join padded in (restricting its other side would change which rows are padded)
            padded: set = set()
            for a, _it, j in _items(s):
                side = (j.args.get("side") or "").upper() if j is not None else ""
                if side == "LEFT":
                    padded.add(a)
                elif side == "RIGHT":
                    padded |= {x for x, _i2, _j2 in _items(s) if x != a}
                    padded.discard(a)
                elif side == "FULL":
                    padded |= {x for x, _i2, _j2 in _items(s)}
            if ck[0] in padded:
                raise NotIncremental("%s comes from the null-padded side of an outer join" % col, proj)
        return self.scope(s, ck, col, kset, seeded=False)

    def scope(self, s: exp.Select, ck: tuple[str, str], col: str, kset: str, seeded: bool) -> Restricted:
        """Select s restricted to the rows whose column ck (alias, column) is in kset; seeded: s is a
        correlated subquery (EXISTS, IN, scalar) and ck the column of its correlation."""
        for key, what in (("limit", "LIMIT"), ("offset", "OFFSET")):
            if s.args.get(key):
                raise NotIncremental(what, s.args[key])
        group = s.args.get("group")
        if not group and not seeded:
            for a in s.find_all(exp.AggFunc):
                if _own(s, a) and not a.find_ancestor(exp.Window):
                    raise NotIncremental("aggregate without GROUP BY", a)
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
            raise NotIncremental("column %s comes from an outer query" % col, s)
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
            on = dist.args["on"]
            exprs = on.expressions if isinstance(on, exp.Tuple) else (on if isinstance(on, list) else [on])
            by_name = {p.alias_or_name: _colkey(p.unalias()) for p in s.selects}
            ons = [_colkey(x) if _colkey(x) else by_name.get(x.name) if isinstance(x, exp.Column) else None
                   for x in exprs]
            if not any(o and find(o) == root for o in ons):
                raise NotIncremental("DISTINCT ON without %s" % col, dist)
        out = Restricted(s.copy())
        new_items: dict[str, exp.Expression] = {}
        direct: dict[str, str] = {}
        for a, item, j in items:
            if a in members:
                r = self.item(item, members[a], kset)
                new_items[a] = r.node
                direct[a] = members[a]
                out.derivs += r.derivs
                out.indexes += r.indexes
                out.notes += r.notes
                out.notes.append("%s %s: restricted by %s.%s" % (_join_label(j), a, a, members[a]))
        # items joined by an equality to a restricted item: semi-joined to it (in chains: an item
        # joined to a semi-joined item reaches the key through it)
        item_of = {x: it for x, it, _j in items}
        join_of = {x: jj for x, _it, jj in items}
        chain = {a: ("", "%s.%s" % (exp.to_identifier(a, quoted=True).sql("postgres"),
                                    exp.to_identifier(m, quoted=True).sql("postgres"))) for a, m in direct.items()}
        pending = [a for a, _i, _j in items if a not in direct]
        while pending:
            progress = False
            for a in list(pending):
                link = None
                for (x, y) in eqs:
                    for (mine, other) in ((x, y), (y, x)):
                        if mine[0] == a and other[0] in chain and link is None:
                            link = (mine[1], other[0], other[1])
                if link is None:
                    continue
                p, b, q = link
                r, ch = self.semi(item_of[a], a, p, item_of[b], b, q, new_items[b], chain[b], _join_label(join_of[a]))
                new_items[a] = r.node
                chain[a] = ch
                out.derivs += r.derivs
                out.indexes += r.indexes
                out.notes += r.notes
                pending.remove(a)
                progress = True
            if not progress:
                a = pending[0]
                raise NotIncremental("%s %s is not joined to %s by an equality: its changes cannot be traced to "
                                     "the rows they touch" % (_join_label(join_of[a]), a, col), item_of[a])
        # subqueries in WHERE and SELECT: correlated to a restricted item, restricted with it
        self._subqueries(out, s, aliases, find, root, new_items, direct, {x: it for x, it, _j in items}, kset)
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

    def item(self, item: exp.Expression, col: str, kset: str = K_SUBQUERY) -> Restricted:
        alias = exp.TableAlias(this=exp.to_identifier(item.alias_or_name, quoted=True))
        if isinstance(item, exp.Table):
            up, qual, i = self._leaf(item)
            a = exp.to_identifier(item.alias_or_name, quoted=True).sql("postgres")
            c = exp.to_identifier(col, quoted=True).sql("postgres")
            # an input restricted by a column is one CTE, however many times the query reads it
            # (materialized when read more than once: one scan instead of one per use)
            # (not shared with a subquery in WHERE or SELECT: a correlated subquery would scan a
            # materialized CTE once per outer row, where its own inlined one probes an index)
            lk = (qual, col, kset) if not self.sub_depth else (qual, col, kset, len(self.leaves))
            name = self.leaves.setdefault(lk, ('"_dp_l%d"' % (len(self.leaves) + 1),
                                                              "SELECT * FROM %s WHERE %s" % (
                                                                  qual, in_k(c, kset, self.nullable))))[0]
            deriv = 'SELECT d.%s AS "_dp_k" FROM pg_temp."_dp_d_%d" AS d' % (c, i)
            t = exp.to_table(name, dialect="postgres")
            t.set("alias", alias)
            return Restricted(t, [deriv], [(qual, col)], [])
        if isinstance(item, exp.Subquery):
            r = self.query(item.this, col, kset)
            return Restricted(exp.Subquery(this=r.node, alias=alias), r.derivs, r.indexes, r.notes)
        raise NotIncremental("unsupported FROM item %s" % item.key.upper(), item)

    def _post(self, item, name: str) -> tuple[str, list]:
        """An item's current rows as a FROM item named name (a table, or a select-project-join
        subquery), and the table to index for a lookup by one of its columns."""
        n = exp.to_identifier(name, quoted=True).sql("postgres")
        if isinstance(item, exp.Table):
            _u, qual, _i = self._leaf(item)
            return "%s AS %s" % (qual, n), [qual]
        self._spj(item.this, name)
        return "%s AS %s" % (exp.Subquery(this=self.ctx.resolve_all(item.this)).sql("postgres"), n), []

    def _subqueries(self, out: Restricted, s, aliases, find, root, new_items, direct, item_of, kset) -> None:
        """EXISTS / NOT EXISTS / IN (SELECT ...) in WHERE and scalar subqueries in SELECT, correlated
        by an equality to a column of a restricted item: the subquery is restricted to the values that
        column takes in the restricted item (the same K when it is in the key's class)."""
        node = out.node
        found = []
        for clause in filter(None, [node.args.get("where"), node.args.get("having"), *node.selects]):
            for sub in clause.find_all(exp.Exists, exp.Subquery):
                if isinstance(sub, exp.Subquery) and isinstance(sub.parent, (exp.From, exp.Join)):
                    continue
                if sub.find_ancestor(exp.Select) is not node or sub.find(exp.Table) is None:
                    continue   # a subquery of a subquery (restricted with it), or reading no table
                if isinstance(sub, exp.Subquery) and isinstance(sub.parent, exp.Exists):
                    continue
                found.append(sub)
        for sub in found:
            t = sub.find(exp.Table).name
            inner = sub.this
            par = sub.parent
            while isinstance(par, exp.Paren):
                par = par.parent
            is_in = isinstance(par, exp.In) and (par.args.get("query") is sub or par.args.get("query") is sub.parent)
            if is_in and isinstance(par.parent, exp.Not):
                raise NotIncremental("NOT IN (SELECT ... FROM %s): a NULL on its inner side changes every row" % t, par)
            if not isinstance(inner, exp.Select):
                raise NotIncremental("subquery reading %s (a %s)" % (t, inner.key.upper()), sub)
            # the correlation: outer column (alias, column) = inner seed
            seed = outer = None
            if is_in:
                oc = _colkey(par.this)
                names = [p.alias_or_name for p in inner.selects]
                if oc and oc[0] in aliases and len(names) == 1:
                    outer, seed = oc, names[0]
            else:
                inner_aliases = {a for a, _i, _j in _items(inner)}
                for c in _conjuncts(inner.args.get("where")):
                    if isinstance(c, exp.EQ):
                        x, y = _colkey(c.left), _colkey(c.right)
                        for mine, other in ((x, y), (y, x)):
                            # (an inner item may reuse an outer alias: then the column is the inner one's)
                            if mine and other and mine[0] in inner_aliases and other[0] in aliases \
                                    and other[0] not in inner_aliases \
                                    and other[0] in direct and (outer is None or find(other) == root):
                                seed, outer = mine, other
            if outer is None or outer[0] not in direct:
                raise NotIncremental("subquery reading %s is not correlated by an equality to %s's rows"
                                     % (t, "the key" if not is_in else "a restricted input"), sub)
            same = find(outer) == root
            a = outer[0]
            ai = exp.to_identifier(a, quoted=True).sql("postgres")
            kin = kset if same else "SELECT %s.%s FROM %s" % (
                ai, exp.to_identifier(outer[1], quoted=True).sql("postgres"), new_items[a].sql("postgres"))
            self.sub_depth += 1
            try:
                if is_in:
                    r = self.query(inner, seed, kin)
                else:
                    r = self.scope(inner, seed, seed[1], kin, seeded=True)
            finally:
                self.sub_depth -= 1
            if isinstance(sub, exp.Subquery) and not is_in:
                # a scalar subquery is evaluated once per outer row (a SubPlan): left as written, it
                # probes the index on its correlation column (which restricting it would hide); its
                # changes still reach the keys through the derivations found above
                sub.set("this", self.ctx.resolve_all(inner))
                self.subplans = True
            else:
                sub.set("this", r.node)
            out.indexes += r.indexes
            out.notes += r.notes
            label = "IN" if is_in else ("NOT EXISTS" if isinstance(sub.parent, exp.Not) else "EXISTS") \
                if isinstance(sub, exp.Exists) else "subquery"
            out.notes.append("%s (%s): restricted with %s.%s" % (label, t, a, outer[1]))
            if same:
                out.derivs += r.derivs
                continue
            apost, idx = self._post(item_of[a], a)
            m = exp.to_identifier(direct[a], quoted=True).sql("postgres")
            y = exp.to_identifier(outer[1], quoted=True).sql("postgres")
            out.indexes += [(q, outer[1]) for q in idx]
            for d in r.derivs:
                out.derivs.append('SELECT %s.%s AS "_dp_k" FROM (%s) AS "_dp_dd" JOIN %s ON %s.%s = "_dp_dd"."_dp_k"'
                                  % (ai, m, d, apost, ai, y))

    def semi(self, item, a: str, p: str, yitem, b: str, q: str, yrestricted, ychain: tuple[str, str],
             label: str) -> tuple[Restricted, tuple[str, str]]:
        """Item a semi-joined on a.p = b.q to item b (restricted). ychain: (joins, value) that give the
        restricting values from b's rows. Returns the restricted item and a's own chain."""
        ai = exp.to_identifier(a, quoted=True).sql("postgres")
        bi = exp.to_identifier(b, quoted=True).sql("postgres")
        pc = exp.to_identifier(p, quoted=True).sql("postgres")
        qc = exp.to_identifier(q, quoted=True).sql("postgres")
        alias = exp.TableAlias(this=exp.to_identifier(a, quoted=True))
        # the restricted b once more, under its alias, as the semi-join's inner side
        ysql = yrestricted.sql("postgres")
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
        # the keys its old rows had), and on through b's chain
        if isinstance(yitem, exp.Table):
            _u, yqual, _i = self._leaf(yitem)
            ypost = "%s AS %s" % (yqual, bi)
            idx.append((yqual, q))
        else:
            self._spj(yitem.this, b)
            ypost = "%s AS %s" % (exp.Subquery(this=self.ctx.resolve_all(yitem.this)).sql("postgres"), bi)
            idx += self._base_index(yitem.this, q)
        joins = " JOIN %s ON %s.%s = %s.%s%s" % (ypost, bi, qc, ai, pc, ychain[0])
        deriv = 'SELECT %s AS "_dp_k" FROM %s%s' % (ychain[1], dx, joins)
        return (Restricted(exp.Subquery(this=sub, alias=alias), [deriv], idx,
                           ["%s %s: semi-joined to %s on %s.%s = %s.%s" % (label, a, b, a, p, b, q)]),
                (joins, ychain[1]))

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
        for key, what in (("group", "GROUP BY"), ("distinct", "DISTINCT"), ("limit", "LIMIT"), ("offset", "OFFSET"),
                          ("having", "HAVING")):
            if q.args.get(key):
                raise NotIncremental("%s (with %s) is joined on a column other than the key" % (name, what), q)
        if any(_own(q, a) for a in q.find_all(exp.AggFunc)) or any(_own(q, w) for w in q.find_all(exp.Window)):
            raise NotIncremental("%s aggregates and is joined on a column other than the key" % name, q)


def compile_affected(q: exp.Expression, names: list[str], ctx, key: list[str] | None,
                     nullable: bool = False) -> dict:
    """The program parts of an affected-key refresh of query q (qualified, CTEs kept) whose output
    columns are names. key: the model's key columns, tried in turn as the restricting column R; with
    nullable (a model with no key), the candidate columns R may be NULL: the rows are then compared
    whole. Fails with the first reason."""
    tree = inline_ctes(q)
    # the output columns under the names the model's table has (PostgreSQL's: sum, count...)
    top = tree
    while isinstance(top, exp.SetOperation):
        top = top.left
    if isinstance(top, exp.Select) and len(top.selects) == len(names):
        for i, p in enumerate(top.selects):
            p.replace(exp.alias_(p.unalias(), names[i], quoted=True))
    if key is None:
        key = candidates(tree)
    first: NotIncremental | None = None
    for col in key:
        rs = Restrictor(ctx, nullable=nullable)
        try:
            r = rs.query(tree, col)
        except NotIncremental as e:
            first = first or e
            continue
        c = exp.to_identifier(col, quoted=True).sql("postgres")
        body = r.node.sql("postgres")
        # a restricted input is materialized when read more than once, or when a scalar subquery is
        # evaluated per row: the filter would otherwise run it on every row before the restriction
        ctes = ", ".join("%s AS %s(%s)" % (name, "MATERIALIZED " if body.count(name) > 1 or rs.subplans else "",
                                            sql) for name, sql in rs.leaves.values())
        restricted = '%sSELECT * FROM (%s) AS "_dp_r" WHERE %s' % (
            "WITH %s " % ctes if ctes else "", body, in_k('"_dp_r".%s' % c, K_SUBQUERY, nullable))
        keys_sql = "\nUNION ALL\n".join(dict.fromkeys(r.derivs))
        seen: list = []
        for ix in r.indexes:
            if ix not in seen:
                seen.append(ix)
        return {"restrict_col": col, "keys_sql": keys_sql, "restricted_sql": restricted, "keyless": nullable,
                "indexes": [{"table": t, "column": cc} for t, cc in seen],
                "operators": list(dict.fromkeys(r.notes))}
    raise first or NotIncremental("no key")


def candidates(q: exp.Expression) -> list[str]:
    """Columns to try as R for a model with no key: the GROUP BY columns of an aggregate (whole groups
    are recomputed), else the plain columns of the SELECT (a set operation: of its first branch)."""
    while isinstance(q, exp.Subquery):
        q = q.this
    if isinstance(q, exp.SetOperation):
        return candidates(q.left)
    if not isinstance(q, exp.Select):
        return []
    out = []
    group = q.args.get("group")
    gkeys = {_colkey(g) for g in group.expressions} if group else None
    for p in q.selects:
        ck = _colkey(p.unalias())
        if ck and (gkeys is None or ck in gkeys):
            out.append(p.alias_or_name)
    return out
