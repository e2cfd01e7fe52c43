"""Files of the store: private modes, atomic-write helpers, temp and spool names, and
the cheap check that a segment is a complete Parquet file."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

DIR_MODE = 0o700
"""Mode of every directory of the store: it holds workflow parameters and error text."""
FILE_MODE = 0o600
"""Mode of every file of the store."""

QUARANTINE_DIR = "_quarantine"
"""Where unreadable segments are moved, under the root (``<table>/<date=...>/<file>``)."""
_MAGIC = b"PAR1"


# --------------------------------------------------------------------------- filesystem helpers


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory (which makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700 (owner only).

    ``Path.mkdir(parents=True, mode=...)`` applies the mode to the last directory only.
    """
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it first
            directory.mkdir(mode=DIR_MODE)


def create_private(path: Path) -> BinaryIO:
    """A new file opened for binary writing, mode 0600 from its creation on.

    Raises:
        FileExistsError: ``path`` exists.
    """
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb")


def segment_problem(path: Path, *, deep: bool = False) -> str | None:
    """Why ``path`` is not a complete Parquet file (``None``: it looks fine).

    Cheap by default (the magic bytes at both ends and a footer that fits in the file:
    what a truncated or half-copied segment fails); ``deep`` also reads every row.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(4)
            fh.seek(max(size - 8, 0))
            tail = fh.read(8)
    except FileNotFoundError:
        return None  # compacted away meanwhile
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if size < 12 or head != _MAGIC or tail[4:] != _MAGIC:
        return f"truncated or not Parquet ({size} bytes, no Parquet markers at both ends)"
    if int.from_bytes(tail[:4], "little") + 12 > size:
        return "truncated (its footer is longer than the file)"
    if deep:
        try:
            for _ in pq.ParquetFile(path).iter_batches():
                pass
        except (OSError, pa.ArrowException) as exc:
            return f"unreadable: {exc}"
    return None


def tmp_name(final: str) -> str:
    # The pid lets recover() tell a dead writer's leftover from a live writer's work.
    return f"{final}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


def tmp_owner(name: str) -> int | None:
    try:
        return int(name.rsplit(".", 2)[-2].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def spool_uid(segment_name: str) -> str | None:
    if segment_name.startswith("seg-") and segment_name.endswith(".parquet"):
        return segment_name[4:-8]
    return None


def parse_spool_name(name: str) -> tuple[int, str] | None:
    if not name.endswith(".jsonl"):
        return None
    pid, _, uid = name[:-6].partition("-")
    if not pid.isdigit() or not uid:
        return None
    return int(pid), uid
