"""Age and gender estimation from faces, trained with Keras/TensorFlow.

`from age_gender import FaceAnalyzer` is the Python API (`api.py`); it is imported on first use,
so a worker process importing a submodule does not load the models' code.

TensorFlow is imported with its start-up lines dropped (`quiet.py`: TensorFlow >= 2.20 writes
them through absl before its log level applies); `TF_CPP_MIN_LOG_LEVEL=0` brings them back.
"""

import importlib.abc
import importlib.util
import sys

from age_gender.quiet import choose_quiet, quiet_stderr


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
        with quiet_stderr():
            self.loader.exec_module(module)


if choose_quiet() and "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlowImport())


def __getattr__(name: str):
    if name == "FaceAnalyzer":
        from age_gender.api import FaceAnalyzer

        return FaceAnalyzer
    raise AttributeError(f"module 'age_gender' has no attribute {name!r}")
