"""A pipeline directory: pipeline.toml (name, sources) and models/*.sql (one SELECT per file).

Parsing, dependency inference with sqlglot, fingerprints, deploy into the
catalog, plan (what would run and why) and DAG rendering.
"""

from __future__ import annotations

import glob as globmod
import re
from dataclasses import dataclass, field
from pathlib import Path


from deltapipe.errors import DeltapipeError

MODES = ("snapshot", "upsert", "append", "changes", "history")
HISTORY_OPTIONS = ("history_table", "valid_from_column", "valid_to_column")  # dataset options of history mode
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
_DATASET = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,47}$")


@dataclass
class Source:
    dataset: str
    files: str            # a file or a glob, relative to the pipeline directory
    key: list[str]
    mode: str = "snapshot"
    columns: str | None = None
    schema: str = "public"
    table: str = ""
    options: dict = field(default_factory=dict)
    # dataset options set when the dataset is created: history mode's history_table, valid_from_column,
    # valid_to_column; distributed (Citus)
    history: dict = field(default_factory=dict)

    def paths(self, root: Path) -> list[Path]:
        pattern = str(root / self.files)
        if any(ch in self.files for ch in "*?["):
            return [Path(p) for p in sorted(globmod.glob(pattern))]
        return [Path(pattern)]


@dataclass
class Model:
    name: str
    path: Path
    rel: str              # path shown in messages, relative to the pipeline directory
    text: str
    sql: str              # the SELECT as written, without comments' header or trailing semicolon
    key: list[str]
    depends_on: list[str]
    fingerprint: str = ""
    reads: list[tuple[str, str, int]] = field(default_factory=list)  # (schema or '', table, line)
    upstreams: dict[str, str] = field(default_factory=dict)           # name -> model|source|external
    read_map: dict = field(default_factory=dict)  # (schema or '', table) read -> (upstream, kind, qualified table)
    audits: list[dict] = field(default_factory=list)                  # compiled audits (see parse_audits)
    audit_reads: list[tuple[str, str, int]] = field(default_factory=list)  # tables the audits read


@dataclass
class Pipeline:
    name: str
    root: Path
    schema: str
    sources: dict[str, Source]
    models: dict[str, Model]

    def edges(self) -> list[tuple[str, str, str]]:
        return [(m.name, up, kind) for m in self.models.values() for up, kind in sorted(m.upstreams.items())]

    def config(self) -> dict:
        return {"sources": [{"dataset": s.dataset, "file": s.files, "key": s.key, "mode": s.mode,
                             "columns": s.columns, "schema": s.schema, "table": s.table, "options": s.options,
                             **({"history": s.history} if s.history else {})}
                            for s in self.sources.values()],
                **({"refresh": self.refresh} if getattr(self, "refresh", None) else {}),
                **({"distributed": self.distributed} if getattr(self, "distributed", None) else {})}


def _err(msg: str, code: str, hint: str | None = None) -> DeltapipeError:
    return DeltapipeError(msg, hint=hint, sqlstate=code)


