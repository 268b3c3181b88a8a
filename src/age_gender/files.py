"""Outputs are written under a temporary name and renamed, so a crash never leaves half a file."""

import contextlib
import ctypes
import errno
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path

from age_gender.errors import UserError, disk_error, disk_reason
from age_gender.images import is_image_file


def cannot_write(what: Path | str, error: OSError, advice: str | None = None) -> UserError:
    """The one line for an output the system refused: what, the system's reason, what to do."""
    return UserError(f"cannot write {what}: {error.strerror or error}"
                     + (f"; {advice}" if advice else ""))  # fmt: skip


def check_writable(folder: Path, output: Path) -> None:
    """Fails when nothing can be created in `folder` (read-only, no permission): checked by
    creating a file there, since permission bits say nothing of read-only mounts or root."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        advice = f"nothing can be made in {folder}; choose another place"
        raise cannot_write(output, error, advice) from error


def nearest_existing(path: Path) -> Path:
    """`path`, or the nearest of the folders above it that exists."""
    return next((place for place in (path, *path.parents) if place.exists()), path)


def check_output_path(path: Path, overwrite: bool) -> None:
    """Fails before any work when the output could not be written or would clobber a file; an
    earlier output a killed run had moved aside is put back first (and its partial new one
    cleared), so it counts as there."""
    if TEMPORARY.fullmatch(path.name):
        raise UserError(
            f"{path.name} is named as this toolkit names its temporary files (a later run "
            "would take it for a killed run's); choose another name"
        )
    if not path.parent.is_dir():
        blocker = nearest_existing(path.parent)
        if blocker.exists() and not blocker.is_dir():
            raise UserError(f"output folder {path.parent} cannot be made: {blocker} is a file")
        raise UserError(f"output folder {path.parent} does not exist; create it or choose another")
    remove_leftovers(path.parent, [path.name])
    if path.is_dir():
        raise UserError(f"{path} is a folder; name a file")
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    if path.exists() and is_image_file(path):  # outputs are tables: this is someone's input
        raise UserError(f"{path} is an image, not an earlier output; name another file")
    check_writable(path.parent, path)


def check_output_folder(path: Path) -> None:
    """Fails before any work when the output folder could not be made or written: a file stands
    where it (or a folder above it) should be, or the place is read-only."""
    if path.exists() and not path.is_dir():
        raise UserError(f"output folder {path} is a file; name a folder")
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise UserError(f"output folder {path} cannot be made: {existing} is a file")
    check_writable(existing, path)


def check_room(folder: Path, needed: int, what: str) -> None:
    """Fails when `needed` bytes cannot be set aside in `folder` (the nearest existing folder
    above it): reserved in a temporary file, so quotas count too, where the file system can
    reserve; elsewhere the free space it reports (if it reports one) must hold them.

    Checked before h5py writes (training's backups and best model): a disk that fills under
    h5py leaves a file it cannot close, and the process ends in a segmentation fault, so
    `atomic_output`'s one-line refusal after the fact would come too late there."""
    place = nearest_existing(folder)
    total, _, free = shutil.disk_usage(place)
    try:
        with tempfile.TemporaryFile(dir=place) as probe:
            reserved = reserve(probe.fileno(), needed)
        if not reserved and total and free < needed:  # total 0: sizes unknown (ramfs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError as error:
        if disk_error(error) is None:
            raise
        raise UserError(
            f"{what} needs at least {megabytes(needed)} in {folder}, which has "
            f"{megabytes(free)} free; free some space or choose another place"
        ) from error


def reserve(descriptor: int, size: int) -> bool:
    """Sets `size` bytes aside for an open file with Linux's fallocate(2); False where the file
    system or the platform cannot. Not `os.posix_fallocate`: where the file system cannot
    reserve (ramfs, some network and FUSE file systems), glibc's version writes a byte into
    every block instead, which for a backup of EfficientNetB3 is 150 MB each epoch."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    fallocate = libc.fallocate
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if fallocate(descriptor, 0, 0, size) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EOPNOTSUPP, errno.ENOSYS):
        return False
    raise OSError(code, os.strerror(code))


def make_output_folder(path: Path) -> Path:
    """Creates the output folder (and its parents), or says in one line why it cannot."""
    check_output_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create output folder {path}: {error.strerror}") from error
    return path


@contextlib.contextmanager
def output_folder(path: Path) -> Iterator[Path]:
    """`make_output_folder` for the work in the block; the folders it made are removed again
    when that work fails before anything was written in them (a refused run leaves no empty
    folder behind)."""
    made = [folder for folder in (path, *path.parents) if not folder.exists()]
    make_output_folder(path)
    try:
        yield path
    except BaseException:
        for folder in made:  # deepest first; one that holds anything stays, with its parents
            try:
                folder.rmdir()
            except FileNotFoundError:  # removed already, by the failed work's own clean-up
                continue
            except OSError:
                break
        raise


def check_inputs_kept(outputs: list[Path], inputs: list[Path]) -> None:
    """Refuses outputs that would replace an input file (the same path, or a link to it), or
    an output folder, replaced whole, that holds one."""
    sources = [path.resolve() for path in inputs]
    kept = {place for source in sources for place in (source, *source.parents)}
    replaced = [path for path in outputs if path.resolve() in kept]  # one lookup per output
    if replaced:
        others = f" and {len(replaced) - 1} more" if len(replaced) > 1 else ""
        raise UserError(
            f"writing {replaced[0]}{others} would replace an input file; "
            "choose another output folder"
        )


# `atomic_output`'s names: `.tmp<pid>.<name>` while being written, `.old<pid>.<name>` for the
# earlier folder output moved aside. Made and found here only, so a resume finds what a kill left.
TEMPORARY = re.compile(r"\.(tmp|old)(\d{1,7})\.(.+)", re.DOTALL)  # Linux pids: 7 digits at most


def temporary_path(path: Path, kind: str = "tmp", pid: int | None = None) -> Path:
    """Where `atomic_output` writes `path` (kind "tmp"), or moves its earlier version aside
    ("old"), in process `pid` (this one by default)."""
    return path.with_name(f".{kind}{os.getpid() if pid is None else pid}.{path.name}")


def running(pid: int) -> bool:
    """Whether process `pid` runs (a temporary of a live writer is not a leftover). A zombie, a
    killed process its parent has not reaped yet (or never will, under a container's PID 1 that
    reaps none), does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # Linux: the state follows the name, which may hold ")" itself
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # gone since, or no /proc (macOS): as kill said
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def leftovers(
    folder: Path, names: Collection[str] | None = None, recursive: bool = False
) -> list[Path]:
    """What killed `atomic_output` blocks left in `folder` (and below it, if `recursive`), for
    outputs called one of `names`: temporaries and moved-aside outputs of processes that no
    longer run. `names` None (any output) is for folders only the toolkit writes in (a backup
    folder, annotate's parts): elsewhere a user's own file may be named like one."""
    found = []
    for path in Path(folder).glob("**/.*" if recursive else ".*"):
        match = TEMPORARY.fullmatch(path.name)
        if match and (names is None or match[3] in names) and not running(int(match[2])):
            found.append(path)
    return sorted(found)


def remove_leftovers(
    folder: Path, names: Collection[str] | None = None, recursive: bool = False
) -> int:
    """Clears what killed writers left in `folder` (see `leftovers`) before a run resumes or
    redoes its output there: a partial temporary is deleted; an earlier output moved aside whose
    replacement never arrived is put back, so nothing is lost. Returns how many it found."""
    found = leftovers(folder, names, recursive)
    for path in found:
        kind, original = TEMPORARY.fullmatch(path.name).group(1, 3)
        target = path.with_name(original)
        if kind == "old" and not target.exists():
            os.replace(path, target)
        else:
            remove(path)
    return len(found)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it to `path` only if the block succeeds.

    The block may write a file or a folder (a SavedModel) there.

    The temporary name ends as `path`'s does, for writers that choose the format by the suffix
    (OpenCV) or check it (Keras' `.weights.h5`).
    """
    path = Path(path)
    temporary, earlier = temporary_path(path), temporary_path(path, "old")
    try:
        yield temporary
        if temporary.is_dir() and path.is_dir():  # a folder output replaces the earlier one,
            os.replace(path, earlier)  # moved aside first: one of the two is always there
            try:
                os.replace(temporary, path)
            except OSError:
                os.replace(earlier, path)
                raise
        else:
            os.replace(temporary, path)
    except Exception as error:
        if disk_error(error) is None:
            raise
        written = size_of(temporary)
        remove(temporary)  # before the free space is measured
        raise UserError(disk_full_message(path, written, error)) from error
    finally:
        remove(earlier)
        remove(temporary)


def remove(path: Path) -> None:
    """Deletes a file or a folder, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def identity(path: Path) -> str:
    """A file as a cache key: its real path, size and time of change, so a file replaced in
    place under the same name is a new key (a missing one is its path: the reader reports it)."""
    try:
        status = path.stat()
    except OSError:
        return str(path)
    return f"{path.resolve()}|{status.st_size}|{status.st_mtime_ns}"


def size_of(path: Path) -> int:
    """Bytes in a file or a folder's files (what a writer had written when it failed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(part.stat().st_size for part in path.rglob("*") if part.is_file())


def megabytes(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def disk_full_message(path: Path, written: int, error: BaseException) -> str:
    """One line: which file, what failed, how much it needed at least, how much is free."""
    reason = disk_reason(error)
    free = shutil.disk_usage(nearest_existing(path.parent)).free
    needed = f"it needs more than {megabytes(written)}, " if written else ""
    return (
        f"cannot write {path}: {reason} ({needed}{megabytes(free)} free there); "
        "free some space or choose another place (nothing was replaced)"
    )
