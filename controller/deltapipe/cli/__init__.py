"""The `deltapipe` command line: one module per command group, each a thin wrapper over library functions."""

from deltapipe.cli.app import main
# each module registers its commands on `main` when imported
from deltapipe.cli import server, dataset, load, runs, demo, lineage, observe, watch, docs  # noqa: F401,E402
from deltapipe.cli import pipeline  # noqa: E402

pipeline.register(main)
