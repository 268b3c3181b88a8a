"""Libraries' lines that are not the user's business, silenced where they are written.

Unless the user set TF_CPP_MIN_LOG_LEVEL (then every line shows), TensorFlow's start-up lines
(oneDNN, CPU features, "CUDA drivers not found" on a machine without a GPU, which reads like a
failure) and LiteRT's XNNPACK notice are dropped. They are written by C++ code that no Python
setting reaches, so file descriptor 2 points at /dev/null while that code runs, and only then:
an error still shows, as the Python exception raised after it.
"""

import contextlib
import os
from collections.abc import Iterator

# The marker passes the choice to child processes (workers, scripts run by scripts), which
# inherit the level set here and must not take it for the user's.
QUIET = "AGE_GENDER_QUIET_TENSORFLOW"


def choose_quiet() -> bool:
    """Sets TensorFlow's level to 3 unless the user chose one; True when lines are dropped. The
    level is 3, since the CUDA line is logged as an error when devices are listed."""
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ or os.environ.get(QUIET) == "1":
        os.environ.update({"TF_CPP_MIN_LOG_LEVEL": "3", QUIET: "1"})
    return os.environ.get(QUIET) == "1"


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
