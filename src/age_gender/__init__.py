"""Age and gender estimation from faces, trained with Keras/TensorFlow.

`from age_gender import FaceAnalyzer` is the Python API (`apps/api.py`); it is imported on first
use, so a worker process importing a submodule does not load the models' code.

TensorFlow is imported with its start-up lines dropped (`quiet.py`: TensorFlow >= 2.20 writes
them through absl before its log level applies); `TF_CPP_MIN_LOG_LEVEL=0` brings them back.
Keras runs on TensorFlow here (tf.data, the distribution strategies and the exports are
TensorFlow's), whatever KERAS_BACKEND a user's shell sets for other work.
"""

import os

from age_gender import quiet

os.environ["KERAS_BACKEND"] = "tensorflow"
quiet.install()


def __getattr__(name: str):
    if name == "FaceAnalyzer":
        from age_gender.apps.api import FaceAnalyzer

        return FaceAnalyzer
    raise AttributeError(f"module 'age_gender' has no attribute {name!r}")
