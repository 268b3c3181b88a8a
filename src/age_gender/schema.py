"""The one schema, a leaf that imports nothing of the package: the model's heads, the label, box
and eye columns of a labels CSV, a detected `Face`, a `Prediction`, and the output table's
columns (the demo's predictions, annotate's tables, the Python API's records and the server's
JSON faces; evaluation's per-face table adds the truth to them)."""

import dataclasses
import math

# The model's two heads, named and sized once for the network, the input pipeline, export and
# every runtime that reads a model's outputs.
GENDER, AGE = "pred_gender", "pred_age"
HEADS = (GENDER, AGE)  # the model's outputs, in order
GENDER_CLASSES = 2  # female, male
AGE_CLASSES = 101  # ages 0..100

# A labels CSV (create_db.py writes it, training reads it).
LABEL_COLUMNS = ["genders", "ages", "img_paths"]
BOX_COLUMNS = ["x_min", "y_min", "x_max", "y_max"]
EYE_COLUMNS = ["eye_left_x", "eye_left_y", "eye_right_x", "eye_right_y"]  # left in the image
# A face cache's CSV adds where the original image lies in each cached one (crops clip to it,
# as to the image itself) and the largest margin its faces can be cropped with.
BOUNDS_COLUMNS = ["bounds_x_min", "bounds_y_min", "bounds_x_max", "bounds_y_max"]
CACHE_MARGIN = "cache_margin"
MAX_AGE = AGE_CLASSES - 1
DEFAULT_MARGIN = 0.4  # a face crop's: the original project's 40 % of the box on each side
UNKNOWN_GENDER = -1

# The output table: a row per face, or per image without one.
OK, NO_FACE, UNREADABLE = "ok", "no face", "unreadable"  # an image's status
IMAGE_COLUMNS = ["file", "frame", "status", "width", "height", "faces"]  # frame: videos only
FACE_COLUMNS = ["face", *BOX_COLUMNS, "score"]
PREDICTION_COLUMNS = ["age", "age_std", "age_low", "age_high", "gender", "gender_probability"]
COLUMNS = [*IMAGE_COLUMNS, *FACE_COLUMNS, *PREDICTION_COLUMNS]
INTEGER_COLUMNS = ["frame", "width", "height", "faces", "face", *BOX_COLUMNS]
# A face's columns as the server's JSON types them (age_std and the interval: null where the
# model gives none, dlib-models).
FACE_TYPES = {**dict.fromkeys(BOX_COLUMNS, int), "score": float, "age": float,
              **dict.fromkeys(["age_std", "age_low", "age_high"], float | None), "gender": str,
              "gender_probability": float}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Face:
    """A detected face: box corners in pixels (x_max, y_max exclusive) and the detector's score."""

    x_min: int
    y_min: int
    x_max: int
    y_max: int
    score: float
    eyes: tuple[float, float, float, float] | None = None  # left x, y, right x, y in the image

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x_min, self.y_min, self.x_max, self.y_max


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Age (expected value, years), its spread (std. deviation), P(male), and the 90 % interval
    of the age (NaN where the model gives none)."""

    age: float
    age_std: float
    male_probability: float
    age_low: float = math.nan
    age_high: float = math.nan

    @property
    def gender(self) -> str:
        return "M" if self.male_probability >= 0.5 else "F"

    @property
    def gender_probability(self) -> float:
        return max(self.male_probability, 1.0 - self.male_probability)
