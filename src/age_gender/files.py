"""Outputs are written under a temporary name and renamed, so a crash never leaves half a file."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from age_gender.errors import UserError


def check_output_path(path: Path, overwrite: bool) -> None:
    """Fails before any work when the output could not be written or would clobber a file."""
    if not path.parent.is_dir():
        raise UserError(f"output folder {path.parent} does not exist; create it or choose another")
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds.

    The temporary name keeps the suffix, for writers that choose the format by it (OpenCV).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
