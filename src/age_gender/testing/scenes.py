"""Photo-like scenes made of labelled face crops: the honest measure of what a user gets, since
users run a detector on photos, not a model on a data set's crops.

Each face crop is pasted into a photo background with feathered edges, at a face size of
`face_sizes` pixels, turned, and lit differently; its true box is where a detector's box would
sit (the crop framed as `framing.measure_framing` finds detectors box such crops), so a detected
face matches its truth by IoU. The same seed gives the same scenes.
"""

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from age_gender import crops
from age_gender.errors import UserError
from age_gender.images import read_image
from age_gender.schema import BOX_COLUMNS

FRAME_SIZE = (640, 480)  # width, height


@dataclasses.dataclass(frozen=True)
class SceneSettings:
    """How scenes are made: frame size, the faces' box size range (pixels), the largest turn
    (degrees), the faces per frame, light (gain and offset ranges), and the framing of the
    crops (margin and offset of their face box, as `framing.Framing`)."""

    frame_size: tuple[int, int] = FRAME_SIZE
    face_sizes: tuple[int, int] = (35, 230)
    max_angle: float = 25.0
    faces_per_frame: tuple[int, int] = (1, 4)
    gain: tuple[float, float] = (0.6, 1.3)
    bias: tuple[float, float] = (-30.0, 30.0)
    margin: float = 0.06  # UTKFace's crops, as measured for HOG (README, "framing")
    offset: tuple[float, float] = (0.01, 0.01)


@dataclasses.dataclass
class Scene:
    """An RGB frame and its faces: one row each with the true box, age, gender and source file."""

    image: np.ndarray
    faces: pd.DataFrame


