"""Checks on output paths shared by the commands that write files or folders."""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import TitlecraftError


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
