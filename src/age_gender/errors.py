"""User mistakes become one clear line and a non-zero exit, never a traceback."""

import argparse
import errno
import functools
import math
import os
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

T = TypeVar("T")


def printable(name: str) -> str:
    """A file name (or a line naming files) as text a table or a terminal can hold: bytes that
    are not UTF-8 (kept by Python as surrogates) become U+FFFD."""
    return os.fsencode(name).decode("utf-8", "replace")


class UserError(Exception):
    """Something the user can fix: the message says what is wrong and what to do."""


DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def disk_error(error: BaseException | None) -> BaseException | None:
    """The full-disk (or quota, or I/O) error behind `error`, following its causes: h5py, zipfile,
    pandas and TensorFlow wrap the OSError or keep only its words."""
    words = [os.strerror(code) for code in DISK_ERRORS]
    while error is not None:
        if isinstance(error, OSError) and error.errno in DISK_ERRORS:
            return error
        if any(word in str(error) for word in words):
            return error
        error = error.__cause__ or error.__context__
    return None


def disk_reason(error: BaseException) -> str:
    """The words for the disk error behind `error` (`disk_error`), as a refusal line says it."""
    cause = disk_error(error)
    return os.strerror(cause.errno) if isinstance(cause, OSError) else "the disk is full"


def exit_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Wraps an entry point so a UserError prints `error: ...` and exits with status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {printable(str(error))}", file=sys.stderr)
            sys.exit(2)
        except OSError as error:  # a writer outside `files.atomic_output` (a log, a library)
            if error.errno == errno.ENAMETOOLONG:  # any path an option gave, where it is used
                path = printable(str(error.filename)) if error.filename else "a path"
                print(f"error: {path}: a name in it is longer than the file system takes; "
                      "choose a shorter one", file=sys.stderr)  # fmt: skip
                sys.exit(2)
            if disk_error(error) is None:
                raise
            where = printable(f" {error.filename}") if error.filename else ""
            print(f"error: cannot write{where}: {disk_reason(error)}; free some space or choose "
                  "another place", file=sys.stderr)  # fmt: skip
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes read like every other user error: one `error:` line, exit 2."""

    def __init__(self, *args, **kwargs):
        # No abbreviations: `--output m.onnx` must not be taken for `--output_dir m.onnx`.
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def number(
    kind: type = float, minimum: float | None = None, maximum: float | None = None
) -> Callable[[str], float]:
    """An argparse type: a finite int or float, within [`minimum`, `maximum`] when given."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be {maximum} at most, not {text}")
        return value

    return parse


def given(kind: type, what: str) -> Callable[[str], object]:
    """An argparse type: `kind` of a text that is not blank (`--model=` names nothing, and
    `Path("")` would be the current folder); `what` says what to give instead."""

    def parse(text: str):
        if not text.strip():
            raise argparse.ArgumentTypeError(f"is empty: give {what}")
        return kind(text)

    return parse
