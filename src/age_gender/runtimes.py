"""Estimators for exported models: ONNX through onnxruntime, with no TensorFlow import.

An exported file carries its metadata (backbone, image size, channel order, margin, which output
is which head), written by `export.py`, so it runs without the training stack.
"""

import json
from pathlib import Path

import numpy as np

from age_gender.errors import UserError
from age_gender.estimator import CropEstimator, Prediction, decode

METADATA_KEY = "age_gender"


class OnnxEstimator(CropEstimator):
    """An ONNX model exported by `export.py`, run by onnxruntime on the CPU."""

    def __init__(self, session, name: str):
        metadata = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if metadata is None:
            raise UserError(f"{name} was not exported by export.py: it carries no {METADATA_KEY} "
                            "metadata")  # fmt: skip
        self.metadata = json.loads(metadata)
        self.session = session
        self.name = name
        self.img_size = self.metadata["img_size"]
        self.margin = self.metadata["margin"]
        self._input = session.get_inputs()[0].name
        self._outputs = [
            self.metadata["outputs"]["pred_gender"],
            self.metadata["outputs"]["pred_age"],
        ]

    @classmethod
    def load(cls, path: Path) -> "OnnxEstimator":
        try:
            import onnxruntime
        except ImportError as error:
            raise UserError(
                f"running {path.name} needs onnxruntime: pip install 'age-gender[onnx]'"
            ) from error
        if not path.is_file():
            raise UserError(f"weight file {path} not found")
        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for broken files
            raise UserError(f"{path} is not an ONNX model: {error}") from error
        return cls(session, str(path))

    def predict_crops(self, crops: np.ndarray) -> list[Prediction]:
        feeds = {self._input: crops.astype(np.float32)}
        gender, age = self.session.run(self._outputs, feeds)
        return decode(gender, age)
