"""The `deltapipe` command line: one module per command group, each a thin wrapper over library functions."""

from deltapipe.cli.app import main
from deltapipe.cli import server, dataset, load, runs, demo  # noqa: F401,E402 - each registers its commands
from deltapipe.cli import pipeline, lineage  # noqa: E402

pipeline.register(main)
lineage.register(main)
