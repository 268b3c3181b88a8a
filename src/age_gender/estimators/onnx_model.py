"""A model exported to ONNX by export.py, run by onnxruntime without TensorFlow; its card (and
which output is which head) is inside the file."""

from pathlib import Path

import numpy as np

from age_gender.errors import UserError
from age_gender.estimators.base import (
    METADATA_KEY,
    CropEstimator,
    exported_card,
    head_outputs,
    import_runtime,
)

OLDEST_OPSET = 7  # the oldest that onnxruntime implements every operator of
UPGRADED_OPSET = 11


def onnx_session(path: Path):
    """An onnxruntime session on the CPU for `path`, or one line saying why there is none.

    A model of an opset older than onnxruntime implements (early Caffe conversions) is
    upgraded in memory by ONNX's version converter first.
    """
    onnxruntime = import_runtime("onnxruntime", path, "onnx")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: old opsets draw a warning per load
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for broken files
        upgraded = upgraded_model(path)
        if upgraded is None:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "empty"
            raise UserError(f"{path} is not an ONNX model: {reason}") from error
    return onnxruntime.InferenceSession(upgraded, options, providers=["CPUExecutionProvider"])


def upgraded_model(path: Path) -> bytes | None:
    """The model at `path` converted to opset 11 when its opset is older than onnxruntime
    implements, else None."""
    onnx = import_runtime("onnx", path, "onnx")
    from onnx import version_converter

    try:
        model = onnx.load(str(path))
    except Exception:  # protobuf's DecodeError and others: not an ONNX file
        return None
    opsets = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    if max(opsets, default=UPGRADED_OPSET) >= OLDEST_OPSET:
        return None
    return version_converter.convert_version(model, UPGRADED_OPSET).SerializeToString()


class OnnxEstimator(CropEstimator):
    """An ONNX model exported by `export.py`, run by onnxruntime on the CPU."""

    def __init__(self, session, name: str):
        metadata = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if metadata is None:
            raise UserError(f"{name} was not exported by export.py: it carries no {METADATA_KEY} "
                            "metadata")  # fmt: skip
        card, self.outputs = exported_card(metadata, name)
        super().__init__(card, name)
        self.session = session
        self._input = session.get_inputs()[0].name
        names = [output.name for output in session.get_outputs()]
        shape = session.get_inputs()[0].shape
        self._outputs = head_outputs(card, self.outputs, names, shape, name)

    @classmethod
    def load(cls, path: Path) -> "OnnxEstimator":
        return cls(onnx_session(path), str(path))

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feeds = {self._input: crops.astype(np.float32)}
        gender, age = self.session.run(self._outputs, feeds)
        return gender, age


def run_by_batch(session, images: np.ndarray) -> np.ndarray:
    """The session's first output for `images`; one at a time when its batch size is fixed at
    1 (as in the published DEX files)."""
    feed = next(feed for feed in session.get_inputs() if len(feed.shape) == 4)  # the image
    if feed.shape[0] == 1:
        return np.concatenate([session.run(None, {feed.name: image[None]})[0] for image in images])
    return session.run(None, {feed.name: images})[0]
