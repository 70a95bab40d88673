"""`deltapipe watch DIR`: watch a pipeline's source files, models and pipeline.toml; after a burst of
changes settles (no change for a whole debounce window, the changed files' size and mtime stable) run
the affected part of the pipeline once.

Changes come from watchfiles (inotify on Linux, FSEvents/ReadDirectoryChanges elsewhere, grouped in
steps of 50 ms); `poll` (seconds) makes it poll the file system instead, for filesystems that send no
notifications (NFS, some containers' bind mounts).
"""

from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path
from typing import Callable

import watchfiles

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


def snapshot(root: Path, files: list[Path] | None = None) -> dict[Path, tuple[int, int]]:
    """(size, mtime) of the watched files (or of ``files``) that exist."""
    out = {}
    for f in files if files is not None else watched_files(root):
        try:
            st = os.stat(f)
        except OSError:
            continue
        out[f] = (st.st_size, st.st_mtime_ns)
    return out


class PipelineFilter(watchfiles.BaseFilter):
    """Lets through pipeline.toml, models/**/*.sql and the files (or globs) the sources name; the source
    patterns are read again from pipeline.toml by refresh()."""

    def __init__(self, root: Path):
        super().__init__()
        self.root = root
        self.refresh()

    def refresh(self) -> None:
        self.patterns: list[str] = []
        try:
            p = pl.read_pipeline(self.root)
        except DeltapipeError:
            return
        for s in p.sources.values():
            self.patterns.append(os.path.normpath(str(self.root / s.files)))

    def dirs(self) -> list[Path]:
        """The directories to watch: the pipeline's, and those of source files outside it."""
        out = [self.root]
        for pat in self.patterns:
            d = Path(pat).parent
            while any(ch in str(d) for ch in "*?["):
                d = d.parent
            if d.is_dir() and self.root not in d.parents and d != self.root and all(x not in d.parents for x in out):
                out.append(d)
        return out

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        p = Path(path)
        if p == self.root / "pipeline.toml":
            return True
        if p.suffix == ".sql" and (self.root / "models") in p.parents:
            return True
        norm = os.path.normpath(path)
        return any(norm == pat or (any(ch in pat for ch in "*?[") and pat.count(os.sep) == norm.count(os.sep)
                                   and fnmatch.fnmatchcase(norm, pat)) for pat in self.patterns)


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


def watch(dsn: str | None, directory: str | Path, *, debounce: float = 2.0, poll: float | None = None,
          once: bool = False, workers: int = 1, echo: Callable[[str], None] = print, run_fn=None,
          max_windows: int | None = None) -> int:
    """Watch until Ctrl-C (or one processed window with once=True). Returns the number of runs started.

    A change is counted when watchfiles reports it (changes within one 50 ms step count once); the
    changes gathered are processed when none came for ``debounce`` seconds and the changed files' size
    and mtime stay the same a moment longer (a file still being written is never loaded). Changes made
    while a run goes on are processed in the next window. ``poll``: poll every ``poll`` seconds instead
    of OS notifications."""
    from deltapipe.pipeline import runner
    root = Path(directory).resolve()
    pl.read_pipeline(root)  # fail early, with one line, on a directory that is not a pipeline
    run_fn = run_fn or runner.run
    flt = PipelineFilter(root)
    tick = max(0.02, min(0.25, debounce / 4))   # how often the quiet window is checked when nothing happens
    settle = poll if poll is not None else min(0.1, debounce / 2)
    pending: dict[Path, int] = {}
    last_event = 0.0
    runs = 0
    started = False
    try:
        for changes in watchfiles.watch(*flt.dirs(), watch_filter=flt, step=50, debounce=max(50, int(debounce * 1000)),
                                        rust_timeout=int(tick * 1000), yield_on_timeout=True,
                                        force_polling=poll is not None,
                                        poll_delay_ms=int((poll or 0.3) * 1000)):
            if not started:   # the watcher is set up when the generator yields first: from here no change is missed
                echo("watching %s (%d files, debounce %.1fs%s; Ctrl-C stops)" % (
                    root, len(snapshot(root)), debounce, ", polling every %gs" % poll if poll is not None else ""))
                started = True
            now = time.monotonic()
            if changes:
                for f in {Path(p) for _, p in changes}:
                    pending[f] = pending.get(f, 0) + 1
                last_event = now
                if any(f == root / "pipeline.toml" for f in pending):
                    flt.refresh()   # sources may name other files now
                continue
            if not pending or now - last_event < debounce:
                continue
            # quiet for a whole window; make sure no changed file is still growing (size and mtime stable)
            files = sorted(pending)
            before = snapshot(root, files)
            time.sleep(settle)
            if snapshot(root, files) != before:
                last_event = time.monotonic()
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
            flt.refresh()
    except KeyboardInterrupt:
        echo("stopped watching %s" % root)
        return runs
    return runs
