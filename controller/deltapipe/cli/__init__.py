"""The `deltapipe` command line: one module per command group, each a thin wrapper over library functions."""

from deltapipe.cli.app import main
# each module registers its commands on `main` when imported
from deltapipe.cli import server, dataset, load, runs, demo, lineage, observe, watch, docs  # noqa: F401,E402
from deltapipe.cli import pipeline  # noqa: E402
from deltapipe.cli import capture  # noqa: E402,F401

pipeline.register(main)


def entry() -> None:
    """The `deltapipe` console script: main(), then no garbage collection of the command's objects at
    exit (they go with the process; the collection cost ~0.1 s of every command)."""
    import gc
    try:
        main()
    finally:
        gc.freeze()
