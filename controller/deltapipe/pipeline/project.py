"""Read a pipeline directory: pipeline.toml and models/*.sql, with header comments."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from deltapipe.pipeline.model import HISTORY_OPTIONS, MODES, Model, Pipeline, Source, _DATASET, _IDENT, _err
from deltapipe.pipeline.audits import AUDITS_SUFFIX, parse_audits
from deltapipe.pipeline.parse import _first_code_line, _parse_error, tables_read


# ------------------------------------------------------------------ reading the directory
_CADENCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_SQL = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours"}


def _cadences(cfg, models: dict, toml_path: Path) -> dict[str, str]:
    """[models.NAME] refresh = "1s" | "1m" | "on run": {model: interval text or "on run"}
    ([models.NAME] distributed = true is read by _distributed_models)."""
    if not isinstance(cfg, dict):
        raise _err("%s: [models] must be a table of [models.NAME] tables" % toml_path, "DP214")
    out: dict[str, str] = {}
    for mname, opts in cfg.items():
        if mname not in models or not isinstance(opts, dict):
            raise _err("%s: [models.%s]: no such model (models/%s.sql)" % (toml_path, mname, mname), "DP214",
                       "name a model of the pipeline")
        extra = sorted(set(opts) - {"refresh", "distributed"})
        if extra:
            raise _err("%s: [models.%s]: unknown option %s" % (toml_path, mname, extra[0]), "DP214",
                       'the options are refresh = "1s" | "1m" | "on run" and distributed = true')
        if not isinstance(opts.get("distributed", False), bool):
            raise _err("%s: [models.%s]: distributed must be true or false" % (toml_path, mname), "DP214")
        if opts.get("distributed") and not models[mname].key:
            raise _err("%s: [models.%s]: a distributed model needs a key (-- key: COLUMN)" % (toml_path, mname), "DP214",
                       "Citus distributes the table by its first key column")
        if "refresh" not in opts:
            continue
        v = opts["refresh"]
        m = _CADENCE.match(v) if isinstance(v, str) else None
        if isinstance(v, str) and v.strip().lower() == "on run":
            out[mname] = "on run"
        elif m:
            out[mname] = "%s %s" % (m.group(1), _UNIT_SQL[m.group(2)])
        else:
            raise _err("%s: [models.%s]: invalid refresh %r" % (toml_path, mname, v), "DP214",
                       'give refresh = "1s", "30s", "1m", "1h" or "on run"')
    return out


def read_pipeline(directory: str | Path) -> Pipeline:
    """Read and check a pipeline directory (no database needed)."""
    root = Path(directory)
    toml_path = root / "pipeline.toml"
    if not root.is_dir():
        raise _err("%s is not a directory" % root, "DP214", "give a pipeline directory (create one with `deltapipe new DIR`)")
    if not toml_path.exists():
        raise _err("%s: no pipeline.toml" % root, "DP214", "create one with `deltapipe new DIR`")
    try:
        cfg = tomllib.loads(toml_path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise _err("%s: %s" % (toml_path, e), "DP214") from e
    name = cfg.get("name") or root.resolve().name
    if not isinstance(name, str) or not _DATASET.match(name):
        raise _err("%s: invalid pipeline name %r" % (toml_path, name), "DP214",
                   "use letters, digits, _ and -, starting with a letter or _")
    schema = cfg.get("schema", "public")
    sources: dict[str, Source] = {}
    for i, s in enumerate(cfg.get("sources", []) or []):
        where = "%s: sources[%d]" % (toml_path, i)
        if not isinstance(s, dict) or "dataset" not in s:
            raise _err("%s: needs dataset = NAME" % where, "DP214")
        ds = s["dataset"]
        files = s.get("file") or s.get("glob")
        if not files:
            raise _err("%s (%s): needs file = PATH or glob = PATTERN" % (where, ds), "DP214")
        key = s.get("key")
        if not key:
            raise _err("%s (%s): needs key = COLUMN or [COLUMNS]" % (where, ds), "DP214")
        key = [key] if isinstance(key, str) else list(key)
        mode = s.get("mode", "snapshot")
        if mode not in MODES:
            raise _err("%s (%s): unknown mode %s" % (where, ds, mode), "DP214", "use " + ", ".join(MODES))
        table = s.get("table") or ds
        sch = "public"
        if "." in table:
            sch, table = table.split(".", 1)
        if ds in sources:
            raise _err("%s: dataset %s is declared twice" % (toml_path, ds), "DP214")
        sources[ds] = Source(ds, files, key, mode, s.get("columns"), sch, table,
                             {k: v for k, v in s.items() if k in ("format", "delimiter", "quote", "null", "encoding",
                                                                  "op_column", "order_column")},
                             {**{k: str(v) for k, v in s.items() if k in HISTORY_OPTIONS},
                              # Citus: the target is distributed by the first key column
                              **({"distributed": "true"} if s.get("distributed") is True else {})})
    mdir = root / "models"
    models: dict[str, Model] = {}
    targets: dict[str, str] = {}
    for path in sorted(mdir.rglob("*.sql")) if mdir.is_dir() else []:
        if path.name.lower().endswith(AUDITS_SUFFIX):
            continue  # the audits of the model next to it
        rel = str(path.relative_to(root))
        mname = path.stem.lower()
        if not _IDENT.match(mname):
            raise _err("%s: invalid model name %s (the file name is the table name)" % (rel, path.stem), "DP214",
                       "use letters, digits and _, starting with a letter or _")
        if mname in targets:
            raise _err("%s and %s both write table %s.%s" % (targets[mname], rel, schema, mname), "DP213",
                       "rename one of the files")
        clash = [s.dataset for s in sources.values() if (s.schema, s.table) == (schema, mname) or s.dataset == mname]
        if clash:
            raise _err("%s writes table %s.%s, which is source dataset %s" % (rel, schema, mname, clash[0]), "DP213",
                       "rename the model file")
        targets[mname] = rel
        models[mname] = parse_model(path, rel)
    if not models:
        raise _err("%s: no models (models/*.sql)" % root, "DP214", "add SELECT statements as models/NAME.sql")
    for m in list(models.values()):
        rewrite_setop_model(m)
    for m in list(models.values()):
        inp = split_topn_model(m, models, sources)
        if inp is not None:
            models[inp.name] = inp
    for m in list(models.values()):
        inp = split_having_model(m, models, sources)
        if inp is not None:
            models[inp.name] = inp
    for m in list(models.values()):
        for inp in split_nested_model(m, models, sources):
            models[inp.name] = inp
    for m in list(models.values()):
        for inp in split_semi_model(m, models, sources):
            models[inp.name] = inp
    p = Pipeline(name, root, schema, sources, models)
    p.refresh = _cadences(cfg.get("models", {}), models, toml_path)
    # Citus: models whose tables are distributed by their first key column
    p.distributed = sorted(n for n, o in (cfg.get("models") or {}).items() if o.get("distributed") is True)
    return p


def _taken(name: str, models: dict[str, Model], sources: dict[str, Source]) -> bool:
    """name cannot be a split input: not a valid name, or a model's or a source's already."""
    return not _IDENT.match(name) or name in models or any(s.dataset == name or s.table == name
                                                           for s in sources.values())


def _input_model(m: Model, iname: str, inner: str, tag: str) -> Model:
    """The model split from m: its SQL marked (SPLIT_MARK), its fingerprint and reads from that SQL."""
    from deltapipe.incremental.split import SPLIT_MARK
    inp = Model(iname, m.path, m.rel, m.text, "%s%s\n%s" % (SPLIT_MARK, m.name, inner), [], list(m.depends_on))
    tree = sqlglot.parse_one(inner, read="postgres")
    inp.fingerprint = hashlib.sha256(("%s\n%s" % (tree.sql(dialect="postgres", comments=False, normalize=True),
                                                  tag)).encode()).hexdigest()[:32]
    inp.reads = tables_read(tree, m.text)
    return inp


def _split_one(m: Model, iname: str, inner: str, outer: str, tag: str) -> Model:
    """m split into the model iname (inner) and m itself reading only it (outer)."""
    inp = _input_model(m, iname, inner, tag)
    m.sql = outer
    m.depends_on = []
    m.reads = [("", iname, 1)]
    return inp


def split_topn_model(m: Model, models: dict[str, Model], sources: dict[str, Source]) -> Model | None:
    """A top-N model (`ORDER BY ... LIMIT n` over joins, aggregates, DISTINCT or windows) is split in two
    (deltapipe.incremental.split): its input, a model of its own named NAME__input maintained by the rule
    that fits it, and the model itself, the first n rows of that input. Returns the input model (m now
    reads it), or None when m is not split."""
    from deltapipe.incremental.split import INPUT_SUFFIX, split_topn
    iname = m.name + INPUT_SUFFIX
    if _taken(iname, models, sources):
        return None
    tree = sqlglot.parse_one(m.sql, read="postgres")
    if not isinstance(tree, exp.Select) or not tree.args.get("limit"):
        return None
    plain = (not tree.args.get("joins") and not tree.args.get("group") and not tree.args.get("distinct")
             and not tree.args.get("having") and not tree.args.get("with_") and not tree.args.get("with")
             and isinstance(tree.args["from_"].this if tree.args.get("from_") else None, exp.Table)
             and not any(isinstance(x, (exp.AggFunc, exp.Window, exp.Subquery)) for x in tree.walk()))
    if plain:
        return None   # a filter of one table: its top N is read from the table itself (no copy of it)
    parts = split_topn(m.sql, iname)
    if parts is None:
        return None
    return _split_one(m, iname, *parts, "topn-input")


def rewrite_setop_model(m: Model) -> None:
    """UNION / INTERSECT / EXCEPT (distinct) of two SELECTs becomes a GROUP BY over their UNION ALL with each row's
    copies counted per side (deltapipe.incremental.split.rewrite_setop); its HAVING is then split off."""
    from deltapipe.incremental.split import rewrite_setop
    new = rewrite_setop(m.sql)
    if new is not None:
        m.sql = new
        m.reads = tables_read(sqlglot.parse_one(new, read="postgres"), m.text)


def split_having_model(m: Model, models: dict[str, Model], sources: dict[str, Source]) -> Model | None:
    """GROUP BY ... HAVING (deltapipe.incremental.split.split_having): the groups become a model of their own,
    NAME__groups, kept by the aggregate rule, and m filters it. Returns the new model, or None."""
    from deltapipe.incremental.split import HAVING_SUFFIX, split_having
    iname = m.name + HAVING_SUFFIX
    if _taken(iname, models, sources):
        return None
    parts = split_having(m.sql, iname)
    return None if parts is None else _split_one(m, iname, *parts, "having-input")


def split_nested_model(m: Model, models: dict[str, Model], sources: dict[str, Source]) -> list[Model]:
    """An aggregate over aggregated derived tables or CTEs (deltapipe.incremental.split.split_nested): each such
    item becomes a model of its own, NAME__<alias>, and m reads it. Returns the new models."""
    from deltapipe.incremental.split import split_nested
    parts = split_nested(m.sql, m.name, lambda n: _taken(n, models, sources))
    if parts is None:
        return []
    inputs, outer = parts
    out = []
    for iname, inner in inputs:
        out.append(_input_model(m, iname, inner, "nested-input"))
    tree = sqlglot.parse_one(outer, read="postgres")
    m.sql = outer
    m.reads = tables_read(tree, m.text)
    return out


def split_semi_model(m: Model, models: dict[str, Model], sources: dict[str, Source]) -> list[Model]:
    """[NOT] EXISTS / [NOT] IN (SELECT ...) in m's WHERE (deltapipe.incremental.split.split_semi): each subquery
    becomes a model of its own, NAME__semi<k>, the distinct values it correlates on, and m reads it. Returns
    the new models."""
    from deltapipe.incremental.split import split_semi
    parts = split_semi(m.sql, m.name, lambda n: _taken(n, models, sources))
    if parts is None:
        return []
    inputs, outer = parts
    out = [_input_model(m, iname, inner, "semi-input") for iname, inner in inputs]
    m.sql = outer
    m.reads = tables_read(sqlglot.parse_one(outer, read="postgres"), m.text)
    return out


_HEADER = re.compile(r"^\s*--\s*(key|depends_on|depends-on)\s*:\s*(.*?)\s*$", re.I)


def parse_model(path: Path, rel: str) -> Model:
    text = path.read_text()
    key: list[str] = []
    deps: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.lstrip().startswith("--"):
            break
        m = _HEADER.match(line)
        if m:
            vals = [v.strip() for v in m.group(2).split(",") if v.strip()]
            if m.group(1).lower() == "key":
                key = vals
            else:
                deps += [v.lower() for v in vals]
    try:
        stmts = [s for s in sqlglot.parse(text, read="postgres") if s is not None]
    except (ParseError, TokenError) as e:
        raise _parse_error(rel, e) from e
    if len(stmts) != 1:
        raise _err("%s: %s" % (rel, "empty model (no SELECT)" if not stmts else "one SELECT per model file, found %d statements" % len(stmts)),
                   "DP212")
    tree = stmts[0]
    if not isinstance(tree, exp.Query):
        raise _err("%s:%d: a model is one SELECT, not %s" % (rel, _first_code_line(text), tree.key.upper()), "DP212")
    sql = text.strip()
    while sql.endswith(";"):
        sql = sql[:-1].rstrip()
    model = Model(path.stem.lower(), path, rel, text, sql, key, deps)
    normalized = tree.sql(dialect="postgres", comments=False, normalize=True)
    model.audits, model.audit_reads = parse_audits(path, rel, text)
    audits = "".join("\naudit=%s|%s|%s" % (a["name"], a["blocking"], a["sql"]) for a in model.audits)
    model.fingerprint = hashlib.sha256(("%s\nkey=%s%s" % (normalized, ",".join(key), audits)).encode()).hexdigest()[:32]
    model.reads = tables_read(tree, text)
    return model


# ------------------------------------------------------------------ audits
