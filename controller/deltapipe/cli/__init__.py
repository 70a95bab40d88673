"""The `deltapipe` command line: one module per command group, each a thin wrapper over library functions.

``main`` (the click group with every command) is built on first use. The console script does not build
it for the commands of LIGHT: it registers only the module of the command it runs, so that `deltapipe
load` imports neither the pipeline compiler (sqlglot) nor alembic, and not even psycopg when the file is
unchanged (see load/unchanged.py).
"""

# commands whose module is enough to run them (tests/test_cli_startup.py keeps this true)
LIGHT = {"load": "load", "load-json": "load"}


def _full():
    from deltapipe.cli.app import main, quiet_psycopg_log
    quiet_psycopg_log()
    # each module registers its commands on `main` when imported
    from deltapipe.cli import server, dataset, load, ingest, runs, demo, lineage, observe, watch, docs  # noqa: F401
    from deltapipe.cli import capture  # noqa: F401
    from deltapipe.cli import pipeline
    if "new" not in main.commands:
        pipeline.register(main)
    return main


def __getattr__(name):
    if name == "main":
        main = _full()
        globals()["main"] = main
        return main
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def _for(argv: list[str]):
    """The group to run ``argv`` with: only the command's own module for a LIGHT command."""
    if argv and argv[0] in LIGHT:
        import importlib

        from deltapipe.cli.app import main
        importlib.import_module("deltapipe.cli." + LIGHT[argv[0]])
        return main
    return _full()


def entry() -> None:
    """The `deltapipe` console script: main(), then no garbage collection of the command's objects at
    exit (they go with the process; the collection cost ~0.1 s of every command)."""
    import gc
    import sys
    try:
        _for(sys.argv[1:])()
    finally:
        gc.freeze()
