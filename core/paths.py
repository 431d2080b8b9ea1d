"""Paths shared by the commands: checks before reading a data file or writing files and folders, and safe rewrites."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.errors import TitlecraftError

# File suffixes by format, in any case: readers choose by suffix (import, prepare, train, eval), so
# writers check names against the same lists.
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
TEXT_SUFFIXES = (".txt",)
# What the pair readers of prepare and eval take (dataset._READERS).
PAIR_FILE_SUFFIXES = (*PARQUET_SUFFIXES, ".jsonl", *CSV_SUFFIXES)


def refuse_empty_path(path: str | None, option: str) -> None:
    """Refuse an empty path given on the command line: to pathlib and open() it is the current folder,
    so `--out ""` (often an unset shell variable) wrote there unasked."""
    if path == "":
        raise TitlecraftError(f"{option} is empty: give a path to write to")


def refuse_folder_as_data_file(path: str | os.PathLike) -> None:
    """Refuse a folder named where a pair file is read (prepare --in, eval --data and --retrieval-pool,
    train --train/--val/--extra), naming the pair files in it: the prepared folder given for its split
    was reported as "no such file", "does not exist" or "unsupported file type ''", though it is there."""
    path = Path(path)
    if not path.is_dir():
        return
    files = sorted(item.name for item in path.iterdir() if item.suffix.lower() in PAIR_FILE_SUFFIXES)
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    which = f"one of its pair files ({shown})" if files else "a pair file"
    raise TitlecraftError(f"{path} is a folder; name {which}")


def refuse_file_in_the_way(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Refuse ``path`` when a file sits where a folder is needed: at one of the folders above it, or at
    ``path`` itself when it is to be a ``folder``. Checked before anything is created or computed, as
    mkdir would fail later with the bare OS text "File exists" or "Not a directory", naming no culprit."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise TitlecraftError(f"cannot write {path}: it is a file, not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TitlecraftError(f"cannot write {path}: {parent} is a file, not a folder")
            return


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` in one rename of a file written beside it: a kill or a full disk
    meanwhile leaves the old file whole, where rewriting it in place would leave it empty or torn."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
