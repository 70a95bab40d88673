"""Inputs that are not plain text: compressed files (gzip, zstd, bzip2, xz) and Parquet.

What a file is is found from its first bytes (its magic number), never from its name alone: a
``data.csv`` that is really gzip is read as gzip, a ``data.gz`` that is plain text as plain text.
The name still gives the format of what is inside (``orders.csv.gz`` is CSV, ``events.ndjson.zst``
NDJSON). A compressed file is decompressed as it streams, one block at a time: the controller never
holds it, and its skip-unchanged SHA-256 is the one of the compressed file, as it is on disk.

Nothing heavy is imported here: the decompressors (and pyarrow, in parquet.py) are imported only
when a file needs them.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from deltapipe.errors import DeltapipeError

COMPRESSIONS = ("gzip", "zstd", "bzip2", "xz")
# the suffixes that name a compression; stripped to find the format of what is inside
SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bzip2", ".xz": "xz"}


def _magic(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    # "BZh", the block size 1-9, then the magic of a block (pi) or of the end of the stream (sqrt(pi))
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[3:4] != b"0" and \
            head[4:10] in (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90"):
        return "bzip2"
    return None


def sniff(path: Path) -> str | None:
    """What the file is, from its bytes: 'gzip', 'zstd', 'bzip2', 'xz', 'parquet', or None (plain text)."""
    with open(path, "rb") as f:
        head = f.read(10)
        kind = _magic(head)
        if kind is None and head.startswith(b"PAR1"):
            # a Parquet file starts and ends with PAR1 (a text file may only start with it)
            f.seek(0, 2)
            if f.tell() >= 12:
                f.seek(-4, 2)
                if f.read(4) == b"PAR1":
                    kind = "parquet"
    return kind


def data_suffix(path: Path) -> str:
    """The suffix naming the format of the data: ``.csv`` for ``orders.csv.gz``."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    while suffixes and suffixes[-1] in SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def refuse(path: Path, kind: str, what: str, hint: str) -> DeltapipeError:
    """The one-line error for an option that cannot apply to a compressed or Parquet input."""
    name = "a Parquet file" if kind == "parquet" else "a %s-compressed file" % kind
    return DeltapipeError("%s is %s: %s" % (path, name, what), hint=hint, sqlstate="DP016")


def check_options(path: Path, fmt: str, opts) -> str | None:
    """What ``path`` is (see sniff); refuses the load options (LoadOptions) that cannot apply to it."""
    kind = "parquet" if fmt == "parquet" else sniff(path)
    if kind is None:
        return None
    if opts.commit_every or opts.resume:
        raise refuse(path, kind, "--commit-every/--resume stage byte ranges of the file, which cannot be cut "
                     "out of a %s" % ("Parquet file" if kind == "parquet" else "compressed stream"),
                     "load it without --commit-every (the load is still atomic), or decompress it first")
    if kind == "parquet":
        given = [o for o, v in (("--delimiter", opts.delimiter), ("--quote", opts.quote), ("--null", opts.null),
                                ("--no-header", not opts.header),
                                ("--encoding", opts.encoding.lower().replace("-", "") not in ("utf8", "utf_8")))
                 if v not in (None, False)]
        if given:
            raise refuse(path, kind, "%s: for text files only" % ", ".join(given),
                         "Parquet columns are typed, named and UTF-8: drop %s" % ", ".join(given))
    return kind


class _Counted:
    """The compressed file, reporting the bytes the decompressor reads from it (the progress bar's)."""

    def __init__(self, f, on_bytes: Callable[[int], None] | None):
        self.f, self.on_bytes = f, on_bytes

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        if self.on_bytes and b:
            self.on_bytes(len(b))
        return b

    def readinto(self, buf) -> int:
        n = self.f.readinto(buf)
        if self.on_bytes and n:
            self.on_bytes(n)
        return n

    def __getattr__(self, name):
        return getattr(self.f, name)


class _Decompressed(io.RawIOBase):
    """A decompressed stream whose failures (a truncated or corrupt file) are one clear error."""

    def __init__(self, path: Path, kind: str, reader):
        super().__init__()
        self.path, self.kind, self.reader = path, kind, reader

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        try:
            return self.reader.read(n)
        except DeltapipeError:
            raise
        except Exception as e:  # zlib.error, EOFError, OSError, lzma.LZMAError, zstandard.ZstdError
            raise DeltapipeError("%s: corrupt or truncated %s stream: %s" % (self.path, self.kind, e or type(e).__name__),
                                 hint="check the file (e.g. `gzip -t`, `zstd -t`, `xz -t`, `bzip2 -t`)",
                                 sqlstate="DP016") from e


@contextmanager
def decompressed(path: Path, kind: str, on_bytes: Callable[[int], None] | None = None) -> Iterator[_Decompressed]:
    """The decompressed bytes of ``path`` (compressed with ``kind``), as a file object to read blocks from."""
    raw = open(path, "rb")
    try:
        src = _Counted(raw, on_bytes)
        if kind == "gzip":
            import gzip
            reader = gzip.GzipFile(fileobj=src, mode="rb")
        elif kind == "bzip2":
            import bz2
            reader = bz2.BZ2File(src, mode="rb")
        elif kind == "xz":
            import lzma
            reader = lzma.LZMAFile(src, mode="rb")
        elif kind == "zstd":
            try:
                import zstandard
            except ImportError as e:
                raise DeltapipeError("reading %s needs the zstandard package" % path, sqlstate="DP016",
                                     hint="pip install zstandard (or decompress it with `zstd -d`)") from e
            reader = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
        else:
            raise ValueError(kind)
        yield _Decompressed(path, kind, reader)
    finally:
        raw.close()


@contextmanager
def text_stream(path: Path) -> Iterator:
    """The file's text bytes, decompressed if need be (for sampling its first rows)."""
    kind = sniff(path)
    if kind in COMPRESSIONS:
        with decompressed(path, kind) as f:
            yield io.BufferedReader(f, 1 << 16)
    else:
        with open(path, "rb") as f:
            yield f


__all__ = ["check_options", "sniff", "data_suffix", "decompressed", "text_stream", "refuse", "COMPRESSIONS", "SUFFIXES"]
