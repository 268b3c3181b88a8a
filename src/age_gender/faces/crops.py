"""The one face crop, for training and inference alike: the crop spec a model records, where its
crop of a face lies (a detector's box widened by the margin and moved by the offset, or the
square aligned by the eyes), the single `cv2.warpAffine` that cuts it (with augmentation's
rotation, zoom, shift and flip folded in), and the overlap of boxes.

Training (the tf.data pipeline), the face cache and every estimator take a `CropSpec` and call
`region` and `warp`, so no field of the crop can be dropped on the way from one to the other.
OpenCV's kernels are 10x faster than TensorFlow's CPU image ops here and release the GIL.
"""

import dataclasses
import math

import cv2
import numpy as np

from age_gender.schema import DEFAULT_MARGIN

# The aligned face square, in eye distances: about the size of dlib's HOG box, with the eyes
# above its centre. The margin then widens it as it widens a detector's box.
FACE_SIDE = 2.5
EYES_ABOVE_CENTRE = 0.35


@dataclasses.dataclass(frozen=True)
class CropSpec:
    """The crop a model takes of a face: `size` x `size` pixels of the box widened by `margin`
    on each side and moved by `offset` (fractions of the box, `crop_box`), turned `upright`
    (the eyes level) where the face's eyes are known, or the square `aligned` by the eyes
    when the model was trained so (`card.ModelCard.crop` reads it from a model)."""

    size: int
    margin: float = DEFAULT_MARGIN
    offset: tuple[float, float] = (0.0, 0.0)
    aligned: bool = False
    upright: bool = False

    @property
    def needs_eyes(self) -> bool:
        return self.aligned or self.upright


def is_box(boxes) -> bool | np.ndarray:
    """Whether a face box (x_min, y_min, x_max, y_max) is one, or which rows of an (N, 4)
    array are: x_max <= x_min means 'no box', the whole image is the face."""
    boxes = np.asarray(boxes, float)
    return boxes[..., 2] > boxes[..., 0]


def crop_box(shape: tuple, box, margin: float, offset=(0.0, 0.0), bounds=None) -> np.ndarray:
    """The model's crop of a face box: widened by `margin` of its size on each side, its centre
    moved by `offset` (fractions of the box's width and height), clipped to the image, or to
    `bounds` where the image lies within a larger one (a face cache's)
    (x_min, y_min, x_max, y_max, floats). A box with x_max <= x_min means 'no box': the whole
    image is the face crop (a data set of crops)."""
    height, width = shape[:2]
    if not is_box(box):
        return np.array([0.0, 0.0, width, height])
    low_x, low_y, high_x, high_y = (0.0, 0.0, width, height) if bounds is None else bounds
    x_min, y_min, x_max, y_max = (float(value) for value in box)
    box_width, box_height = x_max - x_min, y_max - y_min
    centre_x = (x_min + x_max) / 2 + offset[0] * box_width
    centre_y = (y_min + y_max) / 2 + offset[1] * box_height
    half_width, half_height = (0.5 + margin) * box_width, (0.5 + margin) * box_height
    widened = [centre_x - half_width, centre_y - half_height,
               centre_x + half_width, centre_y + half_height]  # fmt: skip
    return np.clip(widened, [low_x, low_y, low_x, low_y], [high_x, high_y, high_x, high_y])


def overlaps(shape: tuple, box, margin: float = 0.0) -> bool:
    """Whether the crop of `box` (widened by `margin`) keeps any of the image: a box wholly
    outside it has nothing to crop."""
    x_min, y_min, x_max, y_max = crop_box(shape, box, margin)
    return x_max > x_min and y_max > y_min


def aligned_box(eyes, margin: float) -> tuple[np.ndarray, float]:
    """The face square widened by `margin` (x_min, y_min, x_max, y_max in the turned frame,
    centred on the face) and the angle (radians) that turns the image so the eyes are level."""
    left_x, left_y, right_x, right_y = (float(value) for value in eyes)
    distance = max(math.hypot(right_x - left_x, right_y - left_y), 1.0)
    angle = eye_angle(eyes)
    # Below the eyes, perpendicular to the line between them.
    centre_x = (left_x + right_x) / 2 - math.sin(angle) * EYES_ABOVE_CENTRE * distance
    centre_y = (left_y + right_y) / 2 + math.cos(angle) * EYES_ABOVE_CENTRE * distance
    half = FACE_SIDE * distance * (1 + 2 * margin) / 2
    return np.array([centre_x - half, centre_y - half, centre_x + half, centre_y + half]), angle


