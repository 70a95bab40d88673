"""Files as the loader reads them: formats by extension, checks, SHA-256, and the block stream escaped for COPY."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

from deltapipe.errors import DeltapipeError

BLOCK = 4 << 20
MODES = ("snapshot", "upsert", "append", "changes", "history")
FORMATS = ("csv", "tsv", "ndjson")
EXT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".ndjson": "ndjson", ".jsonl": "ndjson",
               ".json": "ndjson"}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def guess_format(path: Path, given: str | None) -> str:
    if given:
        if given not in FORMATS:
            raise DeltapipeError("unknown format %s" % given, hint="use csv, tsv or ndjson")
        return given
    return EXT_FORMATS.get(path.suffix.lower(), "csv")


def check_file(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DeltapipeError("file not found: %s" % path)
    if path.is_dir():
        raise DeltapipeError("%s is a directory, not a file" % path)
    if not os.access(path, os.R_OK):
        raise DeltapipeError("cannot read %s: permission denied" % path)
    if path.stat().st_size == 0:
        raise DeltapipeError("%s is empty" % path, hint="a file needs at least a header line", sqlstate="DP013")
    return path


def escape_blocks(f, on_bytes: Callable[[int], None] | None = None, strip_bom: bool = True):
    """Yield the file's bytes escaped for COPY text format, one raw line per row.

    Backslash, tab and carriage return are escaped so every byte reaches the
    server unchanged; CRLF line ends become LF; a UTF-8 byte order mark is dropped.
    """
    first = True
    carry = b""
    crlf = None
    while True:
        block = f.read(BLOCK)
        if on_bytes and block:
            on_bytes(len(block))
        if not block:
            if carry:
                yield carry.replace(b"\\", b"\\\\").replace(b"\r", b"\\r")
            return
        block = carry + block
        carry = b""
        if first:
            first = False
            if strip_bom and block.startswith(b"\xef\xbb\xbf"):
                block = block[3:]
            nl = block.find(b"\n")
            crlf = nl > 0 and block[nl - 1:nl] == b"\r"
        if crlf:
            if block.endswith(b"\r"):
                carry, block = b"\r", block[:-1]
            block = block.replace(b"\r\n", b"\n")
        yield block.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\r", b"\\r")
