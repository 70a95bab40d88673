"""Reading a model's SQL with sqlglot: identifiers, tables read, parse errors with their line."""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from deltapipe.errors import DeltapipeError
from deltapipe.pipeline.model import _err


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
