"""What every estimator is: a model that gives age and gender for the faces of an image.

`Estimator` is the one interface (demo, annotate, serve, evaluate and the Python API call only
it); `CropEstimator` is a model of this project, whatever runs it, which takes the crops its
`CropSpec` describes. A model that crops faces itself (dlib-models) has no crop spec.
"""

import dataclasses
import importlib
from pathlib import Path

import numpy as np

from age_gender.errors import UserError
from age_gender.faces.crops import CropSpec, face_crops
from age_gender.faces.eye_finder import eye_finder
from age_gender.models.calibration import calibrated
from age_gender.models.card import ModelCard, read_json
from age_gender.schema import HEADS, Prediction

METADATA_KEY = "age_gender"  # where an exported model carries its card


def exported_card(text: str | bytes, source: str) -> tuple[ModelCard, dict]:
    """An exported model's card (export.py writes it into the ONNX file, beside the TFLite
    file, into the SavedModel) and the names of its outputs, parsed and checked the same for
    every format: damaged metadata is one line naming the file and the field."""
    try:
        data = read_json(text, source)
        card = ModelCard.parse(data, source)
    except UserError as error:
        raise UserError(f"{error}; export again") from None
    outputs = data.get("outputs")
    named = isinstance(outputs, dict) and all(isinstance(outputs.get(h), str) for h in HEADS)
    if not named:
        raise UserError(f"the model card of {source} has a wrong outputs ({outputs!r}); "
                        "export again")  # fmt: skip
    return card, outputs


def head_outputs(
    card: ModelCard, outputs: dict, names: list[str], input_shape, source: str
) -> list[str]:
    """The model's output names of the two heads (in `HEADS` order), checked against the outputs
    and input size the exported model really has: the card of another model is one line."""
    outputs = [outputs[head] for head in HEADS]
    missing = [name for name in outputs if name not in names]
    if missing:
        raise UserError(f"the model card of {source} names output {missing[0]!r}, which the "
                        f"model does not have ({', '.join(names)}); export again")  # fmt: skip
    size = [int(side) if side is not None else None for side in input_shape[1:3]]
    if size != [card.img_size] * 2:
        raise UserError(f"the model card of {source} says img_size {card.img_size}, the "
                        f"model takes {size}; export again")  # fmt: skip
    return outputs


def decode(
    gender_probabilities: np.ndarray, age_probabilities: np.ndarray, card: ModelCard | None = None
) -> list[Prediction]:
    """Turns the two softmax outputs into predictions: mean and spread of the age distribution,
    the spread calibrated as the model's `card` records (fitted by training on its validation
    faces), and the card's 90 % interval where it has one."""
    ages = np.arange(age_probabilities.shape[1])
    means = age_probabilities @ ages
    spreads = np.sqrt(np.maximum(age_probabilities @ ages**2 - means**2, 0.0))
    spreads, lows, highs = calibrated(means, spreads, card)
    return [
        Prediction(float(mean), float(spread), float(gender[1]), float(low), float(high))
        for mean, spread, gender, low, high in zip(
            means, spreads, gender_probabilities, lows, highs, strict=True
        )
    ]


# What a model takes of one image's faces: its crops (N, S, S, 3), or the image and its boxes.
FaceInputs = np.ndarray | tuple[np.ndarray, list[tuple]]


def face_inputs(
    image: np.ndarray, boxes: list, eyes: list | None, crop: CropSpec | None
) -> FaceInputs:
    """What a model takes of one image's faces, made without the model (so in a worker process,
    from the crop spec alone): for a model of this project its crops, aligned or turned upright
    by the eyes if it was trained so (eyes not given are found by dlib's predictor); for one
    that crops faces itself (`crop` None) the image and its boxes."""
    if crop is None:
        return image, list(boxes)
    eyes = list(eyes or [None] * len(boxes))
    if crop.needs_eyes:  # the detector's eyes where it gave them (MTCNN), else dlib's predictor's
        eyes = [given if given is not None else eye_finder().eyes(image, box)
                for box, given in zip(boxes, eyes, strict=True)]  # fmt: skip
    return face_crops(image, list(boxes), crop, eyes)


