"""Face detection behind one interface (MTCNN, dlib's HOG or its CNN), boxes in one convention
(the crops a model takes of them are `crops.py`'s).

Every model records its margin relative to dlib's HOG box (square, brows to chin): the original's
detector and the one `framing` measures with. Other detectors' boxes are mapped onto it, so a
model crops the same face the same way whichever detector found it.
"""

import dataclasses

import cv2
import dlib
import numpy as np

from age_gender.errors import UserError
from age_gender.faces import mtcnn
from age_gender.faces.mtcnn_networks import sessions
from age_gender.schema import Face

MIN_SIDE = 16  # pixels: no detector finds a face in a thinner image
DETECTORS = ("mtcnn", "hog", "cnn")
# MTCNN's smallest face at upsample 0; each upsample step halves it, as it halves HOG's 80 px.
MTCNN_BASE_FACE = 64
# MTCNN's box (forehead to chin, narrower than tall) onto HOG's: its width and height as
# multiples of MTCNN's, and its centre moved by fractions of MTCNN's width and height. Medians
# over 371 UTKFace faces both found (bench/detection.py measures them again).
MTCNN_TO_HOG = {"width": 1.063, "height": 0.775, "dx": 0.018, "dy": 0.084}
# Scores below these are dropped: HOG fires at about 0.1 on some textures (faces score above
# 0.5); MTCNN's last network passes patterns at 0.8 that a face clears at 0.99.
MIN_SCORES = {"mtcnn": 0.9, "hog": 0.3, "cnn": 0.3}


@dataclasses.dataclass(frozen=True)
class DetectorSpec:
    """A detector's settings, picklable (a worker process builds its own detector from them):
    the family, the upsampling (each step finds faces half as small, at about 4x the time for
    HOG, 2x for MTCNN), the smallest face kept (pixels), the lowest score kept (None: the
    family's, `MIN_SCORES`) and the side large frames are searched at (`FaceDetector`)."""

    kind: str = "mtcnn"
    upsample: int = 1
    min_face: int = 0
    min_score: float | None = None
    max_side: int | None = 800

    def build(self) -> "FaceDetector":
        return FaceDetector(self)


def mtcnn_to_hog(box: np.ndarray) -> tuple[float, float, float, float]:
    """An MTCNN box (x_min, y_min, x_max, y_max) as HOG would draw it on the same face."""
    width, height = box[2] - box[0], box[3] - box[1]
    side = (MTCNN_TO_HOG["width"] * width + MTCNN_TO_HOG["height"] * height) / 2
    centre_x = (box[0] + box[2]) / 2 + MTCNN_TO_HOG["dx"] * width
    centre_y = (box[1] + box[3]) / 2 + MTCNN_TO_HOG["dy"] * height
    return centre_x - side / 2, centre_y - side / 2, centre_x + side / 2, centre_y + side / 2


class FaceDetector:
    """MTCNN (finds faces turned up to about 45° and gives the eyes), dlib's HOG frontal face
    detector (the original's) or dlib's CNN (MMOD) detector; boxes in HOG's convention.

    Built only from its `DetectorSpec` (`spec.build()`): `min_score` drops weak detections
    (default: `MIN_SCORES`). Large frames are searched on a copy downscaled to `max_side` pixels
    and the boxes scaled back, so a 4000 px photo takes about as long as a 640 px one.
    """

    def __init__(self, spec: DetectorSpec):
        kind = spec.kind
        if kind == "mtcnn":
            sessions()  # missing or damaged weights fail here, in one line
            self._detector = mtcnn
        elif kind == "hog":
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
            raise UserError(f"unknown detector {kind!r}; use one of {', '.join(DETECTORS)}")
        self.spec = spec

    @property
    def gives_eyes(self) -> bool:
        return self.spec.kind == "mtcnn"

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, most confident first (none in an image thinner than a
        face, a 1 x 300000 strip say)."""
        if min(image.shape[:2]) < MIN_SIDE:
            return []
        scale = 1.0
        if self.spec.max_side and max(image.shape[:2]) > self.spec.max_side:
            scale = self.spec.max_side / max(image.shape[:2])
            size = (max(round(image.shape[1] * scale), 1), max(round(image.shape[0] * scale), 1))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        height, width = image.shape[:2]
        min_score = (
            MIN_SCORES[self.spec.kind] if self.spec.min_score is None else self.spec.min_score
        )
        faces = []
        for box, score, eyes in self._found(image, self.spec.min_face * scale):
            x_min, y_min = max(box[0], 0), max(box[1], 0)
            x_max, y_max = min(box[2], width), min(box[3], height)
            face = Face(
                round(x_min / scale), round(y_min / scale),
                round(x_max / scale), round(y_max / scale), float(score),
                None if eyes is None else tuple(round(float(v) / scale, 2) for v in eyes),
            )  # fmt: skip
            small = min(face.x_max - face.x_min, face.y_max - face.y_min) < self.spec.min_face
            empty = face.x_max <= face.x_min or face.y_max <= face.y_min
            if not small and not empty and face.score >= min_score:
                faces.append(face)
        return sorted(faces, key=lambda face: -face.score)

    def _found(self, image: np.ndarray, min_face: float) -> list[tuple[tuple, float, tuple | None]]:
        """The detector's (box in HOG's convention, score, eyes or None), unclipped; MTCNN
        searches from `min_face` pixels of this image (or its upsampling's smallest face)."""
        if self.spec.kind == "mtcnn":
            smallest = max(MTCNN_BASE_FACE / 2**self.spec.upsample, min_face)
            boxes, landmarks = self._detector.detect(image, round(smallest))
            return [(mtcnn_to_hog(box), float(box[4]), tuple(points[:2].ravel()))
                    for box, points in zip(boxes, landmarks, strict=True)]  # fmt: skip
        if self.spec.kind == "hog":
            rectangles, scores, _ = self._detector.run(image, self.spec.upsample, 0.0)
        else:
            detections = self._detector(image, self.spec.upsample)
            rectangles = [detection.rect for detection in detections]
            scores = [detection.confidence for detection in detections]
        return [((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(score), None)
                for r, score in zip(rectangles, scores, strict=True)]  # fmt: skip
