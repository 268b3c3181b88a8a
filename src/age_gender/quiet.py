"""Libraries' lines that are not the user's business, silenced where they are written: here
and only here.

Unless the user asks for more lines (TF_CPP_MIN_LOG_LEVEL 0, 1 or 2: then they show),
TensorFlow's start-up lines (oneDNN, CPU features, "CUDA drivers not found" on a machine without
a GPU, which reads like a failure) and LiteRT's XNNPACK notice are dropped. They are written by
C++ code that no Python setting reaches, so file descriptor 2 points at /dev/null while that code
runs, and only then: an error still shows, as the Python exception raised after it.
"""

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Iterator

# The marker passes the choice to child processes (workers, scripts run by scripts), which
# inherit the level set here and must not take it for the user's.
QUIET = "AGE_GENDER_QUIET_TENSORFLOW"


def choose_quiet() -> bool:
    """Sets TensorFlow's level to 3 unless the user chose a level that shows more; True when
    lines are dropped. The level is 3, since the CUDA line is logged as an error when devices
    are listed. A user's 3 asks for quiet too: TensorFlow's level alone does not reach the
    oneDNN and CUDA lines, so they are dropped as by default."""
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip()
    wants_lines = level.isdigit() and int(level) < 3 and os.environ.get(QUIET) != "1"
    if not wants_lines:
        os.environ.update({"TF_CPP_MIN_LOG_LEVEL": "3", QUIET: "1"})
    return not wants_lines


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 at /dev/null for the block, when lines are dropped (`choose_quiet`)."""
    if os.environ.get(QUIET) != "1":
        yield
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class QuietTensorFlowImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports `tensorflow` with file descriptor 2 pointed at /dev/null."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # the real finder, once
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            self.loader = spec.loader
            spec.loader = self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with quiet_stderr():
            self.loader.exec_module(module)


def install() -> None:
    """Imports TensorFlow quietly from now on (`choose_quiet`), unless it is imported already."""
    if choose_quiet() and "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, QuietTensorFlowImport())


@contextlib.contextmanager
def quiet_tf2onnx() -> Iterator[None]:
    """tf2onnx logs each optimizer pass it cannot apply as a warning with a traceback (harmless:
    the graph stays as it was, and parity is checked after), and Keras' bridge to it imports
    with a NumPy FutureWarning: neither is the user's business."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)
