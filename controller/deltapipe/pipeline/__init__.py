"""Pipelines: a directory of pipeline.toml and models/*.sql, deployed into the catalog and run as a DAG.

model.py (the dataclasses), project.py (reading the directory), parse.py (tables a SELECT reads),
audits.py, deps.py (resolution, cycles, order), deploy.py, plan.py, dag.py (rendering); runner.py
(the run queue and its workers), schedule.py (pg_cron), watch.py, scaffold.py (`deltapipe new`).
"""

from deltapipe.pipeline.model import MODES, Model, Pipeline, Source  # noqa: F401
from deltapipe.pipeline.project import parse_model, read_pipeline  # noqa: F401
from deltapipe.pipeline.parse import _ident, tables_read  # noqa: F401
from deltapipe.pipeline.audits import AUDITS_SUFFIX, check_audit_columns, parse_audits  # noqa: F401
from deltapipe.pipeline.deps import find_cycle, load, resolve, topo_order  # noqa: F401
from deltapipe.pipeline.deploy import compile_pipeline, deploy, source_state  # noqa: F401
from deltapipe.pipeline.plan import plan, shape_change  # noqa: F401
from deltapipe.pipeline.dag import render_dag  # noqa: F401
