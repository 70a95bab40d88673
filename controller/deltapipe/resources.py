"""Where the shipped SQL and migrations live (inside the wheel, or the source tree)."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PKG / name, _PKG.parent.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("deltapipe is installed without its %s/ directory" % name)


def sql_dir() -> Path:
    return _find("sql")


def migrations_dir() -> Path:
    return _find("migrations")


def manifest() -> list[Path]:
    d = sql_dir()
    out = []
    for line in (d / "manifest.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(d / line)
    return out
