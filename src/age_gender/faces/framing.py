"""Where a detector's box sits in faces that come pre-cropped (UTKFace, APPA-REAL's crops): the
framing a model must record so that, from a detected box, inference crops what training saw.

A data set of crops has no boxes, so the model would otherwise record a margin it never used: a
detector box widened by the default 40 % shows it a face half the size it learned.
"""

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from age_gender.faces.detection import DetectorSpec, FaceDetector
from age_gender.images import read_image


@dataclasses.dataclass(frozen=True)
class Framing:
    """The crop as seen from a detected box (see `crops.crop_box`): `margin` of the box's size
    on each side, centre moved by `offset` (fractions of the box's width and height); `spread`
    is how much the box's size varies between faces (relative standard deviation), and `found`
    how many of the faces measured the detector found."""

    margin: float
    offset: tuple[float, float]
    spread: float
    found: int


def measure_framing(
    paths: list[Path], detector: FaceDetector | None = None, min_found: int = 20, seed: int = 0
) -> Framing | None:
    """The median framing of the detector's best box in each whole-image face crop; None when
    the detector finds fewer than `min_found` faces (then there is nothing to learn from).

    Each crop is measured as a detector meets it in a photo: at a random scale (0.5-1.2x, since a
    detector's box snaps to its pyramid's sizes, so one scale would measure one snap) and padded
    by its own edge pixels (a box reaching past the crop is not clipped, which would move it).
    """
    detector = detector or DetectorSpec("hog").build()  # the convention every model records
    rng = np.random.default_rng(seed)
    sizes, offsets = [], []
    for path in paths:
        image = read_image(path)
        if image is None:
            continue
        scale = float(np.exp(rng.uniform(np.log(0.5), np.log(1.2))))
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        height, width = image.shape[:2]
        pad = max(height, width) // 4
        faces = detector.detect(cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE))
        if not faces:
            continue
        x_min, y_min, x_max, y_max = (value - pad for value in faces[0].box)
        box_width, box_height = x_max - x_min, y_max - y_min
        sizes.append((width / box_width, height / box_height))
        offsets.append((
            (width / 2 - (x_min + x_max) / 2) / box_width,
            (height / 2 - (y_min + y_max) / 2) / box_height,
        ))  # fmt: skip
    if len(sizes) < min_found:
        return None
    ratios = np.asarray(sizes)
    offset = np.median(np.asarray(offsets), axis=0)
    return Framing(
        round(float(np.median(ratios, axis=0).mean() - 1) / 2, 4),
        (round(float(offset[0]), 4), round(float(offset[1]), 4)),
        round(float(np.std(ratios[:, 0]) / np.mean(ratios[:, 0])), 4), len(sizes),
    )  # fmt: skip


def framing_of_crops(rows: pd.DataFrame, root: Path, sample: int, seed: int) -> Framing | None:
    """`measure_framing` on a seeded sample of the rows' images (whole-image crops)."""
    chosen = rows.sample(n=min(sample, len(rows)), random_state=seed)
    return measure_framing([root / path for path in chosen["img_paths"]], seed=seed)
