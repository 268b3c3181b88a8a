"""Estimators for exported models, with no TensorFlow import: ONNX through onnxruntime, TFLite
through the LiteRT interpreter.

An exported model carries its metadata (backbone, image size, channel order, margin, which output
is which head), written by `export.py` (inside an ONNX file, beside a TFLite file), so it runs
without the training stack.
"""

import importlib
import json
from pathlib import Path

import numpy as np

from age_gender.errors import UserError
from age_gender.estimator import CropEstimator, Prediction, decode

METADATA_KEY = "age_gender"


def import_runtime(module: str, path: Path, extra: str):
    """The runtime module that runs `path`, or one line saying how to install it; and `path`
    must exist."""
    try:
        runtime = importlib.import_module(module)
    except ImportError as error:
        raise UserError(
            f"running {path.name} needs {module}: pip install 'age-gender[{extra}]'"
        ) from error
    if not path.is_file():
        raise UserError(f"weight file {path} not found")
    return runtime


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
        onnxruntime = import_runtime("onnxruntime", path, "onnx")
        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for broken files
            raise UserError(f"{path} is not an ONNX model: {error}") from error
        return cls(session, str(path))

    def predict_crops(self, crops: np.ndarray) -> list[Prediction]:
        feeds = {self._input: crops.astype(np.float32)}
        gender, age = self.session.run(self._outputs, feeds)
        return decode(gender, age)


def sidecar_path(model_path: Path) -> Path:
    """The JSON beside a TFLite file that holds its metadata: `model.tflite.json`."""
    return model_path.with_name(f"{model_path.name}.json")


class TFLiteEstimator(CropEstimator):
    """A TFLite model exported by `export.py`, run by the LiteRT interpreter (one at a time)."""

    def __init__(self, interpreter, metadata: dict, name: str):
        self.interpreter = interpreter
        self.metadata = metadata
        self.name = name
        self.img_size = metadata["img_size"]
        self.margin = metadata["margin"]
        self._input = interpreter.get_input_details()[0]["index"]
        indices = {output["name"]: output["index"] for output in interpreter.get_output_details()}
        self._outputs = [indices[metadata["outputs"][head]] for head in ("pred_gender", "pred_age")]

    @classmethod
    def load(cls, path: Path, metadata: dict | None = None) -> "TFLiteEstimator":
        """`path` with the metadata of its sidecar JSON, unless given."""
        litert = import_runtime("ai_edge_litert.interpreter", path, "litert")
        if metadata is None:
            sidecar = sidecar_path(path)
            if not sidecar.is_file():
                raise UserError(f"{sidecar} not found: export.py writes it beside {path.name}")
            metadata = json.loads(sidecar.read_text())
        try:
            interpreter = litert.Interpreter(model_path=str(path))
        except Exception as error:  # LiteRT raises ValueError or RuntimeError for broken files
            raise UserError(f"{path} is not a TFLite model: {error}") from error
        return cls(interpreter, metadata, str(path))

    def predict_crops(self, crops: np.ndarray) -> list[Prediction]:
        self.interpreter.resize_tensor_input(self._input, crops.shape)
        self.interpreter.allocate_tensors()
        self.interpreter.set_tensor(self._input, crops.astype(np.float32))
        self.interpreter.invoke()
        gender, age = (self.interpreter.get_tensor(index) for index in self._outputs)
        return decode(gender, age)
