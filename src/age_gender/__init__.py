"""Age and gender estimation from faces, trained with Keras/TensorFlow.

`from age_gender import FaceAnalyzer` is the Python API (`api.py`); it is imported on first use,
so a worker process importing a submodule does not load the models' code.

TensorFlow's start-up lines (oneDNN, CPU features, CUDA drivers not found on a machine without a
GPU, which reads like a failure) are not the user's business: unless the user set
TF_CPP_MIN_LOG_LEVEL, they are dropped. TensorFlow >= 2.20 writes them through absl before its
log level applies, so the C-level stderr is silenced while `tensorflow` is imported, and only
then: an import error still shows, as a Python exception raised after it. The level is 3, since
the CUDA line is logged as an error when devices are listed; TensorFlow's C++ errors are then
hidden too (Python exceptions are not): `TF_CPP_MIN_LOG_LEVEL=0` brings every line back.
"""

import importlib.abc
import importlib.util
import os
import sys


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
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
        saved, quiet = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 2)
        try:
            self.loader.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(quiet)


# The marker passes the choice to child processes (workers, scripts run by scripts), which
# inherit the level set here and must not take it for the user's.
QUIET = "AGE_GENDER_QUIET_TENSORFLOW"
if "TF_CPP_MIN_LOG_LEVEL" not in os.environ or os.environ.get(QUIET) == "1":
    os.environ.update({"TF_CPP_MIN_LOG_LEVEL": "3", QUIET: "1"})
    if "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def __getattr__(name: str):
    if name == "FaceAnalyzer":
        from age_gender.api import FaceAnalyzer

        return FaceAnalyzer
    raise AttributeError(f"module 'age_gender' has no attribute {name!r}")
