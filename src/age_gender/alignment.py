"""Face alignment by the eyes (as Age-Gender-Pred trains): the crop is turned so the eyes are level
and scaled by their distance, then widened by the margin like a detector's box.

The eyes are the detector's where it gives them (MTCNN's landmarks), else dlib's 5-point shape
predictor's (shipped in `face_recognition_models`). An
aligned face is described by a box in its own turned frame and an angle, so training applies it
inside the single resampling of `warping.warp`, as inference does.
"""

import functools
import math

import dlib
import numpy as np

from age_gender import warping
from age_gender.errors import UserError
from age_gender.faces import crop_faces
from age_gender.warping import CropSpec

EYE_COLUMNS = ["eye_left_x", "eye_left_y", "eye_right_x", "eye_right_y"]  # left in the image
# The face square, in eye distances: about the size of dlib's HOG box, with the eyes above its
# centre. The margin then widens it as it widens a detector's box.
FACE_SIDE = 2.5
EYES_ABOVE_CENTRE = 0.35


class EyeFinder:
    """dlib's 5-point shape predictor: each eye's centre is the mean of its two corners."""

    def __init__(self):
        try:
            import face_recognition_models
        except ImportError as error:
            raise UserError(
                "aligning faces needs face_recognition_models: pip install 'age-gender[cnn]'"
            ) from error
        path = face_recognition_models.pose_predictor_five_point_model_location()
        self._predictor = dlib.shape_predictor(path)

    def eyes(self, image: np.ndarray, box: tuple) -> np.ndarray:
        """(left x, left y, right x, right y) of the eyes in the face `box` of an RGB image."""
        x_min, y_min, x_max, y_max = (int(round(value)) for value in box)
        shape = self._predictor(image, dlib.rectangle(x_min, y_min, x_max - 1, y_max - 1))
        points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(4)], np.float64)
        first, second = points[:2].mean(0), points[2:4].mean(0)
        left, right = sorted((first, second), key=lambda point: point[0])
        return np.concatenate([left, right])


def aligned_box(eyes, margin: float) -> tuple[np.ndarray, float]:
    """The face square widened by `margin` (x_min, y_min, x_max, y_max in the turned frame,
    centred on the face) and the angle (radians) that turns the image so the eyes are level."""
    left_x, left_y, right_x, right_y = (float(value) for value in eyes)
    dx, dy = right_x - left_x, right_y - left_y
    distance = max(math.hypot(dx, dy), 1.0)
    angle = math.atan2(dy, dx)
    # Below the eyes, perpendicular to the line between them.
    centre_x = (left_x + right_x) / 2 - math.sin(angle) * EYES_ABOVE_CENTRE * distance
    centre_y = (left_y + right_y) / 2 + math.cos(angle) * EYES_ABOVE_CENTRE * distance
    half = FACE_SIDE * distance * (1 + 2 * margin) / 2
    return np.array([centre_x - half, centre_y - half, centre_x + half, centre_y + half]), angle


def aligned_crops(image: np.ndarray, eyes_list: list, margin: float, size: int) -> np.ndarray:
    """Aligned crops resized to size x size (N, size, size, 3), black outside the image: the same
    resampling as training's with the aligned box and angle."""
    crops = np.empty((len(eyes_list), size, size, 3), np.uint8)
    for index, eyes in enumerate(eyes_list):
        box, angle = aligned_box(eyes, margin)
        crops[index] = warping.warp(image, box, size, angle=angle)
    return crops


def model_crops(
    image: np.ndarray, boxes: list[tuple], spec: CropSpec, eyes: list | None = None
) -> np.ndarray:
    """The crops a model of this project takes (N, size, size, 3): the boxes framed as the model
    was trained (`spec`: margin, offset), or, for a model trained aligned, crops aligned by the
    eyes: the detector's (`eyes`, one per box or None, as MTCNN gives them) or, where it gave
    none, dlib's 5-point predictor's."""
    if not spec.aligned:
        return crop_faces(image, boxes, spec.margin, spec.size, spec.offset)
    eyes = eyes or [None] * len(boxes)
    found = [given if given is not None else eye_finder().eyes(image, box)
             for box, given in zip(boxes, eyes, strict=True)]  # fmt: skip
    return aligned_crops(image, found, spec.margin, spec.size)


@functools.cache
def eye_finder() -> EyeFinder:
    """The process's one shape predictor, loaded the first time a face has no eyes given."""
    return EyeFinder()
