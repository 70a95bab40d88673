"""Files as the loader reads them: formats by content and extension, checks, SHA-256, and the block stream
escaped for COPY (decompressed, or rendered from Parquet, on the way: see formats.py and parquet.py)."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from deltapipe.errors import DeltapipeError
from deltapipe.load.formats import COMPRESSIONS, data_suffix, decompressed, sniff

BLOCK = 4 << 20
MODES = ("snapshot", "upsert", "append", "changes", "history")
FORMATS = ("csv", "tsv", "ndjson", "parquet")
EXT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".ndjson": "ndjson", ".jsonl": "ndjson",
               ".json": "ndjson", ".parquet": "parquet", ".pq": "parquet"}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def guess_format(path: Path, given: str | None) -> str:
    """The format of the data: as given, else Parquet by content, else by the extension under any
    compression suffix (orders.csv.gz is csv), else csv."""
    if given:
        if given not in FORMATS:
            raise DeltapipeError("unknown format %s" % given, hint="use csv, tsv, ndjson or parquet")
        return given
    if sniff(path) == "parquet":
        return "parquet"
    fmt = EXT_FORMATS.get(data_suffix(path), "csv")
    return "csv" if fmt == "parquet" else fmt  # named .parquet but not Parquet inside: read as text


@contextmanager
def copy_source(path: Path, fmt: str, start: int = 0, length: int | None = None,
                on_bytes: Callable[[int], None] | None = None) -> Iterator[Iterator[bytes]]:
    """The blocks of ``path`` escaped for COPY text format, one raw line per row (bytes ``start`` to
    ``start + length`` of a plain file; the whole of a compressed or Parquet one, which cannot be cut)."""
    if fmt == "parquet":
        from deltapipe.load.parquet import copy_blocks
        with _prefetched(copy_blocks(path, on_bytes)) as blocks:
            yield blocks
        return
    kind = sniff(path)
    if kind in COMPRESSIONS:
        with decompressed(path, kind, on_bytes) as f, _prefetched(escape_blocks(f)) as blocks:
            yield blocks
        return
    from deltapipe.load.parallel_copy import Limited
    with open(path, "rb") as f:
        f.seek(start)
        yield escape_blocks(f if length is None else Limited(f, length), on_bytes, strip_bom=start == 0)


@contextmanager
def _prefetched(blocks: Iterator[bytes], depth: int = 2) -> Iterator[Iterator[bytes]]:
    """``blocks`` made by a thread of their own, ``depth`` ahead: decompressing (or rendering Parquet)
    overlaps with sending to COPY (zlib, zstd, lzma and pyarrow release the GIL while they work)."""
    import queue
    import threading
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for b in blocks:
                if not put(b):
                    return
            put(end)
        except BaseException as e:  # handed to the consumer
            put(e)

    th = threading.Thread(target=produce, name="deltapipe-read", daemon=True)
    th.start()

    def consume() -> Iterator[bytes]:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    try:
        yield consume()
    finally:
        stop.set()
        th.join()


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