class Estimator:
    """Age and gender of the faces `boxes` of an RGB uint8 image.

    `crop_spec` says which crops the model takes (None: it crops faces itself), `card` what the
    model file records (None: not a model of this project), `tta` the test-time augmentation
    (`TTA_MODES`; only for a model with a crop spec).
    """

    name: str
    crop_spec: CropSpec | None = None
    card: ModelCard | None = None
    tta: str = "none"

    def predict(
        self, image: np.ndarray, boxes: list[tuple], eyes: list | None = None
    ) -> list[Prediction]:
        """Predictions for the faces `boxes` of an image; `eyes` (one per box, or None) are the
        detector's, which an aligned or upright model uses instead of finding them itself."""
        return self.predict_inputs([self.inputs(image, boxes, eyes)])

    def inputs(self, image: np.ndarray, boxes: list[tuple], eyes: list | None = None) -> FaceInputs:
        """This model's `face_inputs` of the faces `boxes` of an image."""
        return face_inputs(image, boxes, eyes, self.crop_spec)

    def predict_inputs(
        self, inputs: list[FaceInputs], batch_size: int | None = None
    ) -> list[Prediction]:
        """Predictions for the faces of several images, in order, from each image's
        `face_inputs`: one model call for them all where the model allows (`batch_size` faces
        at most a call)."""
        raise NotImplementedError

    def set_options(self, margin: float | None = None, tta: str | None = None) -> None:
        """`--margin` and `--tta`, for the models they apply to."""
        if margin is None and tta is None:
            return
        if self.crop_spec is None:
            option = "margin" if margin is not None else "tta"
            raise UserError(f"{option} applies to models of this project, not to {self.name}")
        if margin is not None:
            self.crop_spec = dataclasses.replace(self.crop_spec, margin=margin)
        if tta is not None:
            self.tta = tta


class CropEstimator(Estimator):
    """A two-headed model of this project, whatever runs it: crops in, predictions out.

    Its card says how to crop, whether to average each face with its mirror image and how to
    read the outputs; subclasses implement `probabilities`.
    """

    def __init__(self, card: ModelCard, name: str):
        self.card = card
        self.name = name
        self.crop_spec = card.crop
        self.tta = card.tta

    def predict_inputs(
        self, inputs: list[FaceInputs], batch_size: int | None = None
    ) -> list[Prediction]:
        """The crops of all the images, `batch_size` at a time (all at once by default)."""
        found = [image_crops for image_crops in inputs if len(image_crops)]
        if not found:
            return []
        crops = np.concatenate(found)
        step = batch_size or len(crops)
        return [prediction for start in range(0, len(crops), step)
                for prediction in self.predict_crops(crops[start : start + step])]  # fmt: skip

    def predict_crops(self, crops: np.ndarray) -> list[Prediction]:
        """Predictions for the model's crops, already resized (uint8 RGB, N x S x S x 3); with
        `tta` = flip, the mean of each face's and its mirror's outputs."""
        if self.tta == "none":
            return decode(*self.probabilities(crops), self.card)
        gender, age = self.probabilities(np.concatenate([crops, crops[:, :, ::-1]]))
        count = len(crops)
        gender, age = (gender[:count] + gender[count:]) / 2, (age[:count] + age[count:]) / 2
        return decode(gender, age, self.card)

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The gender and age softmax outputs (N x 2, N x 101) for crops as `predict_crops`."""
        raise NotImplementedError


def model_file(path: Path) -> Path:
    """`path`, which must be a file (one line saying what it is otherwise)."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "is not a file" if path.exists() else "not found"
        raise UserError(f"weight file {path} {what}")
    return path


def import_runtime(module: str, path: Path, extra: str):
    """The runtime module that runs `path`, or one line saying how to install it; and `path`
    must exist."""
    try:
        runtime = importlib.import_module(module)
    except ImportError as error:
        raise UserError(
            f"running {path.name} needs {module}: pip install 'age-gender[{extra}]'"
        ) from error
    model_file(path)
    return runtime