def eye_angle(eyes) -> float:
    """The angle (radians) that turns the image so the eyes are level."""
    left_x, left_y, right_x, right_y = (float(value) for value in eyes)
    return math.atan2(right_y - left_y, right_x - left_x)


def region(shape: tuple, spec: CropSpec, box, eyes=None, bounds=None) -> tuple[np.ndarray, float]:
    """Where `spec`'s crop of one face lies in an image of `shape` (the image within `bounds`,
    see `crop_box`): the source box and the angle `warp` turns it by. A model trained aligned
    needs the face's `eyes`; an upright one turns the box by them where they are known (not
    NaN), and keeps it as it is where not (a data set's upright crops)."""
    if spec.aligned:
        if eyes is None:
            raise ValueError("an aligned crop needs the face's eyes")
        return aligned_box(eyes, spec.margin)
    source = crop_box(shape, box, spec.margin, spec.offset, bounds)
    known = spec.upright and eyes is not None and not np.isnan(np.asarray(eyes, float)).any()
    return source, eye_angle(eyes) if known else 0.0


def warp_matrix(box, size: int, angle=0.0, zoom=1.0, shift=(0.0, 0.0), flip=False) -> np.ndarray:
    """The 2x3 map from output pixels to source pixels (for cv2.WARP_INVERSE_MAP) that crops
    `box` to size x size, turned by `angle` (radians) about its centre, zoomed by `zoom`, shifted
    by `shift` (fractions of the output) and mirrored when `flip`.

    Output pixel p (centre p + 0.5) samples the source at the box centre + extent * (L q + shift),
    q = (p + 0.5) / size - 0.5: with no change, pixel centres as cv2.resize samples them.
    """
    x_min, y_min, x_max, y_max = (float(value) for value in box)
    mirror = -1.0 if flip else 1.0
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    linear = ((mirror * cos, -sin), (mirror * sin, cos))
    extents = (x_max - x_min, y_max - y_min)
    centres = ((x_min + x_max) / 2, (y_min + y_max) / 2)
    offset = 0.5 / size - 0.5
    return np.array([
        [extent * l0 / size, extent * l1 / size,
         centre - 0.5 + extent * (float(move) + (l0 + l1) * offset)]
        for (l0, l1), extent, centre, move in zip(linear, extents, centres, shift, strict=True)
    ])  # fmt: skip


def warp(image: np.ndarray, box, size: int, **change) -> np.ndarray:
    """The crop of `box` with `change` (angle, zoom, shift, flip: see `warp_matrix`), size x size,
    black outside the image, in one bilinear resampling."""
    return cv2.warpAffine(
        image, warp_matrix(box, size, **change), (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip


def face_crops(image: np.ndarray, boxes: list, spec: CropSpec, eyes: list | None = None):
    """`spec`'s crops of the faces `boxes` of one image, (N, size, size, 3) uint8, with training's
    own resampling (the aspect is not kept, as in training); `eyes`, one per box, for a model
    trained aligned."""
    eyes = eyes if eyes is not None else [None] * len(boxes)
    crops = np.empty((len(boxes), spec.size, spec.size, 3), np.uint8)
    for index, (box, face_eyes) in enumerate(zip(boxes, eyes, strict=True)):
        source, angle = region(image.shape, spec, box, face_eyes)
        crops[index] = warp(image, source, spec.size, angle=angle)
    return crops


def iou(box, others, over_smaller: bool = False) -> np.ndarray:
    """The overlap of a box with each of `others` (x_min, y_min, x_max, y_max): over their union,
    or with `over_smaller` over the smaller of the two boxes (a small box inside a big one is
    then a full overlap)."""
    box, others = np.asarray(box, float), np.asarray(others, float).reshape(-1, 4)
    low = np.maximum(box[:2], others[:, :2])
    high = np.minimum(box[2:4], others[:, 2:4])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    base = np.minimum(area, areas) if over_smaller else area + areas - inter
    return inter / np.maximum(base, 1e-9)
