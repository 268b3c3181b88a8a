"""Face detection behind one interface (dlib HOG or CNN), and crops with the original margin."""

import dataclasses

import cv2
import dlib
import numpy as np

from age_gender import warping
from age_gender.errors import UserError

MIN_SIDE = 16  # pixels: no detector finds a face in a thinner image


@dataclasses.dataclass(frozen=True)
class Face:
    """A detected face: box corners in pixels (x_max, y_max exclusive) and the detector's score."""

    x_min: int
    y_min: int
    x_max: int
    y_max: int
    score: float

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x_min, self.y_min, self.x_max, self.y_max


class FaceDetector:
    """dlib's HOG frontal face detector (the original's) or its CNN (MMOD) detector.

    `min_score` drops weak detections (HOG fires at about 0.1 on some textures; faces score
    above 0.5). Large frames are searched on a copy downscaled to `max_side` pixels and the
    boxes scaled back, so a 4000 px photo takes about as long as a 640 px one.
    """

    def __init__(
        self,
        kind: str = "hog",
        upsample: int = 1,
        min_size: int = 0,
        min_score: float = 0.3,
        max_side: int | None = 800,
    ):
        if kind == "hog":
            self._detector = dlib.get_frontal_face_detector()
        elif kind == "cnn":
            try:
                import face_recognition_models
            except ImportError as error:
                raise UserError(
                    "the CNN detector needs face_recognition_models: "
                    "pip install 'age-gender[cnn]' (or use --detector hog)"
                ) from error
            path = face_recognition_models.cnn_face_detector_model_location()
            self._detector = dlib.cnn_face_detection_model_v1(path)
        else:
            raise UserError(f"unknown detector {kind!r}; use hog or cnn")
        self.kind = kind
        self.upsample = upsample
        self.min_size = min_size
        self.min_score = min_score
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, most confident first (none in an image thinner than a
        face, a 1 x 300000 strip say)."""
        if min(image.shape[:2]) < MIN_SIDE:
            return []
        scale = 1.0
        if self.max_side and max(image.shape[:2]) > self.max_side:
            scale = self.max_side / max(image.shape[:2])
            size = (max(round(image.shape[1] * scale), 1), max(round(image.shape[0] * scale), 1))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        if self.kind == "hog":
            rectangles, scores, _ = self._detector.run(image, self.upsample, 0.0)
        else:
            detections = self._detector(image, self.upsample)
            rectangles = [detection.rect for detection in detections]
            scores = [detection.confidence for detection in detections]
        height, width = image.shape[:2]
        faces = []
        for rectangle, score in zip(rectangles, scores, strict=True):
            x_min, y_min = max(rectangle.left(), 0), max(rectangle.top(), 0)
            x_max, y_max = min(rectangle.right() + 1, width), min(rectangle.bottom() + 1, height)
            face = Face(
                round(x_min / scale), round(y_min / scale),
                round(x_max / scale), round(y_max / scale), float(score),
            )  # fmt: skip
            small = min(face.x_max - face.x_min, face.y_max - face.y_min) < self.min_size
            if not small and face.score >= self.min_score:
                faces.append(face)
        return sorted(faces, key=lambda face: -face.score)


def crop_faces(
    image: np.ndarray, boxes: list[tuple], margin: float, size: int, offset=(0.0, 0.0)
) -> np.ndarray:
    """The model's crops of `boxes` (see `warping.crop_box`), resized to size x size with the
    training pipeline's own resampling (aspect not kept, as in training): (N, size, size, 3)."""
    crops = np.empty((len(boxes), size, size, 3), np.uint8)
    for index, box in enumerate(boxes):
        crops[index] = warping.warp(image, warping.crop_box(image.shape, box, margin, offset), size)
    return crops
