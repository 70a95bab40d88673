"""Render a pipeline's DAG as text, Mermaid or Graphviz dot."""

from __future__ import annotations



from deltapipe.pipeline.model import Pipeline
from deltapipe.pipeline.deps import topo_order


def render_dag(p: Pipeline, fmt: str = "text") -> str:
    order = topo_order(p)
    if fmt == "mermaid":
        lines = ["graph LR"]
        ids: dict[str, str] = {}

        def nid(n: str) -> str:
            return ids.setdefault(n, "n%d" % len(ids))
        for s in p.sources:
            lines.append('  %s[("%s")]' % (nid(s), s))
        for m in order:
            lines.append('  %s["%s"]' % (nid(m), m))
        for m in order:
            for up, kind in sorted(p.models[m].upstreams.items()):
                if kind == "external":
                    lines.append('  %s{{"%s"}}' % (nid(up), up.replace('"', "'")))
                lines.append("  %s --> %s" % (nid(up), nid(m)))
        return "\n".join(lines)
    if fmt == "dot":
        lines = ["digraph \"%s\" {" % p.name, "  rankdir=LR;"]
        for s in p.sources:
            lines.append('  "%s" [shape=cylinder];' % s)
        for m in order:
            lines.append('  "%s" [shape=box];' % m)
        for m in order:
            for up, kind in sorted(p.models[m].upstreams.items()):
                if kind == "external":
                    lines.append('  "%s" [shape=note];' % up.replace('"', '\\"'))
                lines.append('  "%s" -> "%s";' % (up.replace('"', '\\"'), m))
        lines.append("}")
        return "\n".join(lines)
    lines = ["pipeline %s (%d sources, %d models)" % (p.name, len(p.sources), len(p.models))]
    for s in p.sources.values():
        lines.append("  source  %-24s <- %s" % (s.dataset, s.files))
    for m in order:
        ups = ", ".join("%s%s" % (u, "" if k == "model" else " (%s)" % k) for u, k in sorted(p.models[m].upstreams.items()))
        lines.append("  model   %-24s <- %s" % (m, ups or "(nothing)"))
    return "\n".join(lines)
