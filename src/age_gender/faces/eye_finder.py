"""The eyes of a face where the detector gives none: dlib's 5-point shape predictor (shipped in
`face_recognition_models`). Aligned models (`crops.aligned_box`: the square the eyes span, as
Age-Gender-Pred trains) and upright ones (the box turned so the eyes are level) need the eyes;
MTCNN gives them, dlib's HOG and CNN detectors do not.
"""

import functools

import numpy as np

from age_gender.errors import UserError


class EyeFinder:
    """dlib's 5-point shape predictor: each eye's centre is the mean of its two corners."""

    def __init__(self):
        import dlib  # here, not at import: models neither aligned nor upright never need it

        try:
            import face_recognition_models
        except ImportError as error:
            raise UserError(
                "finding the eyes (aligned and upright models) needs face_recognition_models: "
                "pip install 'age-gender[cnn]'"
            ) from error
        path = face_recognition_models.pose_predictor_five_point_model_location()
        self._predictor = dlib.shape_predictor(path)

    def eyes(self, image: np.ndarray, box: tuple) -> np.ndarray:
        """(left x, left y, right x, right y) of the eyes in the face `box` of an RGB image."""
        x_min, y_min, x_max, y_max = (int(round(value)) for value in box)
        import dlib

        shape = self._predictor(image, dlib.rectangle(x_min, y_min, x_max - 1, y_max - 1))
        points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(4)], np.float64)
        first, second = points[:2].mean(0), points[2:4].mean(0)
        left, right = sorted((first, second), key=lambda point: point[0])
        return np.concatenate([left, right])


@functools.cache
def eye_finder() -> EyeFinder:
    """The process's one shape predictor, loaded the first time a face has no eyes given."""
    return EyeFinder()
