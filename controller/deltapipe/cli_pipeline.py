"""CLI commands for pipelines (deploy, plan, run, dag, schedule...). Registered on the main group."""

from __future__ import annotations


def register(main) -> None:
    """Add the pipeline commands to the `deltapipe` group."""
