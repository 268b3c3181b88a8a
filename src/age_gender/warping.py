"""One resampling for a face crop with its augmentation: crop, resize, rotation, zoom, shift and
flip in a single `cv2.warpAffine`, the same for training (the tf.data pipeline calls it through
`tf.numpy_function`) and for inference of aligned models.

OpenCV's kernels are 10x faster than TensorFlow's CPU image ops here and release the GIL, so
tf.data's parallel calls use every core.
"""

import dataclasses
import math

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True)
class CropSpec:
    """The crop a model takes of a detected face: `size` x `size` pixels of the box widened by
    `margin` on each side and moved by `offset` (fractions of the box, `warping.crop_box`), or
    aligned by the eyes when the model was trained so."""

    size: int
    margin: float = 0.4
    offset: tuple[float, float] = (0.0, 0.0)
    aligned: bool = False

    @classmethod
    def of(cls, metadata: dict) -> "CropSpec":
        """The crop a model's metadata records (train.py and export.py write it)."""
        offset = tuple(metadata.get("offset", (0.0, 0.0)))
        return cls(metadata["img_size"], metadata["margin"], offset, bool(metadata.get("aligned")))


def crop_box(shape: tuple, box, margin: float, offset=(0.0, 0.0)) -> np.ndarray:
    """The model's crop of a face box: widened by `margin` of its size on each side, its centre
    moved by `offset` (fractions of the box's width and height), clipped to the image
    (x_min, y_min, x_max, y_max, floats). The same for training and inference, so a model sees
    a detected face as it saw its training faces. A box with x_max <= x_min means 'no box': the
    whole image is the face crop."""
    height, width = shape[:2]
    x_min, y_min, x_max, y_max = (float(value) for value in box)
    if x_max <= x_min:
        return np.array([0.0, 0.0, width, height])
    box_width, box_height = x_max - x_min, y_max - y_min
    centre_x = (x_min + x_max) / 2 + offset[0] * box_width
    centre_y = (y_min + y_max) / 2 + offset[1] * box_height
    half_width, half_height = (0.5 + margin) * box_width, (0.5 + margin) * box_height
    widened = [centre_x - half_width, centre_y - half_height,
               centre_x + half_width, centre_y + half_height]  # fmt: skip
    return np.clip(widened, 0.0, [width, height, width, height])


def overlaps(shape: tuple, box, margin: float = 0.0) -> bool:
    """Whether the crop of `box` (widened by `margin`) keeps any of the image: a box wholly
    outside it has nothing to crop."""
    x_min, y_min, x_max, y_max = crop_box(shape, box, margin)
    return x_max > x_min and y_max > y_min


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
