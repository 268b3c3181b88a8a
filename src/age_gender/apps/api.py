"""The library's front door, for those who call Python rather than a script (as deepface's users
call `DeepFace.analyze(img)`):

    from age_gender import FaceAnalyzer

    analyzer = FaceAnalyzer("dlib-models")  # a named model, or the path of a model file
    for face in analyzer.analyze("photo.jpg"):  # a path, or an RGB uint8 array
        print(face["age"], face["gender"], face["x_min"], face["y_min"])

Each face is a record of the one output schema (`schema.COLUMNS`), as a row of demo.py's and
annotate.py's tables. One road from an image to its records: `find_faces` (detect, then what
the model takes of the faces), then the estimator's `predict_inputs`; the demo and the server
estimate through `estimate`, annotate's workers take `find_faces` and batch the rest.
"""

from pathlib import Path

import numpy as np

from age_gender.data.records import image_rows, json_record
from age_gender.errors import UserError, printable
from age_gender.estimators.base import Estimator, FaceInputs, face_inputs
from age_gender.estimators.presets import load_estimator
from age_gender.faces.crops import CropSpec
from age_gender.faces.detection import DETECTORS, DetectorSpec, FaceDetector
from age_gender.images import read_image
from age_gender.models.card import TTA_MODES
from age_gender.schema import Face, Prediction


def find_faces(
    image: np.ndarray, detector: FaceDetector, crop: CropSpec | None
) -> tuple[list[Face], FaceInputs | None]:
    """The first half of the one road from an image to its records, which needs no model (so
    annotate's workers take it too): the faces found, and what the model takes of them
    (`face_inputs`; None without a face). `Estimator.predict_inputs` is the second half."""
    faces = detector.detect(image)
    if not faces:
        return [], None
    return faces, face_inputs(image, [face.box for face in faces], [face.eyes for face in faces],
                              crop)  # fmt: skip


class FaceAnalyzer:
    """A detector and a model: faces found, then their age and gender estimated (the eyes the
    detector gives turn the faces of a model trained aligned or upright)."""

    def __init__(
        self,
        model: str | Path | Estimator | None = None,
        detector: str | DetectorSpec | FaceDetector = DETECTORS[0],
        tta: str | None = None,
    ):
        if not isinstance(model, str | Path | Estimator | None):
            raise UserError(f"model must be a named model, a path or an Estimator, not {model!r}")
        self.estimator = model if isinstance(model, Estimator) else load_estimator(model)
        if isinstance(detector, str):
            detector = DetectorSpec(detector)
        if not isinstance(detector, DetectorSpec | FaceDetector):
            raise UserError(f"detector must be one of {', '.join(DETECTORS)}, a DetectorSpec or "
                            f"a FaceDetector, not {detector!r}")  # fmt: skip
        self.detector = detector.build() if isinstance(detector, DetectorSpec) else detector
        if tta not in (None, *TTA_MODES):
            raise UserError(f"tta must be one of {', '.join(TTA_MODES)}, not {tta!r}")
        self.estimator.set_options(tta=tta)

    def estimate(self, image: np.ndarray) -> tuple[list[Face], list[Prediction]]:
        """The faces of an RGB uint8 image and their predictions, in the same order."""
        faces, inputs = find_faces(image, self.detector, self.estimator.crop_spec)
        return faces, self.estimator.predict_inputs([inputs]) if faces else []

    def analyze(self, image: str | Path | np.ndarray) -> list[dict]:
        """One record per face found (none for an image without a face)."""
        name = None
        if not isinstance(image, str | Path | np.ndarray):
            raise UserError(f"analyze takes an image path or an RGB uint8 array, not "
                            f"{type(image).__name__}")  # fmt: skip
        if not isinstance(image, np.ndarray):
            name = printable(Path(image).name)
            path, image = image, read_image(Path(image))
            if image is None:
                what = "is not a readable image" if Path(path).is_file() else "does not exist"
                raise UserError(f"{printable(str(path)) or repr(path)} {what}")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or not image.size:
            raise UserError(f"an image array must be RGB uint8 (H, W, 3) of 1 pixel or more, "
                            f"not {image.dtype} {image.shape}")  # fmt: skip
        faces, predictions = self.estimate(image)
        rows = image_rows(name, image.shape, faces, predictions) if faces else []
        return [json_record(row) for row in rows]
