"""`deltapipe watch DIR`: watch a pipeline's source files, models and pipeline.toml; after a burst of
changes settles (debounce window, files' size and mtime stable) run the affected part of the pipeline
once. Polling with os.stat: no dependency, works on every filesystem (NFS, containers' bind mounts)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from deltapipe import pipeline as pl
from deltapipe.errors import DeltapipeError


def watched_files(root: Path) -> list[Path]:
    """pipeline.toml, models/**/*.sql and every file the sources name (globs evaluated now)."""
    files = [root / "pipeline.toml"]
    mdir = root / "models"
    if mdir.is_dir():
        files += sorted(mdir.rglob("*.sql"))
    try:
        p = pl.read_pipeline(root)
        for s in p.sources.values():
            files += s.paths(root)
    except DeltapipeError:
        pass  # a broken pipeline.toml: keep watching it and the models; the run will say what is wrong
    return files


def snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    out = {}
    for f in watched_files(root):
        try:
            st = os.stat(f)
        except OSError:
            continue
        out[f] = (st.st_size, st.st_mtime_ns)
    return out


def affected(root: Path, changed: set[Path]) -> list[str] | None:
    """--select list for the changed files: models downstream of changed sources and changed models.
    None means the whole pipeline (pipeline.toml changed, or a model file was removed)."""
    if any(c.name == "pipeline.toml" and c.parent == root for c in changed):
        return None
    try:
        p = pl.load(root, None)
    except DeltapipeError:
        return None
    sel: set[str] = set()
    for s in p.sources.values():
        if set(s.paths(root)) & changed:
            readers = [m.name for m in p.models.values() if m.upstreams.get(s.dataset) == "source"]
            if not readers:
                return None
            sel.update(m + "+" for m in readers)
    for c in changed:
        if c.suffix == ".sql" and (root / "models") in c.parents:
            if c.stem.lower() not in p.models:
                return None
            sel.add(c.stem.lower() + "+")
    return sorted(sel) if sel else None


def watch(dsn: str | None, directory: str | Path, *, debounce: float = 2.0, poll: float = 0.2, once: bool = False,
          workers: int = 1, echo: Callable[[str], None] = print, run_fn=None, max_windows: int | None = None) -> int:
    """Watch until Ctrl-C (or one processed window with once=True). Returns the number of runs started."""
    from deltapipe.pipeline import runner
    root = Path(directory).resolve()
    pl.read_pipeline(root)  # fail early, with one line, on a directory that is not a pipeline
    run_fn = run_fn or runner.run
    base = snapshot(root)
    pending: dict[Path, int] = {}
    last_event = 0.0
    runs = 0
    echo("watching %s (%d files, debounce %.1fs; Ctrl-C stops)" % (root, len(base), debounce))
    try:
        while True:
            time.sleep(poll)
            cur = snapshot(root)
            now = time.monotonic()
            changed = {f for f in set(base) | set(cur) if base.get(f) != cur.get(f)}
            base = cur
            if changed:
                for f in changed:
                    pending[f] = pending.get(f, 0) + 1
                last_event = now
                continue
            if not pending or now - last_event < debounce:
                continue
            # quiet for a whole window; make sure no file is still growing (size and mtime stable)
            time.sleep(poll)
            again = snapshot(root)
            if again != base:
                base = again
                continue
            window = dict(pending)
            pending.clear()
            echo("changed: %s" % ", ".join("%s (%d event%s)" % (os.path.relpath(f, root), n, "s" if n > 1 else "")
                                            for f, n in sorted(window.items())))
            select = affected(root, set(window))
            echo("running %s" % ("the whole pipeline" if select is None else "--select " + " ".join(select)))
            runs += 1
            try:
                r = run_fn(dsn, str(root), workers=workers, select=select or [], on_event=echo)
                counts: dict[str, int] = {}
                for n in r["nodes"]:
                    counts[n["status"]] = counts.get(n["status"], 0) + 1
                echo("run %d %s: %s" % (r["id"], r["status"],
                                        ", ".join("%d %s" % (v, k) for k, v in sorted(counts.items()))))
                failed = r["status"] == "failed"
            except DeltapipeError as e:
                echo("error: %s" % e.one_line())
                failed = True
            if once:
                if failed:
                    raise DeltapipeError("the run after the changes failed", sqlstate="DP407",
                                         hint="see `deltapipe runs`")
                return runs
            if max_windows is not None and runs >= max_windows:
                return runs
            base = snapshot(root)
    except KeyboardInterrupt:
        echo("stopped watching %s" % root)
        return runs
