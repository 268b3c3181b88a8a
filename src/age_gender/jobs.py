"""The one engine of resumable parallel jobs (annotate, landmarks; the face cache uses its pool):
parts written whole beside the output and guarded by the run's settings, spawned worker
processes, and a worker that dies failing the run in one line instead of hanging it.

A killed run started again with the same settings does only the parts still missing; parts of
other settings (another root, model or detector) are never mixed in.
"""

import contextlib
import ctypes
import fcntl
import json
import multiprocessing
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2
import pandas as pd

from age_gender.errors import UserError
from age_gender.files import atomic_output, remove_leftovers

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


class Lock:
    """An exclusive lock on `folder` (its lock file, or with `name` None the folder itself,
    which leaves no file among the outputs), held until `close`, or one line saying another run
    holds it: two runs writing one output would take each other's parts."""

    def __init__(self, folder: Path, name: str | None = "lock"):
        flags = os.O_RDONLY if name is None else os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self.descriptor = None
        self.descriptor = os.open(folder if name is None else folder / name, flags, 0o644)
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            self.close()
            raise UserError(f"another run is writing {folder}; wait for it to finish, or "
                            "choose another output") from error  # fmt: skip

    def close(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None

    __del__ = close  # as a file object does: a lock nobody holds any more is released


class Parts:
    """The finished parts of a run, in a folder beside the output (`.<output>.parts/`), with the
    settings that made them."""

    def __init__(self, output: Path, settings: dict, overwrite: bool):
        self.folder = output.with_name(f".{output.name}.parts")
        settings = json.loads(json.dumps(settings, default=str))  # as it reads back
        settings_file = self.folder / "settings.json"
        if self.folder.is_dir():
            self.lock = Lock(self.folder)
            try:
                earlier = json.loads(settings_file.read_text())
            except (OSError, ValueError):  # missing or damaged: not this run's
                earlier = None
            if not isinstance(earlier, dict):  # valid JSON, but not settings
                earlier = None
            if earlier == settings:
                remove_leftovers(self.folder)  # a part a kill cut short
                return
            if not overwrite:
                changed = sorted(
                    key
                    for key in settings.keys() | (earlier or {}).keys()
                    if earlier is None or settings.get(key) != earlier.get(key)
                )
                what = f"another {', '.join(changed)}" if earlier else "settings it cannot read"
                raise UserError(
                    f"{self.folder} holds an unfinished run made with {what}; run again as "
                    "before to finish it, or pass --overwrite to start over"
                )  # fmt: skip
            shutil.rmtree(self.folder)
            self.lock.close()
        self.folder.mkdir()
        self.lock = Lock(self.folder)
        with atomic_output(settings_file) as temporary:
            temporary.write_text(json.dumps(settings, indent=1))

    def path(self, index: int) -> Path:
        return self.folder / f"{index:06d}.pkl"

    def done(self, index: int, keys: list[str], column: str) -> bool:
        """Whether part `index` exists and holds exactly these keys (image names, each once) in
        `column`."""
        path = self.path(index)
        wanted = list(dict.fromkeys(keys))
        try:
            return pd.read_pickle(path)[column].unique().tolist() == wanted
        except Exception:  # missing, or damaged (pickle raises many types): done again
            return False

    def write(self, index: int, table: pd.DataFrame) -> None:
        with atomic_output(self.path(index)) as temporary:
            table.to_pickle(temporary)

    def merge(self, count: int) -> pd.DataFrame:
        return pd.concat([pd.read_pickle(self.path(index)) for index in range(count)],
                         ignore_index=True)  # fmt: skip

    def release(self) -> None:
        """Lets another run take the parts (this process's run is over)."""
        self.lock.close()

    def remove(self) -> None:
        shutil.rmtree(self.folder)
        self.release()


def start_worker(initializer: Callable | None, initargs: tuple) -> None:
    """A worker's set-up: one thread each for OpenCV and TensorFlow (the workers are the
    parallelism); it dies with the process that started it (Linux), so a killed run leaves no
    worker blocked on a pipe nobody reads; then `initializer`."""
    cv2.setNumThreads(1)
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")  # read when TensorFlow starts
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before the line above
            os._exit(1)
    if initializer is not None:
        initializer(*initargs)


WORKER_MEMORY = 300_000_000  # bytes one worker takes: Python, OpenCV, a detector, its images


def available_memory() -> int:
    """Bytes of memory free for new processes: MemAvailable on Linux, within this process's
    cgroup limit where one is set (a container, a Slurm job); else the free pages."""
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()  # "max": no limit
        used = int((cgroup / "memory.current").read_text())
        inside = int(limit) - used if limit.isdigit() else None
    except (OSError, ValueError):
        inside = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                host = int(line.split()[1]) * 1024
                return host if inside is None else max(0, min(host, inside))
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # not told (macOS has no such name): no cap
        return 1 << 62


def worker_count(requested: int) -> int:
    """`requested`, or as many workers as the free memory holds, with a note when fewer."""
    available = available_memory()
    fit = max(1, available // WORKER_MEMORY)
    if requested <= fit:
        return requested
    print(f"note: {fit} workers, not {requested}: each takes about "
          f"{WORKER_MEMORY / 1e9:.1f} GB and {available / 1e9:.1f} GB are free")  # fmt: skip
    return fit


class WorkerPool:
    """Spawned worker processes (never forked from a process running TensorFlow, which hangs),
    each set up once by `initializer` (by default, none beyond `start_worker`'s); no more of
    them than the free memory holds."""

    def __init__(self, workers: int, initializer: Callable | None = None, initargs: tuple = ()):
        workers = worker_count(workers)
        context = multiprocessing.get_context("spawn")
        self.executor = ProcessPoolExecutor(workers, context, start_worker, (initializer, initargs))

    def map(self, function: Callable, items: Iterable, chunksize: int = 1) -> Iterator:
        """`function` over `items` in the workers, results in order, submitted at once in
        chunks of `chunksize` items (many small tasks: one future per chunk, not per item)."""
        return self.executor.map(function, items, chunksize=chunksize)

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.executor.shutdown(wait=error is None, cancel_futures=True)


@contextlib.contextmanager
def failing_in_one_line(what: str) -> Iterator[None]:
    """Turns a worker that died (killed, out of memory, a crash in a library) into one line."""
    try:
        yield
    except BrokenProcessPool as error:
        raise UserError(
            f"a worker process died while {what} (killed, out of memory, or a crash in a "
            "library); the finished parts are kept: run the same command again to go on"
        ) from error