def background(paths: list[Path], rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A random part of a random background photo, scaled to cover `size` (width, height)."""
    path = paths[rng.integers(len(paths))]
    image = read_image(path)
    if image is None:
        raise UserError(f"background {path} cannot be read")
    width, height = size
    scale = max(width / image.shape[1], height / image.shape[0]) * rng.uniform(1.0, 1.5)
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    top = rng.integers(image.shape[0] - height + 1)
    left = rng.integers(image.shape[1] - width + 1)
    return np.ascontiguousarray(image[top : top + height, left : left + width])


def feather_mask(height: int, width: int) -> np.ndarray:
    """An elliptic alpha mask (0..1) with soft edges: the crop's corners and borders vanish."""
    mask = np.zeros((height, width), np.float32)
    axes = (int(width * 0.42), int(height * 0.47))
    cv2.ellipse(mask, (width // 2, height // 2), axes, 0, 0, 360, 1.0, -1)
    blur = max(min(height, width) // 10, 1) * 2 + 1
    return cv2.GaussianBlur(mask, (blur, blur), 0)


def paste_face(
    frame: np.ndarray,
    crop: np.ndarray,
    box_side: float,
    centre: tuple[float, float],
    angle: float,
    light: tuple[float, float],
    settings: SceneSettings,
) -> tuple[float, ...]:
    """Pastes `crop` (RGB) turned by `angle` degrees so that its face box is `box_side` pixels
    wide with its centre at `centre`; returns that face's upright box in the frame."""  # fmt: skip
    scale = box_side / (crop.shape[1] / (1 + 2 * settings.margin))
    # The face box's centre sits at the crop centre minus the offset, in box sizes.
    face_x = crop.shape[1] / 2 - settings.offset[0] * crop.shape[1] / (1 + 2 * settings.margin)
    face_y = crop.shape[0] / 2 - settings.offset[1] * crop.shape[0] / (1 + 2 * settings.margin)
    matrix = cv2.getRotationMatrix2D((face_x, face_y), angle, scale)
    matrix[:, 2] += np.array(centre) - (face_x, face_y)
    height, width = frame.shape[:2]
    lit = cv2.convertScaleAbs(crop, alpha=light[0], beta=light[1])
    warped = cv2.warpAffine(lit, matrix, (width, height), flags=cv2.INTER_AREA)
    alpha = cv2.warpAffine(feather_mask(*crop.shape[:2]), matrix, (width, height))[..., None]
    frame[:] = (frame * (1 - alpha) + warped * alpha).round().astype(np.uint8)
    half = box_side / 2
    return centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half


def place(
    rng: np.random.Generator, side: float, taken: list[tuple], settings: SceneSettings
) -> tuple[float, float] | None:
    """A centre for a face box of `side` px inside the frame whose crop overlaps no other face
    (None after 30 tries)."""
    width, height = settings.frame_size
    reach = side * (0.5 + settings.margin)
    for _ in range(30):
        x = rng.uniform(reach, width - reach) if width > 2 * reach else width / 2
        y = rng.uniform(reach, height - reach) if height > 2 * reach else height / 2
        if all(abs(x - ox) > reach + oreach or abs(y - oy) > reach + oreach
               for ox, oy, oreach in taken):  # fmt: skip
            taken.append((x, y, reach))
            return x, y
    return None


def build_scenes(
    faces: pd.DataFrame,
    root: Path,
    backgrounds: list[Path],
    count: int,
    seed: int = 0,
    settings: SceneSettings = SceneSettings(),
) -> Iterator[Scene]:
    """`count` scenes of faces drawn without replacement from `faces` (img_paths, ages, genders;
    whole-image crops under `root`), each face once until all are used."""
    rng = np.random.default_rng(seed)
    order = iter(rng.permutation(len(faces)))
    low, high = settings.face_sizes
    for _ in range(count):
        frame = background(backgrounds, rng, settings.frame_size)
        rows, taken = [], []
        for _ in range(rng.integers(settings.faces_per_frame[0], settings.faces_per_frame[1] + 1)):
            # Sizes spread evenly on a log scale: small faces are as common as large ones.
            side = math.exp(rng.uniform(math.log(low), math.log(high)))
            centre = place(rng, side, taken, settings)
            index = next(order, None)
            if centre is None or index is None:
                continue
            row = faces.iloc[index]
            crop = read_image(root / row["img_paths"])
            if crop is None:
                continue
            angle = rng.uniform(-settings.max_angle, settings.max_angle)
            light = (rng.uniform(*settings.gain), rng.uniform(*settings.bias))
            box = paste_face(frame, crop, side, centre, angle, light, settings)
            rows.append({
                **dict(zip(BOX_COLUMNS, box, strict=True)), "ages": int(row["ages"]),
                "genders": int(row["genders"]), "source": row["img_paths"],
                "angle": round(angle, 1),
            })  # fmt: skip
        yield Scene(frame, pd.DataFrame(rows, columns=[*BOX_COLUMNS, "ages", "genders",
                                                       "source", "angle"]))  # fmt: skip


def write_scenes(scenes: Iterator[Scene], folder: Path) -> pd.DataFrame:
    """Writes each scene as `folder/scene_00000.jpg` (JPEG 92) and returns the truth: one row
    per face with its scene's file name."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = []
    for number, scene in enumerate(scenes):
        name = f"scene_{number:05d}.jpg"
        cv2.imwrite(str(folder / name), scene.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        tables.append(scene.faces.assign(file=name))
    return pd.concat(tables, ignore_index=True)


def match_faces(truth: pd.DataFrame, found: pd.DataFrame, threshold: float = 0.3) -> pd.DataFrame:
    """Each true face with the detected face of its scene (`file`) that overlaps it most, at
    IoU >= `threshold`, each detection used once (best overlaps first). Returns `truth` with
    the matched detection's columns prefixed `found_` (NaN where none), plus the number of
    detections left unmatched (false positives) in `attrs["false_positives"]`."""
    pairs = []
    for file, faces in truth.groupby("file"):
        detected = found[found["file"] == file]
        for t_index, t_box in zip(faces.index, faces[BOX_COLUMNS].to_numpy(float), strict=True):
            boxes = detected[BOX_COLUMNS].to_numpy(float)
            for d_index, d_box in zip(detected.index, boxes, strict=True):
                overlap = float(crops.iou(t_box, [d_box])[0])
                if overlap >= threshold:
                    pairs.append((overlap, t_index, d_index))
    matched = truth.copy()
    used_truth, used_found = set(), set()
    for overlap, t_index, d_index in sorted(pairs, reverse=True):
        if t_index in used_truth or d_index in used_found:
            continue
        used_truth.add(t_index)
        used_found.add(d_index)
        for column in found.columns:
            if column != "file":
                matched.loc[t_index, f"found_{column}"] = found.loc[d_index, column]
        matched.loc[t_index, "iou"] = overlap
    matched.attrs["false_positives"] = len(found) - len(used_found)
    return matched
