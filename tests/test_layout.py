"""The package's layout: no import cycles between modules, and imports point one way: cli -> pipeline,
ops, lineage -> incremental, load -> the plumbing (errors, db, server, install, resources). Read from
the source (top-level and function-level imports alike), no database."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "controller" / "deltapipe"
# a layer may import its own and the lower layers' modules only
LAYERS = {"cli": 4, "pipeline": 3, "ops": 3, "lineage": 3, "incremental": 2, "load": 2,
          "errors": 1, "db": 1, "server": 1, "install": 1, "resources": 1, "__init__": 1, "__main__": 5}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out["deltapipe." + ".".join(parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path], top_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    nodes = tree.body if top_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                for cand in (base + "." + a.name, base):
                    if cand in modules:
                        found.add(cand)
                        break
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in modules:
                    found.add(a.name)
    found.discard(name)
    return found


def _layer(mod: str) -> int:
    part = mod.split(".")[1] if "." in mod else "__init__"
    return LAYERS.get(part, 1)


def test_no_import_cycles_at_module_level():
    modules = _modules()
    graph = {m: _imports(m, p, modules, top_only=True) for m, p in modules.items()}
    # a package imports its submodules for re-export: not a dependency of them on it
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    seen, stack, cycles = {}, [], []

    def visit(m):
        seen[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if seen.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in seen:
                visit(d)
        stack.pop()
        seen[m] = 2
    for m in sorted(graph):
        if m not in seen:
            visit(m)
    assert cycles == []


def test_imports_point_down_the_layers():
    modules = _modules()
    wrong = []
    for m, p in modules.items():
        for d in _imports(m, p, modules, top_only=False):
            if _layer(d) > _layer(m):
                wrong.append("%s -> %s" % (m, d))
    assert wrong == []
