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
from age_gender.estimator import CropEstimator

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
        raise UserError(f"weight file {path} {'is a folder' if path.is_dir() else 'not found'}")
    return runtime


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
            raise UserError(f"{path} is not an ONNX model: {error}") from error
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
        super().__init__(json.loads(metadata), name)
        self.session = session
        self._input = session.get_inputs()[0].name
        self._outputs = [
            self.metadata["outputs"]["pred_gender"],
            self.metadata["outputs"]["pred_age"],
        ]

    @classmethod
    def load(cls, path: Path) -> "OnnxEstimator":
        return cls(onnx_session(path), str(path))

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feeds = {self._input: crops.astype(np.float32)}
        gender, age = self.session.run(self._outputs, feeds)
        return gender, age


def sidecar_path(model_path: Path) -> Path:
    """The JSON beside a TFLite file that holds its metadata: `model.tflite.json`."""
    return model_path.with_name(f"{model_path.name}.json")


class TFLiteEstimator(CropEstimator):
    """A TFLite model exported by `export.py`, run by the LiteRT interpreter (one at a time)."""

    def __init__(self, interpreter, metadata: dict, name: str):
        super().__init__(metadata, name)
        self.interpreter = interpreter
        self._input = interpreter.get_input_details()[0]["index"]
        indices = {output["name"]: output["index"] for output in interpreter.get_output_details()}
        self._outputs = [indices[metadata["outputs"][head]] for head in ("pred_gender", "pred_age")]

    @classmethod
    def load(cls, path: Path) -> "TFLiteEstimator":
        """`path` with the metadata of its sidecar JSON."""
        litert = import_runtime("ai_edge_litert.interpreter", path, "litert")
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise UserError(f"{sidecar} not found: export.py writes it beside {path.name}")
        metadata = json.loads(sidecar.read_text())
        try:
            interpreter = litert.Interpreter(model_path=str(path))
        except Exception as error:  # LiteRT raises ValueError or RuntimeError for broken files
            raise UserError(f"{path} is not a TFLite model: {error}") from error
        return cls(interpreter, metadata, str(path))

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.interpreter.resize_tensor_input(self._input, crops.shape)
        self.interpreter.allocate_tensors()
        self.interpreter.set_tensor(self._input, crops.astype(np.float32))
        self.interpreter.invoke()
        gender, age = (self.interpreter.get_tensor(index) for index in self._outputs)
        return gender, age


DEX_DIR = Path("pretrained_models") / "dex"
DEX_FILES = {
    "age": "vgg_ilsvrc_16_age_imdb_wiki.onnx",  # real age, trained on IMDB-WIKI
    "apparent_age": "vgg_ilsvrc_16_age_chalearn_iccv2015.onnx",  # ChaLearn LAP 2015
    "gender": "vgg_ilsvrc_16_gender_imdb_wiki.onnx",
}
DEX_URL = "https://github.com/onnx/models/tree/main/validated/vision/body_analysis/age_gender"


class DexEstimator(CropEstimator):
    """DEX (Rothe et al., IJCV 2018): the VGG-16 age and gender networks as ONNX, run by
    onnxruntime. Each takes N x 3 x 224 x 224 BGR 0..255 (the face with a 40 % margin on each
    side, as the paper crops it); age is the expected value of a 101-way softmax, gender a
    2-way softmax (0 = female)."""

    METADATA = {"backbone": "VGG16 (DEX)", "img_size": 224, "channel_order": "BGR", "margin": 0.4}

    def __init__(self, age_session, gender_session, name: str):
        super().__init__(dict(self.METADATA), name)
        self.sessions = (gender_session, age_session)

    @classmethod
    def load(cls, apparent: bool = False, folder: Path = DEX_DIR) -> "DexEstimator":
        """`dex` (real age) or `dex-apparent` (apparent age): the files must be in `folder`."""
        names = [DEX_FILES["apparent_age" if apparent else "age"], DEX_FILES["gender"]]
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise UserError(
                f"DEX needs {', '.join(str(folder / name) for name in missing)}: download them "
                f"from {DEX_URL} (see README.md)"
            )
        age, gender = (onnx_session(folder / name) for name in names)
        return cls(age, gender, "dex-apparent" if apparent else "dex")

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), np.float32)
        gender, age = (run_by_batch(session, images) for session in self.sessions)
        return gender, age


def run_by_batch(session, images: np.ndarray) -> np.ndarray:
    """The session's first output for `images`; one at a time when its batch size is fixed at
    1 (as in the published DEX files)."""
    feed = next(feed for feed in session.get_inputs() if len(feed.shape) == 4)  # the image
    if feed.shape[0] == 1:
        return np.concatenate([session.run(None, {feed.name: image[None]})[0] for image in images])
    return session.run(None, {feed.name: images})[0]
